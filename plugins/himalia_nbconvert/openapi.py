"""The nbconvert plugin's part of `/api/spec.yaml`."""

from __future__ import annotations

from typing import Any

from himalia import AUTH_ERRORS, error_response, json_response

FORMAT = {"name": "format", "in": "path", "required": True, "schema": {"type": "string", "example": "html"},
          "description": "Export format, one of those `GET /api/nbconvert` lists (html, script, ...)"}
FLAG = {"type": "string", "enum": ["true", "false"]}
SANITIZE = {"name": "sanitize_html", "in": "query", "required": False, "schema": FLAG,
            "description": "Sanitize the HTML of the export (html-based formats)"}
EXPORT = {
    "description": "The export (a zip of it and its extracted files when there are any), served with "
                   "`Content-Security-Policy: sandbox allow-scripts`",
    "headers": {"Content-Disposition": {"schema": {"type": "string"},
                                        "description": "attachment, with the file name, on download or zip"}},
    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
}
NO_FORMAT = error_response("No such format, or not available on this server (the message lists those that are)")

OPENAPI: dict[str, Any] = {
    "paths": {
        "/api/nbconvert": {"get": {
            "summary": "Export formats that work on this server, with their output mimetype",
            "responses": {"200": json_response("Formats", {
                "type": "object", "additionalProperties": {
                    "type": "object", "required": ["output_mimetype"],
                    "properties": {"output_mimetype": {"type": "string"}}}}), **AUTH_ERRORS},
        }},
        "/nbconvert/{format}/{path}": {"get": {
            "summary": "Export a notebook of the contents (any other file: a redirect to /files/)",
            "parameters": [FORMAT,
                           {"name": "path", "in": "path", "required": True, "schema": {"type": "string"},
                            "description": "API path of the notebook"},
                           {"name": "download", "in": "query", "required": False, "schema": FLAG,
                            "description": "Serve as an attachment with the export's file name"},
                           SANITIZE],
            "responses": {"200": EXPORT,
                          "302": {"description": "Not a notebook: redirect to its /files/ URL",
                                  "headers": {"Location": {"schema": {"type": "string"}}}},
                          "400": error_response("A directory, or a path the contents API refuses"),
                          "403": error_response("Forbidden by the contents API (a link out of the root)"),
                          "404": NO_FORMAT, "500": error_response("The exporter failed on this notebook"),
                          **AUTH_ERRORS},
        }},
        "/nbconvert/{format}": {"post": {
            "summary": "Export the notebook in the body",
            "parameters": [FORMAT, {"name": "download", "in": "query", "required": False, "schema": FLAG},
                           SANITIZE],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["content"],
                "properties": {"name": {"type": "string", "description": "File name; default notebook.ipynb"},
                               "content": {"type": "object", "description": "The notebook (nbformat 4)"}}}}}},
            "responses": {"200": EXPORT, "400": error_response("Malformed body or invalid notebook"),
                          "404": NO_FORMAT, "500": error_response("The exporter failed on this notebook"),
                          **AUTH_ERRORS},
        }},
    },
}
