"""The lab plugin's routes in `/api/spec.yaml`: pages, files and the lab APIs (shapes as jupyterlab_server's)."""

from __future__ import annotations

from typing import Any

from himalia import AUTH_ERRORS, error_response, json_response


def _errors(*codes: str) -> dict[str, Any]:
    words = {"400": "Bad request: malformed body, setting or query", "403": "Forbidden: a hidden path",
             "404": "No such page, file, schema or workspace"}
    return {code: error_response(words[code]) for code in ("400", *codes)} | AUTH_ERRORS


def _param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


HTML = {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}}
REDIRECT = {"description": "Redirect: the token leaves the URL, or a notebook/directory goes to its page"}
FILE = {"description": "The file", "content": {
    "application/json": {"schema": {}},
    "*/*": {"schema": {"type": "string", "format": "binary"}}}}
OBJECT = {"type": "object"}


def _page(summary: str, *codes: str, param: tuple[str, str] | None = None) -> dict[str, Any]:
    # 404 too: the router answers it for a URL its patterns cannot match (a newline in it, say)
    op: dict[str, Any] = {"get": {"summary": summary, "responses": {"200": HTML, "302": REDIRECT,
                                                                    **_errors(*dict.fromkeys([*codes, "404"]))}}}
    if param:
        op["parameters"] = [_param(*param)]
    return op


def _file(summary: str, param: tuple[str, str]) -> dict[str, Any]:
    return {"parameters": [_param(*param)],
            "get": {"summary": summary, "responses": {"200": FILE, **_errors("404")}}}


def _json(summary: str, schema: dict[str, Any], *codes: str, param: tuple[str, str] | None = None,
          query: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    if param:
        codes = tuple(dict.fromkeys([*codes, "404"]))
    op: dict[str, Any] = {"summary": summary, "responses": {"200": json_response(summary, schema), **_errors(*codes)}}
    if query:
        op["parameters"] = query
    out: dict[str, Any] = {"get": op}
    if param:
        out["parameters"] = [_param(*param)]
    return out


SETTINGS_LIST = {"type": "object", "required": ["settings"],
                 "properties": {"settings": {"type": "array", "items": OBJECT}}}
SETTING = {"type": "object", "required": ["id", "schema", "raw", "settings"],
           "properties": {"id": {"type": "string"}, "schema": OBJECT, "raw": {"type": "string"},
                          "settings": OBJECT, "version": {"type": "string"}}}
WORKSPACES = {"type": "object", "required": ["workspaces"], "properties": {"workspaces": {
    "type": "object", "required": ["ids", "values"],
    "properties": {"ids": {"type": "array", "items": {"type": "string"}}, "values": {"type": "array", "items": OBJECT}}}}}
WORKSPACE = {"type": "object", "required": ["data", "metadata"], "properties": {"data": OBJECT, "metadata": OBJECT}}
TRANSLATIONS = {"type": "object", "required": ["data", "message"],
                "properties": {"data": OBJECT, "message": {"type": "string"}}}
IDS_ONLY = [{"name": "ids_only", "in": "query", "required": False, "schema": {"type": "string", "enum": ["true", "false"]},
             "description": "true: only the ids"}]
SCHEMA_NAME = ("schema_name", "A plugin's settings id, e.g. @jupyterlab/apputils-extension:themes")
NAME = ("name", "A workspace name")
NO_CONTENT = {"description": "Saved"}

PAGES = {
    "/lab": _page("JupyterLab"),
    "/lab/{rest}": _page("JupyterLab at a tree, workspace or other lab URL", param=("rest", "The rest of the URL")),
    "/doc": _page("JupyterLab in single-document mode"),
    "/doc/{rest}": _page("JupyterLab in single-document mode", param=("rest", "The rest of the URL")),
    "/tree": _page("Notebook 7's file browser", "403", "404"),
    "/tree/{path}": _page("Notebook 7's file browser at a directory", "403", "404", param=("path", "A directory")),
    "/notebooks": _page("Notebook 7's notebook page", "403"),
    "/notebooks/{path}": _page("Notebook 7's notebook page", "403", param=("path", "A notebook")),
    "/edit/{path}": _page("Notebook 7's editor", param=("path", "A file")),
    "/consoles/{path}": _page("Notebook 7's console page", param=("path", "A console's path")),
    "/terminals/{path}": _page("Notebook 7's terminal page", param=("path", "A terminal's name")),
}
FILES = {
    "/static/lab/{path}": _file("A file of JupyterLab's built app", ("path", "The file")),
    "/static/notebook/{path}": _file("A file of Notebook 7's app", ("path", "The file")),
    "/lab/extensions/{path}": _file("A file of a federated (prebuilt) extension", ("path", "<name>/<file>")),
    "/static/favicons/{name}": _file("A favicon", ("name", "The icon")),
    "/lab/api/themes/{path}": _file("A theme's file; relative url()s in CSS point back here", ("path", "<package>/<file>")),
    "/custom/custom.css": {"get": {"summary": "The user's custom CSS (empty when there is none)", "responses": {
        "200": {"description": "CSS", "content": {"text/css": {"schema": {"type": "string"}}}}, **_errors()}}},
}
APIS: dict[str, Any] = {
    "/lab/api/settings": _json("Every plugin's settings with its schema", SETTINGS_LIST, query=IDS_ONLY),
    "/lab/api/settings/": _json("Every plugin's settings with its schema", SETTINGS_LIST, query=IDS_ONLY),
    "/lab/api/settings/{schema_name}": {
        **_json("One plugin's settings", SETTING, "404", param=SCHEMA_NAME),
        "put": {"summary": "Save one plugin's settings (JSON5 text in 'raw', checked against the schema)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["raw"], "properties": {"raw": {"type": "string"}}}}}},
                "responses": {"204": NO_CONTENT, **_errors("404")}},
    },
    "/lab/api/workspaces": _json("Every saved workspace", WORKSPACES),
    "/lab/api/workspaces/": _json("Every saved workspace", WORKSPACES),
    "/lab/api/workspaces/{name}": {
        **_json("A workspace (an empty one when none is saved under the name)", WORKSPACE, param=NAME),
        "put": {"summary": "Save a workspace", "requestBody": {"required": True, "content": {
                    "application/json": {"schema": WORKSPACE}}},
                "responses": {"204": NO_CONTENT, **_errors("404")}},
        "delete": {"summary": "Delete a workspace", "responses": {"204": {"description": "Deleted"}, **_errors("404")}},
    },
    "/lab/api/translations": _json("The installed language packs", TRANSLATIONS),
    "/lab/api/translations/": _json("The installed language packs", TRANSLATIONS),
    "/lab/api/translations/{locale}": _json("A language pack ('default': the server's locale); the message "
                                            "says when none is installed", TRANSLATIONS,
                                            param=("locale", "A locale, e.g. fr_FR, or 'default'")),
    "/lab/api/licenses": {"get": {"summary": "Licenses of the app's and extensions' bundles", "parameters": [
        {"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in
        ("format", "bundles", "full_text", "download")], "responses": {"200": {"description": "The report", "content": {
            "application/json": {"schema": OBJECT}, "text/*": {"schema": {"type": "string"}}}}, **_errors()}}},
    "/lab/api/news": _json("News (none: Himalia does not reach the internet)", OBJECT),
    "/lab/api/update": _json("Update check (none: Himalia does not reach the internet)", OBJECT),
    "/lab/api/plugins": _json("Plugin locks (none)", OBJECT),
    "/lab/api/extensions": _json("The extension manager's list (read-only: empty)", {"type": "array"}),
    "/lab/api/listings/{path}": _json("Extension listings (none)", OBJECT, param=("path", "Ignored")),
}
APIS["/lab/api/licenses/"] = APIS["/lab/api/licenses"]

OPENAPI: dict[str, Any] = {"paths": {**PAGES, **FILES, **APIS}}
