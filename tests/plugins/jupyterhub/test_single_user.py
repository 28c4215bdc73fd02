"""Himalia as JupyterHub's single-user server: a real hub spawns `himalia serve` (its only setting
`c.Spawner.cmd`), users log in through the hub's login form and its OAuth redirects with a real HTTP
client, and in headless Chromium (tests/clients/hub_lab.mjs, on the same hub), and everything goes
through the hub's real proxy."""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from pathlib import Path

import aiohttp
import pytest
import yarl

from .conftest import PASSWORD, Hub

WAIT = 60


def jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1, an IP address


async def hub_api(hub: Hub, method: str, path: str, **kwargs) -> tuple[int, object]:
    async with aiohttp.ClientSession(headers={"Authorization": f"token {hub.token}"}) as s:
        async with s.request(method, hub.api + path, **kwargs) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text and r.content_type == "application/json" else text)


async def ensure_server(hub: Hub, name: str) -> None:
    """The user exists and their server is running and ready (started through the hub's API)."""
    status, _ = await hub_api(hub, "POST", f"users/{name}")
    assert status in (201, 409), status
    status, body = await hub_api(hub, "POST", f"users/{name}/server")
    assert status in (201, 202, 400), (status, body)  # 400: already running
    async with asyncio.timeout(WAIT):
        while True:
            status, model = await hub_api(hub, "GET", f"users/{name}")
            server = model["servers"].get("")
            if server and server["ready"]:
                return
            await asyncio.sleep(0.2)  # the hub has no event to wait on from outside


async def hub_login(session: aiohttp.ClientSession, hub: Hub, name: str) -> None:
    """Log in through the hub's own login form, as a browser does."""
    async with session.get(hub.url + "hub/login") as r:
        page = await r.text()
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page).group(1)
    async with session.post(hub.url + "hub/login", data={"username": name, "password": PASSWORD, "_xsrf": xsrf},
                            allow_redirects=False) as r:
        assert r.status == 302, await r.text()


def cookie(session: aiohttp.ClientSession, name: str, path: str = "/user/alice/") -> str | None:
    """The cookie `name` a browser sends to `path` (the hub sets its own `_xsrf` on /hub/)."""
    for c in session.cookie_jar:
        if c.key == name and path.startswith(c["path"] or "/"):
            return c.value
    return None


PAGE = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.fixture
async def alice(hub: Hub):
    """alice's browser: logged in to the hub, then into her server through OAuth."""
    await ensure_server(hub, "alice")
    root = hub.homes / "alice"
    (root / "hello.txt").write_text("hello from alice's server\n")
    async with aiohttp.ClientSession(cookie_jar=jar()) as s:
        await hub_login(s, hub, "alice")
        async with s.get(hub.url + "user/alice/files/hello.txt?download=0", headers=PAGE) as r:
            assert r.status == 200, await r.text()
            assert str(r.url) == hub.url + "user/alice/files/hello.txt?download=0"  # landed where it asked
            assert await r.text() == "hello from alice's server\n"
            hops = [str(h.url) for h in r.history]
        assert any("/hub/api/oauth2/authorize" in h for h in hops), hops
        assert any("/user/alice/oauth_callback" in h for h in hops), hops
        yield s


async def test_health_check_answers_with_the_hub_version(hub):
    await ensure_server(hub, "alice")
    async with aiohttp.ClientSession() as s:
        async with s.get(hub.url + "user/alice/api") as r:
            assert r.status == 200
            assert r.headers.get("X-JupyterHub-Version")


async def test_the_root_sends_a_browser_to_the_spawners_default_url(hub, alice):
    async with alice.get(hub.url + "user/alice/", headers=PAGE, allow_redirects=False) as r:
        assert r.status == 302
        assert r.headers["Location"] == "/user/alice/tree"
    async with alice.get(hub.url + "user/alice/", headers=PAGE) as r:
        assert r.status == 200 and str(r.url) == hub.url + "user/alice/tree"


async def test_an_unauthenticated_api_call_gets_403_and_a_page_a_redirect_into_oauth(hub):
    await ensure_server(hub, "alice")
    async with aiohttp.ClientSession(cookie_jar=jar()) as s:
        async with s.get(hub.url + "user/alice/api/contents") as r:
            assert r.status == 403
            assert (await r.json())["reason"] == "not logged in"
        async with s.get(hub.url + "user/alice/files/hello.txt", headers=PAGE, allow_redirects=False) as r:
            assert r.status == 302
            location = r.headers["Location"]
        assert location.startswith("/hub/api/oauth2/authorize?"), location
        assert "code_challenge=" in location and "state=" in location
        assert cookie(s, "jupyterhub-user-alice-oauth-state")
        # a websocket without a login is refused, never redirected
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await s.ws_connect(hub.url + f"user/alice/api/kernels/{uuid.uuid4()}/channels")
        assert e.value.status == 403


async def test_alice_runs_a_cell_and_the_hub_sees_her_activity(hub, alice):
    base = hub.url + "user/alice/"
    xsrf = cookie(alice, "_xsrf")
    assert xsrf
    async with alice.get(base + "api/me") as r:
        assert r.status == 200
        assert (await r.json())["identity"]["username"] == "alice"
    body = {"path": "a.ipynb", "type": "notebook", "name": "", "kernel": {"name": "python3"}}
    async with alice.post(base + "api/sessions", json=body) as r:
        assert r.status == 403  # a cookie-authenticated POST without the XSRF header
    async with alice.post(base + "api/sessions", json=body, headers={"X-XSRFToken": xsrf}) as r:
        assert r.status == 201, await r.text()
        kernel_id = (await r.json())["kernel"]["id"]
    _, before = await hub_api(hub, "GET", "users/alice")
    before_activity = before["servers"][""]["last_activity"]

    origin = hub.url.rstrip("/")
    async with alice.ws_connect(base + f"api/kernels/{kernel_id}/channels", headers={"Origin": origin}) as ws:
        msg_id = uuid.uuid4().hex
        await ws.send_json({"header": {"msg_id": msg_id, "msg_type": "execute_request", "session": "s",
                                       "username": "alice", "version": "5.3"},
                            "parent_header": {}, "metadata": {}, "channel": "shell",
                            "content": {"code": "6 * 7", "silent": False}})
        async with asyncio.timeout(WAIT):
            async for message in ws:
                m = json.loads(message.data)
                if m["msg_type"] == "execute_result" and m["parent_header"].get("msg_id") == msg_id:
                    assert m["content"]["data"]["text/plain"] == "42"
                    break
    async with alice.get(base + f"api/kernels/{kernel_id}") as r:
        kernel_activity = (await r.json())["last_activity"]

    async with asyncio.timeout(WAIT):  # reported within JUPYTERHUB_ACTIVITY_INTERVAL (1 s here)
        while True:
            _, model = await hub_api(hub, "GET", "users/alice")
            reported = model["servers"][""]["last_activity"]
            if reported > before_activity and _stamp(reported) >= _stamp(kernel_activity):
                break
            await asyncio.sleep(0.2)


def _stamp(text: str) -> str:
    """An ISO timestamp reduced to a comparable UTC string to the millisecond (the hub writes its own
    format)."""
    from datetime import datetime, timezone

    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).isoformat(
        timespec="milliseconds")


async def authorize(session: aiohttp.ClientSession, hub: Hub, page: str) -> str:
    """Ask for `page` without a login and go through the hub's authorize step by hand: the callback
    URL the hub sends the browser to (with code and state), not yet followed."""
    async with session.get(hub.url + page, headers=PAGE, allow_redirects=False) as r:
        assert r.status == 302
        location = r.headers["Location"]
    async with session.get(hub.url + location.lstrip("/"), headers=PAGE, allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        callback = r.headers["Location"]
    assert "/user/alice/oauth_callback?" in callback
    return callback if callback.startswith("http") else hub.url + callback.lstrip("/")


async def test_two_logins_under_way_at_once_both_land(hub):
    """Two tabs opened before either finished logging in: each keeps its own state cookie."""
    await ensure_server(hub, "alice")
    async with aiohttp.ClientSession(cookie_jar=jar()) as s:
        await hub_login(s, hub, "alice")
        first = await authorize(s, hub, "user/alice/files/hello.txt")
        second = await authorize(s, hub, "user/alice/files/hello.txt?tab=2")
        async with s.get(second, headers=PAGE) as r:
            assert r.status == 200 and str(r.url) == hub.url + "user/alice/files/hello.txt?tab=2"
        async with s.get(first, headers=PAGE) as r:
            assert r.status == 200 and str(r.url).endswith("/user/alice/files/hello.txt")


async def test_a_page_with_escapes_in_its_url_is_landed_on_as_asked(hub):
    await ensure_server(hub, "alice")
    (hub.homes / "alice" / "späce file.txt").write_text("escaped\n")
    async with aiohttp.ClientSession(cookie_jar=jar()) as s:
        await hub_login(s, hub, "alice")
        page = hub.url + "user/alice/files/sp%C3%A4ce%20file.txt"
        async with s.get(yarl.URL(page, encoded=True), headers=PAGE) as r:
            assert r.status == 200 and await r.text() == "escaped\n"
            assert str(r.url) == page and r.history


async def test_an_export_download_without_a_login_lands_after_oauth(hub):
    """A download opened in a new tab (File › Save and Export Notebook As) by a browser whose login has
    not reached this server yet: into OAuth, and back to the download."""
    await ensure_server(hub, "alice")
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"id": "md", "cell_type": "markdown", "source": "# exported for alice", "metadata": {}}]}
    (hub.homes / "alice" / "export.ipynb").write_text(json.dumps(notebook))
    async with aiohttp.ClientSession(cookie_jar=jar()) as s:
        await hub_login(s, hub, "alice")
        page = hub.url + "user/alice/nbconvert/html/export.ipynb?download=true"
        async with s.get(page, headers=PAGE) as r:
            assert r.status == 200, await r.text()
            assert str(r.url) == page
            assert any("/user/alice/oauth_callback" in str(h.url) for h in r.history)
            assert r.headers["Content-Disposition"].startswith("attachment")
            assert "exported for alice" in await r.text()


async def test_a_callback_without_its_state_cookie_or_with_a_made_up_state_is_refused(hub):
    await ensure_server(hub, "alice")
    async with aiohttp.ClientSession(cookie_jar=jar()) as s:
        await hub_login(s, hub, "alice")
        callback = await authorize(s, hub, "user/alice/files/hello.txt")
        made_up = re.sub(r"state=[^&]+", "state=made-up", callback)
        async with s.get(made_up, allow_redirects=False) as r:
            assert r.status == 400 and (await r.json())["reason"] == "oauth state unknown"
        # another browser handed the callback URL (login CSRF): it has no state cookie
        async with aiohttp.ClientSession(cookie_jar=jar()) as other:
            async with other.get(callback, allow_redirects=False) as r:
                assert r.status == 400 and (await r.json())["reason"] == "oauth state mismatch"
                assert cookie(other, "jupyterhub-user-alice") is None


async def test_bob_gets_403_on_alices_server(hub):
    await ensure_server(hub, "alice")
    status, _ = await hub_api(hub, "POST", "users/bob")
    assert status in (201, 409)
    status, token = await hub_api(hub, "POST", "users/bob/tokens", json={"note": "test"})
    assert status == 201, token
    async with aiohttp.ClientSession() as s:
        async with s.get(hub.url + "user/alice/api/contents",
                         headers={"Authorization": f"token {token['token']}"}) as r:
            assert r.status == 403
            assert (await r.json())["reason"] == "forbidden user"
    # bob's browser: the hub itself refuses to hand him a code for alice's server
    async with aiohttp.ClientSession(cookie_jar=jar()) as s:
        await hub_login(s, hub, "bob")
        async with s.get(hub.url + "user/alice/api/contents") as r:
            assert r.status == 403
        async with s.get(hub.url + "user/alice/files/hello.txt", headers=PAGE) as r:
            assert r.status == 403
            assert "/user/alice/" not in str(r.url) or "oauth" in str(r.url)
        assert cookie(s, "jupyterhub-user-alice") is None


async def test_a_token_in_the_url_logs_in_a_websocket_only(hub):
    """As jupyterhub's own single-user server: `?token=` authenticates a websocket (browsers cannot set
    its headers) and is ignored elsewhere unless the hub allows tokens in URLs."""
    await ensure_server(hub, "alice")
    status, token = await hub_api(hub, "POST", "users/alice/tokens", json={"note": "url token test"})
    assert status == 201, token
    token = token["token"]
    base = hub.url + "user/alice/"
    async with aiohttp.ClientSession(cookie_jar=jar()) as s:
        async with s.post(base + "api/kernels", json={"name": "python3"},
                          headers={"Authorization": f"token {token}"}) as r:
            assert r.status == 201, await r.text()
            kernel_id = (await r.json())["id"]
        try:
            async with s.get(base + f"api/contents?token={token}") as r:
                assert r.status == 403 and (await r.json())["reason"] == "not logged in"
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await s.ws_connect(base + f"api/kernels/{kernel_id}/channels?token=made-up")
            assert e.value.status == 403
            async with s.ws_connect(base + f"api/kernels/{kernel_id}/channels?token={token}") as ws:
                msg_id = uuid.uuid4().hex
                await ws.send_json({"header": {"msg_id": msg_id, "msg_type": "kernel_info_request",
                                               "session": "s", "username": "alice", "version": "5.3"},
                                    "parent_header": {}, "metadata": {}, "channel": "shell", "content": {}})
                async with asyncio.timeout(WAIT):
                    async for message in ws:
                        m = json.loads(message.data)
                        if m["msg_type"] == "kernel_info_reply" and m["parent_header"].get("msg_id") == msg_id:
                            assert m["content"]["status"] == "ok"
                            break
        finally:
            async with s.delete(base + f"api/kernels/{kernel_id}", headers={"Authorization": f"token {token}"}) as r:
                assert r.status == 204
    assert not kernel_processes(kernel_id)


async def test_logout_ends_the_login(hub, alice):
    base = hub.url + "user/alice/"
    async with alice.get(base + "api/contents") as r:
        assert r.status == 200
    login = cookie(alice, "jupyterhub-user-alice")
    async with alice.get(base + "logout", headers=PAGE, allow_redirects=False) as r:
        assert r.status == 302
        assert r.headers["Location"] == "/hub/logout"
    async with alice.get(hub.url + "hub/logout", headers=PAGE) as r:
        assert r.status == 200
    assert cookie(alice, "jupyterhub-user-alice") is None
    async with alice.get(base + "api/contents") as r:
        assert r.status == 403
    async with alice.get(base + "files/hello.txt", headers=PAGE) as r:  # back to the hub's login form
        assert "/hub/login" in str(r.url)
    # the old cookie, replayed: the hub revoked the session's token at logout, and the answer we had
    # cached for it was dropped
    assert login
    async with aiohttp.ClientSession(headers={"Cookie": f"jupyterhub-user-alice={login}"}) as replay:
        async with replay.get(base + "api/contents") as r:
            assert r.status == 403
            assert "ended at the hub" in (await r.json())["message"]  # the cookie was seen, and refused
        async with replay.get(base + "files/hello.txt", headers=PAGE, allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"].startswith("/hub/api/oauth2/authorize?")


BROWSER_STEPS = [
    "hub: a page of her server sends the browser through OAuth to the hub's login form",
    "hub: the login form logs alice in and OAuth lands her in JupyterLab under her prefix",
    "lab: the page config carries the hub keys",
    "lab: open a notebook, run print(6*7), see 42",
    "lab: File › Hub Control Panel opens the hub's home page, logged in",
    "lab: File › Log Out ends the login, at the hub too",
    "hub: after logging out, her server sends the browser back to the hub's login form",
    "no unexpected HTTP error",
]


@pytest.mark.timeout(600)
async def test_alice_in_chromium(hub, run_node, chromium, jupyterlab, tmp_path):
    """tests/clients/hub_lab.mjs: alice in a real browser, from the hub's login form to a cell's output,
    the Hub Control Panel and Log Out; then the hub stops her server and the notebook's kernel goes."""
    home = hub.homes / "alice"
    home.mkdir(exist_ok=True)
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {
        "name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
        "cells": [{"id": "hub", "cell_type": "code", "source": "", "metadata": {}, "outputs": [],
                   "execution_count": None}]}
    (home / "hub-lab.ipynb").write_text(json.dumps(notebook))
    # window.jupyterapp, through which the script sees when the notebook's kernel is ready ($HOME is
    # the user's home under SimpleLocalProcessSpawner, so this is her ~/.jupyter)
    labconfig = home / ".jupyter" / "labconfig"
    labconfig.mkdir(parents=True, exist_ok=True)
    (labconfig / "page_config.json").write_text(json.dumps({"exposeAppInBrowser": True}))
    await ensure_server(hub, "alice")
    (tmp_path / "profile").mkdir()
    (tmp_path / "screenshots").mkdir()
    env = {"HUB_URL": hub.url, "HUB_USER": "alice", "PASSWORD": PASSWORD, "NOTEBOOK": "hub-lab.ipynb",
           "CHROMIUM": str(chromium), "USER_DATA_DIR": str(tmp_path / "profile"),
           "SCREENSHOT_DIR": str(tmp_path / "screenshots"), "STEP_TIMEOUT_MS": "60000",
           "PATH": os.environ.get("PATH", "")}
    run = await asyncio.to_thread(run_node, "hub_lab.mjs", env, 420)
    try:
        assert run.step_names() == BROWSER_STEPS, run.tail()
        for step in BROWSER_STEPS:
            try:
                run.assert_step(step)
            except AssertionError as e:
                raise AssertionError(f"{e}\nscreenshots: {tmp_path / 'screenshots'}\n"
                                     f"{run.summary.get('httpErrors')}\n{run.tail()}") from None
        assert run.returncode == 0, run.tail()
        kernel_id = run.summary["kernelId"]
        assert kernel_processes(kernel_id)  # the notebook's kernel outlives the browser, as it should
    finally:
        await stop_server(hub, "alice")
    assert not kernel_processes(kernel_id)


async def stop_server(hub: Hub, name: str) -> None:
    status, _ = await hub_api(hub, "DELETE", f"users/{name}/server")
    assert status in (202, 204, 400), status  # 400: not running
    async with asyncio.timeout(WAIT):
        while True:
            _, model = await hub_api(hub, "GET", f"users/{name}")
            if not model["servers"]:
                return
            await asyncio.sleep(0.2)  # the hub has no event to wait on from outside


async def test_the_hub_stops_the_server_and_no_kernel_is_left(hub, alice):
    base = hub.url + "user/alice/"
    async with alice.post(base + "api/kernels", json={"name": "python3"},
                          headers={"X-XSRFToken": cookie(alice, "_xsrf")}) as r:
        assert r.status == 201
        kernel_id = (await r.json())["id"]
    assert kernel_processes(kernel_id)
    status, _ = await hub_api(hub, "DELETE", "users/alice/server")
    assert status in (202, 204)
    async with asyncio.timeout(WAIT):
        while True:
            _, model = await hub_api(hub, "GET", "users/alice")
            if not model["servers"]:
                break
            await asyncio.sleep(0.2)
    assert not kernel_processes(kernel_id)


def kernel_processes(kernel_id: str) -> list[int]:
    """Processes whose command line names the kernel's connection file."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"kernel-{kernel_id}".encode() in (entry / "cmdline").read_bytes():
                    out.append(int(entry.name))
            except OSError:
                continue
    return out
