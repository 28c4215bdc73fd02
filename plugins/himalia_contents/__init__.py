"""Default plugin `contents`: files, notebooks and directories under the root, as jupyter_server serves them.

Provides the `filesystem` contents provider and the `/api/contents`, `/files` and `/api/resolvePath`
routes. Heavy work (nbformat, file I/O) happens lazily, inside the service's worker threads.
"""

from __future__ import annotations

from himalia import ConfigSection, Provider, Route, hookimpl

from .config import MOVED, ContentsConfig

ANY = r"{path:[\s\S]*}"
"""Any path, newlines included (`.*` stops at one: a name with a newline was listed but unreachable)."""
CONTENTS = "/api/contents/" + ANY
ROOT = "/api/contents"


@hookimpl
def himalia_config_sections():
    return [ConfigSection("contents", ContentsConfig, "Files and notebooks served from [server] root_dir.",
                          moved=MOVED)]


@hookimpl
def himalia_contents_providers():
    from .filesystem import filesystem_contents

    return [Provider("filesystem", filesystem_contents, "Files and notebooks in a local directory")]


@hookimpl
def himalia_routes(config):
    from . import handlers as h

    # checkpoints and trust first: their URLs also match the plain contents pattern
    return [
        Route("GET", CONTENTS + "/checkpoints", h.list_checkpoints),
        Route("POST", CONTENTS + "/checkpoints", h.create_checkpoint),
        Route("POST", CONTENTS + r"/checkpoints/{checkpoint_id:[\w-]+}", h.restore_checkpoint),
        Route("DELETE", CONTENTS + r"/checkpoints/{checkpoint_id:[\w-]+}", h.delete_checkpoint),
        Route("POST", CONTENTS + "/trust", h.trust_notebook),
        *[Route(method, pattern, handler) for pattern in (ROOT, CONTENTS) for method, handler in (
            ("GET", h.get_contents), ("PUT", h.put_contents), ("POST", h.post_contents),
            ("PATCH", h.patch_contents), ("DELETE", h.delete_contents))],
        Route("GET", "/files/" + ANY, h.get_file, user_content=True),
        Route("GET", "/api/resolvePath", h.resolve_path),
    ]


@hookimpl
def himalia_openapi(config):
    from .openapi import OPENAPI

    return OPENAPI
