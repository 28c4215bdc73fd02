"""The gateway provider over a real Jupyter Enterprise Gateway 3.x (one per module, in its own venv:
see enterprise_gateway_kit.py), with its local process proxy (`python3`) and its remote launch
protocol run on 127.0.0.1 (`python_remote`).

The module's `gateway` fixture is Enterprise Gateway, so the end-to-end tests written for Kernel
Gateway (imported below from test_through_himalia.py and test_himalia_as_a_gateway.py) run here
unchanged against it, both client protocols included.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from enterprise_gateway_kit import eg_environment, run_enterprise_gateway, start_enterprise_gateway
from gateway_kit import V1, WAIT, Gateway, decode_v1, gateway_manager, run_code, ws_execute
from test_himalia_as_a_gateway import HIMALIA_TOKEN, jupyter_server_runs_kernels_through
from test_through_himalia import (  # noqa: F401 - collected here, with this module's `gateway`
    gateway_config,
    test_a_dropped_upstream_is_reconnected_under_a_connected_client,
    test_a_kernel_deleted_behind_our_back_is_dead_then_404,
    test_execute_interrupt_restart_delete,
    test_interrupt_stops_a_running_cell,
    test_one_session_create_opens_one_upstream_websocket,
    test_sessions_work_unchanged_over_the_gateway,
)

from himalia import ApiError
from himalia.testing import stop_process

# pytest-timeout counts fixture set-up in: the first test may also create EG's venv (minutes, once)
pytestmark = [pytest.mark.usefixtures("kernels_left"), pytest.mark.timeout(1800)]

KERNEL_USER = "eg-tester"
PERSISTENT = ("--EnterpriseGatewayApp.availability_mode=standalone",)
"""Kernel session persistence on: a restarted gateway takes back the kernels that outlived it."""


@pytest.fixture(scope="module")
def eg_env() -> Path:
    """EG's virtual environment (created on first use, then cached: see enterprise_gateway_kit)."""
    return eg_environment()


@pytest.fixture(scope="module")
def gateway(eg_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One Enterprise Gateway for the module, with its default authorization (it refuses root) and kernel
    session persistence (restarted in place by the restart tests)."""
    with run_enterprise_gateway(tmp_path_factory.mktemp("eg"), eg_env, *PERSISTENT) as gw:
        yield gw


@pytest.fixture(autouse=True)
def _kernel_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels run for a named user (this machine's tests may run as root, whom EG refuses); the tests
    of the default clear it."""
    monkeypatch.setenv("KERNEL_USERNAME", KERNEL_USER)
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    monkeypatch.delenv("KERNEL_LAUNCH_TIMEOUT", raising=False)


async def test_kernelspecs_come_from_enterprise_gateway(himalia_server, gateway):
    async with himalia_server(config=gateway_config(gateway.url)) as server:
        specs = await (await server.get("/api/kernelspecs")).json()
        assert specs["default"] == "python3"
        assert sorted(specs["kernelspecs"]) == ["python3", "python_remote"]
        remote = specs["kernelspecs"]["python_remote"]["spec"]
        assert remote["metadata"]["process_proxy"]["class_name"].endswith("DistributedProcessProxy")
        logo = specs["kernelspecs"]["python3"]["resources"]["logo-64x64"]
        r = await server.get(logo)
        assert r.status == 200 and (await r.read()).startswith(b"\x89PNG")
        r = await server.get("/api/kernelspecs/nope")
        assert r.status == 404 and "installed: python3, python_remote" in (await r.json())["message"]


@pytest.mark.parametrize("protocol", [V1, "legacy"])
async def test_a_remotely_launched_kernel_runs_code(himalia_server, gateway, protocol):
    """EG's remote launch protocol (the launcher calls EG back with the kernel's ports), as on
    Kubernetes or YARN, here on 127.0.0.1: start, execute, interrupt, restart, shut down."""
    async with himalia_server(config=gateway_config(gateway.url)) as server:
        r = await server.post("/api/kernels", json={"name": "python_remote"})
        assert r.status == 201, await r.text()
        kid = (await r.json())["id"]
        protocols = (V1,) if protocol == V1 else ()
        async with server.ws_connect(f"/api/kernels/{kid}/channels", protocols=protocols) as ws:
            out, reply = await ws_execute(ws, "import os; print(os.getpid(), os.environ['KERNEL_USERNAME'])")
            assert reply["status"] == "ok"
            pid, user = out.split()
            assert user == KERNEL_USER
            assert (await server.post(f"/api/kernels/{kid}/interrupt")).status == 204
            r = await server.post(f"/api/kernels/{kid}/restart")
            assert r.status == 200, await r.text()
            out, reply = await ws_execute(ws, "import os; print(os.getpid())")
            assert reply["status"] == "ok" and out.split() != [pid]
        assert (await server.delete(f"/api/kernels/{kid}")).status == 204
        assert (await gateway.aapi("GET", f"/api/kernels/{kid}"))[0] == 404


# --- KERNEL_USERNAME ----------------------------------------------------------------------------


async def test_kernel_username_defaults_to_the_hub_user(gateway, monkeypatch):
    monkeypatch.delenv("KERNEL_USERNAME")
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")  # as JupyterHub starts a single-user server
    async with gateway_manager(gateway.url) as manager:
        kid = (await manager.start_kernel("python3"))["id"]
        channels = await manager.open_channels(kid)
        try:
            out, reply = await run_code(channels, "import os; print(os.environ['KERNEL_USERNAME'])")
            assert reply["status"] == "ok" and out == "alice\n"
        finally:
            await channels.close()


async def test_kernel_username_defaults_to_the_servers_user(gateway, monkeypatch):
    import getpass

    monkeypatch.delenv("KERNEL_USERNAME")
    async with gateway_manager(gateway.url) as manager:
        assert manager.kernel_env(None, None)["KERNEL_USERNAME"] == getpass.getuser()
        if getpass.getuser() == "root":  # EG refuses root by default: the client is told why
            with pytest.raises(ApiError) as e:
                await manager.start_kernel("python3")
            assert e.value.status == 403 and "User 'root' is not authorized" in e.value.message
            assert "KERNEL_USERNAME" in e.value.message
        else:
            kid = (await manager.start_kernel("python3"))["id"]
            await manager.shutdown_kernel(kid)
    assert (await gateway.aapi("GET", "/api/kernels"))[1] == []


async def test_a_request_kernel_username_wins(gateway, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    async with gateway_manager(gateway.url) as manager:
        assert manager.kernel_env(None, {"KERNEL_USERNAME": "bob"})["KERNEL_USERNAME"] == "bob"
        assert manager.kernel_env(None, None)["KERNEL_USERNAME"] == KERNEL_USER  # the server's env next


# --- launch timeouts ----------------------------------------------------------------------------


async def test_a_slow_launch_within_the_launch_timeout_starts(himalia_server, gateway):
    """EG holds POST /api/kernels until the launcher calls back, up to KERNEL_LAUNCH_TIMEOUT: our
    request must wait at least that long, whatever request_timeout says."""
    config = gateway_config(gateway.url, request_timeout=1.0, launch_timeout=20.0)
    async with himalia_server(config=config) as server:
        r = await server.post("/api/kernels", json={"name": "python_remote", "env": {"KERNEL_LAUNCH_DELAY": "3"}})
        assert r.status == 201, await r.text()  # a 504 after 1 s before the fix
        kid = (await r.json())["id"]
        async with server.ws_connect(f"/api/kernels/{kid}/channels", protocols=(V1,)) as ws:
            out, reply = await ws_execute(ws, "import os; print(os.environ['KERNEL_LAUNCH_TIMEOUT'])")
            assert reply["status"] == "ok" and out == "20\n"  # what EG was told is what we waited for
        assert (await server.delete(f"/api/kernels/{kid}")).status == 204


async def test_a_launch_past_the_launch_timeout_fails_clearly(himalia_server, gateway):
    config = gateway_config(gateway.url, launch_timeout=3.0)
    async with himalia_server(config=config) as server:
        r = await server.post("/api/kernels", json={"name": "python_remote", "env": {"KERNEL_LAUNCH_DELAY": "30"}})
        body = await r.json()
        assert r.status == 502, body  # EG's own verdict, passed on; not our 504
        assert "Waited too long (3.0s)" in body["message"] and body["reason"] == "gateway error"
        assert await (await server.get("/api/kernels")).json() == []


async def test_the_environments_kernel_launch_timeout_is_the_one_we_wait_for(gateway, monkeypatch):
    monkeypatch.setenv("KERNEL_LAUNCH_TIMEOUT", "25")  # as EG's docs tell operators to set it
    async with gateway_manager(gateway.url, request_timeout=1.0) as manager:
        kid = (await manager.start_kernel("python_remote", env={"KERNEL_LAUNCH_DELAY": "3"}))["id"]  # 504 before
        # EG's own shutdown of the kernel can take longer than this manager's 1 s request timeout
        await gateway.aapi("DELETE", f"/api/kernels/{kid}")
        assert manager.config.launch_timeout == 25.0 and manager.config.start_timeout == 27.0
        env = manager.kernel_env(None, {"KERNEL_LAUNCH_TIMEOUT": "9999"})
        assert env["KERNEL_LAUNCH_TIMEOUT"] == "25"  # never one we would not wait for


# --- the gateway restarted under a running kernel -----------------------------------------------


async def test_a_gateway_restart_ends_its_kernels_clearly(himalia_server, gateway, eg_env):
    """EG shuts its kernels down when it stops: after a restart the kernel is gone, and the client is
    told so (a `dead` status, reason "gone from the gateway", then 404), not left hanging."""
    config = gateway_config(gateway.url, retry_interval=0.1, retry_interval_max=0.5, retry_max=200)
    async with himalia_server(config=config) as server:
        kid = (await (await server.post("/api/kernels", json={})).json())["id"]
        async with server.ws_connect(f"/api/kernels/{kid}/channels", protocols=(V1,)) as ws:
            assert (await ws_execute(ws, "print('before')"))[0] == "before\n"
            await asyncio.to_thread(restart, gateway, eg_env)
            async with asyncio.timeout(WAIT):
                while True:
                    frame = await ws.receive()
                    assert frame.type == aiohttp.WSMsgType.BINARY, frame
                    msg = decode_v1(frame.data)
                    if msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "dead":
                        break
            assert msg["content"]["reason"] == "gone from the gateway"
        assert (await server.get(f"/api/kernels/{kid}")).status == 404
        r = await server.post("/api/kernels", json={})  # the restarted gateway serves new kernels
        assert r.status == 201, await r.text()
        assert (await server.delete(f"/api/kernels/{(await r.json())['id']}")).status == 204


async def test_a_crashed_gateway_with_persistent_sessions_comes_back_under_the_same_websocket(
        himalia_server, gateway, eg_env):
    """EG with kernel session persistence (availability_mode=standalone), killed (SIGKILL: its kernels
    live on) and started again, takes its kernels back: the kernel model answers again, and the client's
    websocket, reconnected upstream by Himalia, runs code in the same kernel with its state intact."""
    config = gateway_config(gateway.url, retry_interval=0.1, retry_interval_max=0.5, retry_max=200)
    async with himalia_server(config=config) as server:
        kid = (await (await server.post("/api/kernels", json={"name": "python_remote"})).json())["id"]
        pid = None
        try:
            async with server.ws_connect(f"/api/kernels/{kid}/channels", protocols=(V1,)) as ws:
                out, reply = await ws_execute(ws, "import os; x = 41; print(os.getpid())")
                pid = int(out)
                await asyncio.to_thread(restart, gateway, eg_env, kill=True)
                assert (await server.get(f"/api/kernels/{kid}")).status == 200
                out, reply = await ws_execute(ws, "print(x + 1, os.getpid())")
                assert reply["status"] == "ok" and out.split() == ["42", str(pid)]
            assert (await server.delete(f"/api/kernels/{kid}")).status == 204
        finally:
            if pid is not None:
                kill_if_alive(pid)  # if the gateway did not take it back, nobody else will end it


def restart(gw: Gateway, eg_env: Path, *, kill: bool = False) -> None:
    """Stop the module's gateway (SIGTERM; SIGKILL as a crash with `kill`) and start it again on the
    same port and state directory."""
    if kill:
        gw.process.kill()
        gw.process.wait(WAIT)
    stop_process(gw.process)
    gw.process = start_enterprise_gateway(gw.log.parent, eg_env, *PERSISTENT, port=gw.port).process


def kill_if_alive(pid: int) -> None:
    import signal

    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except ProcessLookupError:
        pass


# --- a real jupyter_server, whose gateway is Himalia, whose gateway is Enterprise Gateway -------


async def test_jupyter_server_through_himalia_over_enterprise_gateway(himalia_server, gateway, tmp_path):
    config = {"plugins": {"auth": {"token": HIMALIA_TOKEN}, **gateway_config(gateway.url)["plugins"]}}
    async with himalia_server(config=config) as himalia:
        await jupyter_server_runs_kernels_through(himalia, tmp_path)
