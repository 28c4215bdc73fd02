"""The HTML pages (JupyterLab's index.html, Notebook 7's templates) and the files they load."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from urllib.parse import quote

from aiohttp import hdrs, web

from himalia import SERVICES, NotFound

from .pageconfig import join, page_config
from .site import SITE, Apps, LabSite

# jupyterlab_server's MASTER_URL_PATTERN, for what follows the base URL
LAB_URL = re.compile(r"/(?P<mode>lab|doc)(?P<workspace>/workspaces/[a-zA-Z0-9\-_]+)?(?P<tree>/tree/.*)?")

HTML = "text/html"


def _without_token(request: web.Request) -> web.Response | None:
    """`?token=T` logged the browser in (the auth middleware sets the cookie on this very answer):
    send it to the same URL without the token, so the token leaves the address bar and history."""
    if "token" not in request.query:
        return None
    query = [(k, v) for k, v in request.query.items() if k != "token"]
    location = request.rel_url.with_query(query)
    return web.Response(status=302, headers={hdrs.LOCATION: str(location)})


def _page(text: str) -> web.Response:
    return web.Response(text=text, content_type=HTML, headers={hdrs.CACHE_CONTROL: "no-cache"})


async def _loaded(request: web.Request) -> tuple[LabSite, Apps, dict]:
    site = request.app[SITE]
    apps = await site.apps()
    disk = await asyncio.to_thread(apps.disk_page_config)
    return site, apps, disk


def _base(site: LabSite) -> str:
    return site.base_url if site.base_url.endswith("/") else site.base_url + "/"


# --- JupyterLab ---------------------------------------------------------------------------------


async def lab_page(request: web.Request) -> web.StreamResponse:
    """/lab, /lab/tree/<p>, /lab/workspaces/<w>[/tree/<p>], /doc/..., and any other /lab/... (as
    jupyterlab_server's fallthrough, with `notFoundUrl`)."""
    if (redirect := _without_token(request)) is not None:
        return redirect
    site, apps, disk = await _loaded(request)
    path = request.path[len(join(site.base_url, "/").rstrip("/")):]  # what follows the base URL
    if path.endswith("/") and path.rstrip("/") in ("/lab", "/doc"):
        return web.Response(status=302, headers={hdrs.LOCATION: str(request.rel_url.with_path(
            request.path.rstrip("/")))})
    extra = {}
    m = LAB_URL.fullmatch(path)
    if m is None:
        m = LAB_URL.fullmatch("/lab")
        extra["notFoundUrl"] = request.path
    workspace = (m["workspace"] or "/workspaces/default").removeprefix("/workspaces/")
    tree = (m["tree"] or "").removeprefix("/tree/")
    config = page_config(request, site, apps, disk, notebook=False,
                         mode="single-document" if m["mode"] == "doc" else "multiple-document",
                         workspace=workspace, treePath=tree, **extra)
    text = apps.lab_template.render(page_config=config, base_url=_base(site), ws_url="", custom_css=False)
    return _page(text)


# --- Notebook 7 ---------------------------------------------------------------------------------


def _notebook_render(request: web.Request, site: LabSite, apps: Apps, disk: dict, template: str,
                     **page) -> web.Response:
    config = page_config(request, site, apps, disk, notebook=True, **page)
    text = apps.notebook_env.get_template(template).render(page_config=config, base_url=_base(site),
                                                           ws_url="", custom_css=True)
    return _page(text)


def _redirect(site: LabSite, prefix: str, path: str) -> web.Response:
    location = join(site.base_url, prefix) + ("/" + quote(path) if path else "")
    return web.Response(status=302, headers={hdrs.LOCATION: location})


async def _kind(request: web.Request, path: str) -> str | None:
    """'directory', 'notebook', 'file', or None when the contents service has nothing there."""
    contents = request.app[SERVICES].contents
    if contents is None:
        return "directory" if not path else None
    try:
        model = await contents.get(path, content=False)
    except NotFound:
        return None
    return model["type"]


async def tree_page(request: web.Request) -> web.StreamResponse:
    """/tree[/<path>]: a directory's listing; a notebook goes to /notebooks, any other file to /files."""
    if (redirect := _without_token(request)) is not None:
        return redirect
    path = request.match_info.get("path", "").strip("/")
    site = request.app[SITE]
    kind = await _kind(request, path)
    if kind is None:
        raise NotFound(f"no file or directory {path!r} under the server's root", "not found")
    if kind == "notebook":
        return _redirect(site, "/notebooks", path)
    if kind != "directory":
        return _redirect(site, "/files", path)
    site, apps, disk = await _loaded(request)
    return _notebook_render(request, site, apps, disk, "tree.html", treePath=path)


async def notebook_page(request: web.Request) -> web.StreamResponse:
    """/notebooks/<path>: the notebook; a directory goes to /tree."""
    if (redirect := _without_token(request)) is not None:
        return redirect
    path = request.match_info.get("path", "").strip("/")
    if await _kind(request, path) == "directory":
        return _redirect(request.app[SITE], "/tree", path)
    site, apps, disk = await _loaded(request)
    return _notebook_render(request, site, apps, disk, "notebooks.html")


def _simple_page(template: str):
    async def handler(request: web.Request) -> web.StreamResponse:
        if (redirect := _without_token(request)) is not None:
            return redirect
        site, apps, disk = await _loaded(request)
        return _notebook_render(request, site, apps, disk, template)

    handler.__name__ = template.removesuffix(".html") + "_page"
    return handler


edit_page = _simple_page("edit.html")
console_page = _simple_page("consoles.html")
terminal_page = _simple_page("terminals.html")


# --- files --------------------------------------------------------------------------------------


def _safe_relative(path: str) -> str:
    """A relative path with no way out of the directory it is joined to (no '..', no absolute path,
    no empty or hidden segment, no NUL)."""
    parts = path.split("/")
    if not path or "\x00" in path or "\\" in path or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise NotFound(f"no such file: {path!r}", "not found")
    return os.path.join(*parts)


async def _file(directory: Path | str | None, path: str, *, cache: bool = True) -> web.FileResponse:
    if directory is None:
        raise NotFound(f"no such file: {path!r}", "not found")
    full = os.path.join(str(directory), _safe_relative(path))
    if not await asyncio.to_thread(os.path.isfile, full):
        raise NotFound(f"no such file: {path!r}", "not found")
    headers = {hdrs.CACHE_CONTROL: "max-age=31536000" if cache else "no-cache"}
    return web.FileResponse(full, headers=headers)


def _hashed(name: str) -> bool:
    """Webpack names its bundles with content hashes (main.efd36b46f3b45eb8.js, 1014.0733...js):
    those never change, so the browser may keep them; anything else it must revalidate."""
    return re.search(r"[.\-][0-9a-f]{16,}\.", name) is not None or re.fullmatch(r"[0-9a-f]{16,}\.\w+", name) is not None


async def lab_static(request: web.Request) -> web.StreamResponse:
    apps = await request.app[SITE].apps()
    path = request.match_info["path"]
    return await _file(apps.paths.static_dir, path, cache=_hashed(path.rsplit("/", 1)[-1]))


async def notebook_static(request: web.Request) -> web.StreamResponse:
    apps = await request.app[SITE].apps()
    path = request.match_info["path"]
    return await _file(apps.paths.notebook_dir / "static", path, cache=_hashed(path.rsplit("/", 1)[-1]))


async def favicon(request: web.Request) -> web.StreamResponse:
    apps = await request.app[SITE].apps()
    return await _file(apps.paths.favicons_dir, request.match_info["name"], cache=False)


async def extension_file(request: web.Request) -> web.StreamResponse:
    """/lab/extensions/<name or @scope/name>/<file>: a federated extension's file, from the first
    labextensions directory on the Jupyter path that has the extension (as jupyterlab_server)."""
    apps = await request.app[SITE].apps()
    parts = request.match_info["path"].split("/")
    cut = 2 if parts[0].startswith("@") else 1
    name, rest = "/".join(parts[:cut]), "/".join(parts[cut:])
    _safe_relative(name)
    _safe_relative(rest)

    def find() -> str | None:
        for ext_dir in apps.paths.labextensions_path:
            if os.path.isfile(os.path.join(ext_dir, name, "package.json")):
                return os.path.join(ext_dir, name)
        return None

    ext = await asyncio.to_thread(find)
    if ext is None:
        raise NotFound(f"no federated extension {name!r} on the labextensions path", "not found")
    return await _file(ext, rest, cache=_hashed(rest.rsplit("/", 1)[-1]))


async def custom_css(request: web.Request) -> web.StreamResponse:
    """<jupyter config dir>/custom/custom.css, as Notebook 7 serves it; empty when there is none."""
    from .pageconfig import _jupyter_config_dir

    path = os.path.join(_jupyter_config_dir(), "custom", "custom.css")

    def read() -> str:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except OSError:
            return ""

    text = await asyncio.to_thread(read)
    return web.Response(text=text, content_type="text/css", headers={hdrs.CACHE_CONTROL: "no-cache"})
