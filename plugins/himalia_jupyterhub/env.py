"""What JupyterHub's spawner tells a single-user server through the environment, and what it means
for `[server]` when nothing else is configured."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

API_TOKEN = "JUPYTERHUB_API_TOKEN"


def started_by_hub(environ: Mapping[str, str] | None = None) -> bool:
    """True when a JupyterHub spawner started this process: it always sets the API token and the
    service URL (jupyterhub's own single-user server refuses to start without the latter)."""
    environ = os.environ if environ is None else environ
    return bool(environ.get(API_TOKEN)) and bool(environ.get("JUPYTERHUB_SERVICE_URL"))


def activity_interval(environ: Mapping[str, str] | None = None) -> float:
    """`JUPYTERHUB_ACTIVITY_INTERVAL` seconds, 300 when unset (as the hub's own server); 0 disables."""
    environ = os.environ if environ is None else environ
    text = environ.get("JUPYTERHUB_ACTIVITY_INTERVAL", "").strip()
    if not text:
        return 300.0
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"JUPYTERHUB_ACTIVITY_INTERVAL must be a number of seconds, got {text!r}") from None
    return max(value, 0.0)


def server_defaults(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`[server]` values under a hub: listen where JUPYTERHUB_SERVICE_URL says (exactly: the hub
    polls that port, so no port retries), under JUPYTERHUB_SERVICE_PREFIX, in JUPYTERHUB_ROOT_DIR if
    the spawner set one.

    Remote access is allowed, as jupyterhub's own single-user server does: the proxy forwards the
    browser's Host, which this process cannot know (the hub's public_url is optional), and every
    request is authenticated by the hub (OAuth cookie or hub token), never by a secret a rebound
    foreign page could ride on. The Origin check still holds (same origin, or refused)."""
    environ = os.environ if environ is None else environ
    if not started_by_hub(environ):
        return {}
    url = urlsplit(environ["JUPYTERHUB_SERVICE_URL"])
    out: dict[str, Any] = {"allow_remote_access": True, "port_retries": 0}
    # an empty host ("http://:8888/...", the spawner's ip = '') means every interface
    out["ip"] = url.hostname or "0.0.0.0"
    if url.port is not None:
        out["port"] = url.port
    prefix = environ.get("JUPYTERHUB_SERVICE_PREFIX", "")
    if prefix:
        out["base_url"] = prefix
    root = environ.get("JUPYTERHUB_ROOT_DIR", "")
    if root:
        out["root_dir"] = os.path.expanduser(root)
    return out
