"""The contents plugin's part of `/api/spec.yaml` (OpenAPI 3.0): every route it registers."""

from __future__ import annotations

from typing import Any

from himalia import AUTH_ERRORS, error_response, json_response

MODEL = {"$ref": "#/components/schemas/Contents"}
CHECKPOINT = {"$ref": "#/components/schemas/Checkpoint"}
PATH = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"},
        "description": "API path of a file or directory, relative to the root"}
CHECKPOINT_ID = {"name": "checkpoint_id", "in": "path", "required": True,
                 "schema": {"type": "string", "pattern": r"^[\w-]+$"}}


def _errors(*codes: str) -> dict[str, Any]:
    words = {"400": "Bad request: bad model, bad argument, hidden path",
             "403": "Forbidden: permissions, a link out of the root, or a write to a read-only contents provider",
             "404": "No such file, directory or checkpoint",
             "409": "The destination exists, or a chunk that does not continue an upload in progress",
             "413": "Body too large (or, reading, a file over [plugins.contents] max_read_size_mb)",
             "501": "The contents provider does not declare the capability this needs (paging, trust, "
                    "checkpoints); the message names it",
             "503": "Busy: too many chunked uploads in progress, or large files being read",
             "507": "No space left on the disk (or the file is too large for it)"}
    return {code: error_response(words[code]) for code in codes} | AUTH_ERRORS


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


GET_PARAMS = [
    _query("type", {"type": "string", "enum": ["file", "directory", "notebook"]}, "Expected type"),
    _query("format", {"type": "string", "enum": ["text", "base64", "json"]}, "Format of file content"),
    _query("content", {"type": "string", "enum": ["0", "1"]}, "Include the content (default 1)"),
    _query("hash", {"type": "string", "enum": ["0", "1"]}, "Include hash and hash_algorithm (default 0)"),
    _query("limit", {"type": "string", "pattern": "^[0-9]+$"}, "At most this many directory entries"),
    _query("offset", {"type": "string", "pattern": "^[0-9]+$"}, "Skip this many directory entries"),
]
SAVE_BODY = {"required": False, "content": {"application/json": {"schema": {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["file", "directory", "notebook"]},
        "format": {"type": "string", "enum": ["text", "base64", "json"], "nullable": True},
        "content": {"nullable": True},
        "chunk": {"type": "integer", "description": "1, 2, ... for chunks of a large upload; -1 for the last"},
        "path": {"type": "string"},
        "name": {"type": "string"},
    }}}}}
POST_BODY = {"required": False, "content": {"application/json": {"schema": {
    "type": "object",
    "properties": {"copy_from": {"type": "string"}, "ext": {"type": "string"},
                   "type": {"type": "string", "enum": ["file", "directory", "notebook"]}}}}}}
PATCH_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "properties": {"path": {"type": "string"}}}}}}

CONTENTS_OPS = {
    "get": {"summary": "A file, notebook or directory model", "parameters": GET_PARAMS,
            "responses": {"200": json_response("The model", MODEL),
                          **_errors("400", "403", "404", "413", "501", "503")}},
    "put": {"summary": "Save (or upload, or continue a chunked upload of) a file, notebook or directory",
            "requestBody": SAVE_BODY,
            "responses": {"200": json_response("Saved", MODEL), "201": json_response("Created", MODEL),
                          **_errors("400", "403", "404", "409", "413", "503", "507")}},
    "post": {"summary": "Create an untitled file, notebook or directory in this directory, or a copy",
             "requestBody": POST_BODY,
             "responses": {"201": json_response("Created", MODEL),
                           **_errors("400", "403", "404", "409", "413", "507")}},
    "patch": {"summary": "Rename or move", "requestBody": PATCH_BODY,
              "responses": {"200": json_response("Moved", MODEL), **_errors("400", "403", "404", "409", "413", "507")}},
    "delete": {"summary": "Delete (to the trash when configured)",
               "responses": {"204": {"description": "Deleted"}, **_errors("400", "403", "404")}},
}

OPENAPI: dict[str, Any] = {
    "paths": {
        "/api/contents": {op: dict(spec) for op, spec in CONTENTS_OPS.items()},
        "/api/contents/{path}": {op: {**spec, "parameters": [PATH, *spec.get("parameters", [])]}
                                 for op, spec in CONTENTS_OPS.items()},
        "/api/contents/{path}/checkpoints": {
            "parameters": [PATH],
            "get": {"summary": "Checkpoints of a file", "responses": {
                "200": json_response("Checkpoints", {"type": "array", "items": CHECKPOINT}),
                **_errors("400", "403", "404", "501")}},
            "post": {"summary": "Checkpoint a file", "responses": {
                "201": json_response("The checkpoint", CHECKPOINT), **_errors("400", "403", "404", "501")}},
        },
        "/api/contents/{path}/checkpoints/{checkpoint_id}": {
            "parameters": [PATH, CHECKPOINT_ID],
            "post": {"summary": "Restore a file from a checkpoint",
                     "responses": {"204": {"description": "Restored"}, **_errors("400", "403", "404", "501")}},
            "delete": {"summary": "Delete a checkpoint",
                       "responses": {"204": {"description": "Deleted"}, **_errors("400", "403", "404", "501")}},
        },
        "/api/contents/{path}/trust": {
            "parameters": [PATH],
            "post": {"summary": "Sign a notebook as trusted",
                     "responses": {"201": {"description": "Trusted"}, **_errors("400", "403", "404", "501")}},
        },
        "/files/{path}": {
            "parameters": [PATH, _query("download", {"type": "string"}, "Any value: serve as an attachment")],
            "get": {"summary": "The raw bytes of a file", "responses": {
                # as jupyter_server, .ipynb is served as application/x-ipynb+json and .json as
                # application/json; their bodies are any JSON, not necessarily an object
                "200": {"description": "The file", "content": {
                    "application/x-ipynb+json": {"schema": {}},
                    "application/json": {"schema": {}},
                    "*/*": {"schema": {"type": "string", "format": "binary"}}}},
                **_errors("400", "403", "404")}},
        },
        "/api/resolvePath": {
            "get": {"summary": "The API path of a path (an API path or a filesystem path under the root)",
                    "parameters": [{"name": "path", "in": "query", "required": True, "schema": {"type": "string"}},
                                   _query("kernel", {"type": "string"}, "Also report on this kernel")],
                    "responses": {"200": json_response("Resolution", {
                        "type": "object", "required": ["resolved"],
                        "properties": {"resolved": {"type": "array", "items": {"type": "object"}},
                                       "unresolved": {"type": "array", "items": {"type": "object"}}}}),
                        **_errors("400")}},
        },
    },
    "components": {"schemas": {
        "Contents": {
            "type": "object",
            "required": ["name", "path", "type", "writable", "created", "last_modified", "mimetype",
                         "content", "format"],
            "properties": {
                "name": {"type": "string"}, "path": {"type": "string"},
                "type": {"type": "string", "enum": ["directory", "file", "notebook"]},
                "writable": {"type": "boolean"},
                "created": {"type": "string", "format": "date-time"},
                "last_modified": {"type": "string", "format": "date-time"},
                "size": {"type": "integer", "nullable": True},
                "mimetype": {"type": "string", "nullable": True},
                "content": {"nullable": True},
                "format": {"type": "string", "nullable": True, "enum": ["text", "base64", "json", None]},
                "hash": {"type": "string", "nullable": True},
                "hash_algorithm": {"type": "string", "nullable": True},
                "message": {"type": "string"},
            },
        },
        "Checkpoint": {
            "type": "object", "required": ["id", "last_modified"],
            "properties": {"id": {"type": "string"}, "last_modified": {"type": "string", "format": "date-time"}},
        },
    }},
}
