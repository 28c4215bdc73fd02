"""`/lab/api/*`: settings, workspaces, translations, themes, licenses (jupyterlab_server's functions
behind aiohttp handlers, their errors mapped to Himalia's JSON errors), and quiet answers for the
optional endpoints (news, update checks, plugin locks, the extension manager) that never reach the
internet."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlparse

from aiohttp import hdrs, web

from himalia import ApiError, BadRequest, NotFound

from .pageconfig import join
from .site import SITE, Apps

log = logging.getLogger("himalia.lab")
T = TypeVar("T")


async def _call(fn: Callable[..., T], *args: Any, what: str, **kwargs: Any) -> T:
    """Run a blocking jupyterlab_server function in a thread, mapping its errors to ours."""
    from jsonschema import ValidationError
    from tornado.web import HTTPError

    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except HTTPError as e:
        message = e.log_message or e.reason or what
        if e.args:
            try:
                message = message % e.args
            except (TypeError, ValueError):
                pass
        reason = "not found" if e.status_code == 404 else "lab api error"
        if e.status_code >= 500:
            log.warning("%s: %s", what, message)
        raise ApiError(f"{what}: {message}", reason, status=e.status_code) from None
    except ValidationError as e:
        raise BadRequest(f"{what}: the settings do not match the schema: {e.message} "
                         f"(at {'/'.join(str(p) for p in e.absolute_path) or 'the top level'})",
                         "invalid settings") from None


async def _apps(request: web.Request) -> Apps:
    return await request.app[SITE].apps()


def _json(data: Any) -> web.Response:
    return web.json_response(data)


# --- settings -----------------------------------------------------------------------------------


def _current_locale(apps: Apps) -> str:
    """The locale chosen in the translation extension's settings, as jupyterlab_server's handlers read it."""
    from jupyterlab_server.translation_utils import (DEFAULT_LOCALE, L10N_SCHEMA_NAME, PSEUDO_LANGUAGE,
                                                     SYS_LOCALE, is_valid_locale)
    from jupyterlab_server.settings_utils import get_settings
    from tornado.web import HTTPError

    p = apps.paths
    try:
        settings, _ = get_settings(p.app_settings_dir, p.schemas_dir, p.user_settings_dir,
                                   schema_name=L10N_SCHEMA_NAME, overrides=apps.overrides,
                                   labextensions_path=p.labextensions_path)
    except HTTPError:
        settings = {}
    locale = settings.get("settings", {}).get("locale") or SYS_LOCALE
    if locale == "default":
        locale = SYS_LOCALE
    if not is_valid_locale(locale) and locale != PSEUDO_LANGUAGE:
        locale = DEFAULT_LOCALE
    return locale


# an npm package (optionally scoped) and a plugin name: "@jupyterlab/apputils-extension:themes". Checked
# before jupyterlab_server joins it to a directory, so no name can reach outside the settings dirs.
SCHEMA_NAME = re.compile(r"(?:@[\w.~-]+/)?[\w.~-]+:[\w.~-]+")


def _schema_name(request: web.Request) -> str:
    name = request.match_info["schema_name"]
    if not SCHEMA_NAME.fullmatch(name) or ".." in name:
        raise NotFound(f"no settings schema {name!r} (ids look like @scope/package:plugin)", "not found")
    return name


def _settings(apps: Apps, schema_name: str, ids_only: bool) -> dict[str, Any]:
    from jupyterlab_server.settings_utils import get_settings
    from jupyterlab_server.translation_utils import translator

    translator.set_locale(_current_locale(apps))
    p = apps.paths
    result, warnings = get_settings(p.app_settings_dir, p.schemas_dir, p.user_settings_dir,
                                    schema_name=schema_name, overrides=apps.overrides,
                                    labextensions_path=p.labextensions_path,
                                    translator=translator.translate_schema, ids_only=ids_only)
    for w in warnings:
        if w:
            log.warning("settings: %s", w)
    return result


def _settings_stamp(apps: Apps) -> tuple[Any, ...]:
    """What the listing depends on that can change while the server runs: the user's settings files,
    and the federated extensions and labconfig files (their schemas). The app's own schemas and the
    overrides are read once, as jupyterlab_server does."""
    stamp: list[Any] = [apps.stamp()]
    for dirpath, dirnames, filenames in os.walk(apps.paths.user_settings_dir):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            stamp.append((path, st.st_mtime_ns, st.st_size))
    return tuple(stamp)


def _settings_listing(apps: Apps, ids_only: bool) -> bytes:
    """Every plugin's settings as JSON, rebuilt only when `_settings_stamp` changed: reading and
    validating ~90 schemas and settings files takes ~100 ms, and JupyterLab asks on every page load."""
    stamp = _settings_stamp(apps)
    cached = apps.settings_cache.get(ids_only)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    body = json.dumps(_settings(apps, "", ids_only)).encode()
    apps.settings_cache[ids_only] = (stamp, body)
    return body


async def list_settings(request: web.Request) -> web.Response:
    apps = await _apps(request)
    ids_only = request.query.get("ids_only", "") == "true"
    body = await _call(_settings_listing, apps, ids_only, what="settings")
    return web.Response(body=body, content_type="application/json")


async def get_setting(request: web.Request) -> web.Response:
    apps = await _apps(request)
    name = _schema_name(request)
    return _json(await _call(_settings, apps, name, False, what=f"settings {name!r}"))


async def put_setting(request: web.Request) -> web.Response:
    from jupyterlab_server.settings_utils import save_settings

    apps = await _apps(request)
    name = _schema_name(request)
    try:
        body = json.loads(await request.text())
        raw = body["raw"]
        if not isinstance(raw, str):
            raise TypeError
    except ValueError as e:
        raise BadRequest(f"settings {name!r}: the body is not JSON: {e}", "bad json") from None
    except (KeyError, TypeError):
        raise BadRequest(f"settings {name!r}: the body must be {{\"raw\": \"<JSON5 text>\"}}",
                         "bad settings payload") from None

    def save() -> None:
        p = apps.paths
        try:
            save_settings(p.schemas_dir, p.user_settings_dir, name, raw, apps.overrides, p.labextensions_path)
        except ValueError as e:  # json5 could not parse `raw`
            raise BadRequest(f"settings {name!r}: 'raw' is not JSON5: {e}", "bad json") from None

    await _call(save, what=f"settings {name!r}")
    return web.Response(status=204)


# --- workspaces ---------------------------------------------------------------------------------


async def list_workspaces(request: web.Request) -> web.Response:
    apps = await _apps(request)

    def listing() -> dict[str, Any]:
        values = apps.workspaces.list_workspaces()
        return {"workspaces": {"ids": [w["metadata"]["id"] for w in values], "values": values}}

    return _json(await _call(listing, what="workspaces"))


async def get_workspace(request: web.Request) -> web.Response:
    apps = await _apps(request)
    name = request.match_info["name"]
    return _json(await _call(apps.workspaces.load, name, what=f"workspace {name!r}"))


def _check_workspace(name: str, raw: str) -> None:
    """The shape WorkspacesManager.save indexes into without checking (it would raise KeyError/TypeError)."""
    try:
        space = json.loads(raw)
    except ValueError as e:
        raise BadRequest(f"workspace {name!r}: the body is not JSON: {e}", "bad workspace") from None
    if not (isinstance(space, dict) and isinstance(space.get("data"), dict)
            and isinstance(space.get("metadata"), dict) and isinstance(space["metadata"].get("id"), str)):
        raise BadRequest(f"workspace {name!r}: the body must be {{\"data\": {{...}}, \"metadata\": "
                         f"{{\"id\": \"{name}\", ...}}}}", "bad workspace")


async def put_workspace(request: web.Request) -> web.Response:
    apps = await _apps(request)
    name = request.match_info["name"]
    raw = (await request.text()).strip()
    _check_workspace(name, raw)
    try:
        await _call(apps.workspaces.save, name, raw, what=f"workspace {name!r}")
    except ValueError as e:
        raise BadRequest(f"workspace {name!r}: {e}", "bad workspace") from None
    return web.Response(status=204)


async def delete_workspace(request: web.Request) -> web.Response:
    apps = await _apps(request)
    name = request.match_info["name"]
    try:
        await _call(apps.workspaces.delete, name, what=f"workspace {name!r}")
    except FileNotFoundError:
        raise NotFound(f"no workspace {name!r}", "not found") from None
    return web.Response(status=204)


# --- translations -------------------------------------------------------------------------------


def _language_packs(apps: Apps) -> dict[str, Any]:
    from jupyterlab_server.translation_utils import get_language_packs

    data, message = get_language_packs(display_locale=_current_locale(apps))
    return {"data": data, "message": message}


def _language_pack(locale: str) -> dict[str, Any]:
    from jupyterlab_server.translation_utils import SYS_LOCALE, get_language_pack, is_valid_locale, translator

    if locale == "default":
        locale = SYS_LOCALE
    data, message = get_language_pack(locale)
    if data == {} and not message:
        message = (f"Language pack '{locale}' not installed!" if is_valid_locale(locale)
                   else f"Language pack '{locale}' not valid!")
    elif is_valid_locale(locale):
        translator.set_locale(locale)
    return {"data": data, "message": message}


async def list_translations(request: web.Request) -> web.Response:
    apps = await _apps(request)
    return _json(await _call(_language_packs, apps, what="translations"))


async def get_translation(request: web.Request) -> web.Response:
    await _apps(request)
    locale = request.match_info["locale"]
    # as jupyterlab_server: always 200, the message says what is missing (the page must load anyway)
    return _json(await _call(_language_pack, locale, what=f"translation {locale!r}"))


# --- themes -------------------------------------------------------------------------------------

CSS_URL = re.compile(r"url\('(.*?)'\)")


def _theme_dirs(apps: Apps) -> list[str]:
    """Federated extensions' `themes` directories (the labextensions path in order), then the app's."""
    found = []
    for ext_dir in apps.paths.labextensions_path:
        for dirpath, dirnames, _ in os.walk(ext_dir):
            dirnames.sort()
            if os.path.basename(dirpath) == "themes":
                found.append(dirpath)
    return [*found, apps.paths.themes_dir]


async def theme_file(request: web.Request) -> web.StreamResponse:
    """/lab/api/themes/<package>/<file>: a theme's file; relative `url('...')` in CSS rewritten to
    this route, as jupyterlab_server's ThemesHandler does."""
    from .pages import _safe_relative

    apps = await _apps(request)
    path = request.match_info["path"]
    rel = _safe_relative(path)

    def find() -> str | None:
        for d in _theme_dirs(apps):
            candidate = os.path.join(d, rel)
            if os.path.isfile(candidate):
                return candidate
        return None

    found = await asyncio.to_thread(find)
    if found is None:
        raise NotFound(f"no theme file {path!r} in the app's or any federated extension's themes", "not found")
    if not found.endswith(".css"):
        return web.FileResponse(found, headers={hdrs.CACHE_CONTROL: "no-cache"})
    base = join(request.app[SITE].base_url, "/lab/api/themes/" + os.path.dirname(path))

    def rewrite(m: re.Match[str]) -> str:
        part = m.group(1)
        if part.startswith("/") or urlparse(part).scheme or part.startswith("data:"):
            return m.group(0)
        return f"url('{base}/{part}')"

    text = await asyncio.to_thread(lambda: open(found, encoding="utf-8").read())
    return web.Response(text=CSS_URL.sub(rewrite, text), content_type="text/css",
                        headers={hdrs.CACHE_CONTROL: "no-cache"})


# --- licenses -----------------------------------------------------------------------------------


async def licenses(request: web.Request) -> web.Response:
    import mimetypes

    apps = await _apps(request)
    try:
        full_text = bool(json.loads(request.query.get("full_text", "true")))
        download = bool(json.loads(request.query.get("download", "0")))
    except ValueError:
        raise BadRequest("licenses: 'full_text' and 'download' must be JSON booleans", "bad query") from None
    report_format = request.query.get("format", "json")
    bundles = request.query.get("bundles", ".*")
    try:
        re.compile(bundles)
    except re.error as e:
        raise BadRequest(f"licenses: 'bundles' is not a regular expression: {e}", "bad query") from None
    try:
        report, mime = await _call(apps.licenses.report, report_format=report_format,
                                   bundles_pattern=bundles, full_text=full_text, what="licenses")
    except ValueError as e:
        raise BadRequest(f"licenses: {e}", "bad query") from None
    response = web.Response(text=report, headers={hdrs.CONTENT_TYPE: mime})
    if download:
        ext = mimetypes.guess_extension(mime) or ""
        response.headers[hdrs.CONTENT_DISPOSITION] = f'attachment; filename="jupyterlab-licenses{ext}"'
    return response


# --- optional endpoints: harmless answers, nothing fetched from the internet ------------------------


async def news(request: web.Request) -> web.Response:
    return _json({"news": []})


async def update(request: web.Request) -> web.Response:
    return _json({"notification": None})


async def plugins(request: web.Request) -> web.Response:
    return _json({"lockRules": [], "allLocked": False})


async def extensions(request: web.Request) -> web.Response:
    # the extension manager is read-only here (page config `extensionManager.can_install` is false)
    return _json([])


async def listings(request: web.Request) -> web.Response:
    return _json({"blocked_extensions_uris": [], "allowed_extensions_uris": [],
                  "blocked_extensions": [], "allowed_extensions": []})
