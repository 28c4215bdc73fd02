"""The frontend_config plugin's part of `/api/spec.yaml`."""

from __future__ import annotations

from typing import Any

from himalia import AUTH_ERRORS, error_response, json_response

SECTION = {"name": "section", "in": "path", "required": True, "schema": {"type": "string", "example": "notebook"},
           "description": "Section name: letters, digits and underscores"}
OBJECT = {"type": "object", "additionalProperties": True}
BODY = {"required": True, "content": {"application/json": {"schema": OBJECT}}}
BAD = error_response("Malformed body, or a section name that is not letters, digits and underscores")
FAILED = error_response("The section file could not be written")

OPENAPI: dict[str, Any] = {
    "paths": {
        "/api/config/{section}": {
            "parameters": [SECTION],
            "get": {"summary": "A frontend config section, merged over the Jupyter config path",
                    "responses": {"200": json_response("The section", OBJECT), "400": BAD, **AUTH_ERRORS}},
            "put": {"summary": "Replace the user's section", "requestBody": BODY,
                    "responses": {"204": {"description": "Stored"}, "400": BAD, "500": FAILED, **AUTH_ERRORS}},
            "patch": {"summary": "Merge into the user's section (null deletes a key); the merged section",
                      "requestBody": BODY,
                      "responses": {"200": json_response("The section after the change", OBJECT), "400": BAD,
                                    "500": FAILED, **AUTH_ERRORS}},
        },
    },
}
