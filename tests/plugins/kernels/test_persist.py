"""Keep mode (`[plugins.kernels] persist = true`): kernels outlive a real `himalia serve` process, stopped
with SIGTERM or killed with SIGKILL, and the next server on the same state dir adopts them, with their
sessions; and without keep mode, the processes a killed server left behind are stopped at the next start.

Kernels here outlive their server by design: every test ends them itself (DELETE through the API, and
by their marker if a test fails half way), and conftest checks that no process of the test is left."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from kernel_ws import V1, KernelWS

from himalia.testing import ApiClient, serve_process, write_keep_config

pytestmark = pytest.mark.timeout(240)

MARKER = "HIMALIA_TEST_PROCESS_MARK"
"""Set by conftest's autouse fixture for each test (not imported: another directory's conftest may hold
that module name in a run of several directories)."""


def marked_processes(mark: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(MARKER) == mark:
                found.append(proc)
        except psutil.Error:
            continue
    return found

TOKEN = "persist-test-token"
TIMEOUT = 60


class Server(ApiClient):
    def __init__(self, proc: Any):
        super().__init__(proc.url, TOKEN, TIMEOUT)
        self.proc = proc

    @asynccontextmanager
    async def ws(self, kernel_id: str, session_id: str | None = None) -> AsyncIterator[KernelWS]:
        session_id = session_id or uuid.uuid4().hex
        ws = await asyncio.wait_for(self.http.ws_connect(
            f"api/kernels/{kernel_id}/channels?session_id={session_id}", protocols=(V1,)), TIMEOUT)
        try:
            yield KernelWS(ws, V1, session_id)
        finally:
            await asyncio.wait_for(ws.close(), 10)


def write_config(tmp_path: Path, *, persist: bool) -> Path:
    return write_keep_config(tmp_path, TOKEN, persist=persist)


@contextmanager
def serving(config: Path, tmp_path: Path):
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    env.pop("JUPYTER_TOKEN", None)
    with serve_process("--config", str(config), env=env, timeout=TIMEOUT) as proc:
        yield proc


@asynccontextmanager
async def server(config: Path, tmp_path: Path) -> AsyncIterator[Server]:
    with serving(config, tmp_path) as proc:
        s = Server(proc)
        try:
            yield s
        finally:
            await s.close()


def end(proc: Any, sig: int) -> None:
    proc.process.send_signal(sig)
    proc.process.wait(TIMEOUT)


def record(tmp_path: Path, kernel_id: str) -> dict[str, Any]:
    return json.loads((tmp_path / "state" / "kernels" / f"{kernel_id}.json").read_text())


def kernel_marked(kernel_id: str) -> list[psutil.Process]:
    """Live processes carrying the kernel's own marker (the kernel and its children)."""
    found = []
    for p in marked_processes(os.environ[MARKER]):
        try:
            if p.environ().get("HIMALIA_KERNEL_ID") == kernel_id and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            continue
    return found


@pytest.fixture
def kill_leftovers():
    """Whatever a failing test leaves (kept kernels are meant to outlive their server) is killed."""
    yield
    for p in marked_processes(os.environ[MARKER]):
        try:
            p.kill()
        except psutil.Error:
            pass


async def new_session(s: Server) -> tuple[str, str]:
    status, model = await s.call("POST", "api/sessions", json={
        "path": "a.ipynb", "type": "notebook", "name": "a.ipynb", "kernel": {"name": "python3"}})
    assert status == 201, model
    return model["id"], model["kernel"]["id"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_kept_kernel_survives_a_server_restart(tmp_path, kill_leftovers, sig):
    config = write_config(tmp_path, persist=True)
    async with server(config, tmp_path) as s:
        session_id, kernel_id = await new_session(s)
        rec = record(tmp_path, kernel_id)
        assert rec["state"] == "running" and rec["keep"] is True
        assert (tmp_path / "state" / "kernels" / f"{kernel_id}.json").stat().st_mode & 0o777 == 0o600
        async with s.ws(kernel_id) as ws:
            reply = (await ws.execute("x = 41; print('before', flush=True)")).reply
            assert reply["content"]["status"] == "ok"
            next_seq = (await s.call("GET", f"api/kernels/{kernel_id}/outputs"))[1]["next_seq"]
            end(s.proc, sig)
            if sig == signal.SIGTERM:  # a service restart: the client is told to come back
                async with asyncio.timeout(TIMEOUT):  # output still in flight may come first
                    while (frame := await ws.ws.receive()).type not in (aiohttp.WSMsgType.CLOSE,
                                                                       aiohttp.WSMsgType.CLOSED):
                        assert frame.type == aiohttp.WSMsgType.BINARY, frame
                assert ws.ws.close_code == 1012
    kernel = psutil.Process(rec["pid"])
    assert kernel.is_running() and kernel.status() != psutil.STATUS_ZOMBIE, "the kept kernel was stopped"

    async with server(config, tmp_path) as s:
        status, sessions = await s.call("GET", "api/sessions")
        assert status == 200
        assert [(m["id"], m["kernel"]["id"]) for m in sessions] == [(session_id, kernel_id)]
        status, model = await s.call("GET", f"api/kernels/{kernel_id}")
        assert status == 200 and model["execution_state"] in ("idle", "busy", "starting"), model
        async with s.ws(kernel_id) as ws:
            result = await ws.execute("print(x + 1)")
            assert result.stdout == "42\n"
        assert record(tmp_path, kernel_id)["pid"] == rec["pid"]
        status, outputs = await s.call("GET", f"api/kernels/{kernel_id}/outputs")
        if sig == signal.SIGTERM:  # the output log's numbers go on after a gap marker
            marker = outputs["messages"][0]
            # (output logged between the read of next_seq and the stop, such as the idle status, moves it on)
            assert marker["seq"] >= next_seq and "server restarted" in marker["content"]["text"]
            assert [m["seq"] for m in outputs["messages"]] == sorted({m["seq"] for m in outputs["messages"]})
        assert "42\n" in [m["content"].get("text") for m in outputs["messages"]]
        # an adopted kernel restarts, as one the server started would
        status, body = await s.call("POST", f"api/kernels/{kernel_id}/restart")
        assert status == 200, (body, s.proc.output[-30:])
        assert record(tmp_path, kernel_id)["pid"] != rec["pid"]
        assert not kernel.is_running() or kernel.status() == psutil.STATUS_ZOMBIE
        status, _ = await s.call("DELETE", f"api/sessions/{session_id}")
        assert status == 204
        assert not kernel_marked(kernel_id)
        assert not (tmp_path / "state" / "kernels" / f"{kernel_id}.json").exists()
    # the kernel's output while it was kept went to its log, which the shutdown removed with the record
    assert not (tmp_path / "state" / "kernels" / f"{kernel_id}.log").exists()


async def test_kernel_that_died_while_the_server_was_down_is_cleaned_up(tmp_path, kill_leftovers):
    config = write_config(tmp_path, persist=True)
    async with server(config, tmp_path) as s:
        _, kernel_id = await new_session(s)
        async with s.ws(kernel_id) as ws:  # a child of the kernel, in its process group
            await ws.send("shell", "execute_request", {"code": "import subprocess; p = subprocess.Popen(['sleep', '999'])",
                                                     "silent": False, "store_history": True, "user_expressions": {},
                                                     "allow_stdin": False, "stop_on_error": True})
            await ws.wait_for(lambda m: m["header"]["msg_type"] == "execute_reply")
        rec = record(tmp_path, kernel_id)
        end(s.proc, signal.SIGTERM)
    os.kill(rec["pid"], signal.SIGKILL)  # the kernel dies while no server runs; its child lives on
    psutil.Process(rec["pid"]).wait(TIMEOUT) if psutil.pid_exists(rec["pid"]) else None
    assert [p.name() for p in kernel_marked(kernel_id)] == ["sleep"]

    async with server(config, tmp_path) as s:
        status, sessions = await s.call("GET", "api/sessions")
        assert status == 200 and sessions == []
        status, _ = await s.call("GET", f"api/kernels/{kernel_id}")
        assert status == 404
        assert not kernel_marked(kernel_id), "the dead kernel's child was left running"
        assert not (tmp_path / "state" / "kernels" / f"{kernel_id}.json").exists()
        assert any("died while the server was down" in line for line in s.proc.output)


async def test_without_keep_mode_a_killed_servers_kernels_are_stopped_at_the_next_start(tmp_path, kill_leftovers):
    config = write_config(tmp_path, persist=False)
    async with server(config, tmp_path) as s:
        _, kernel_id = await new_session(s)
        async with s.ws(kernel_id) as ws:
            await ws.send("shell", "execute_request", {"code": "!sleep 999", "silent": False, "store_history": True,
                                                     "user_expressions": {}, "allow_stdin": False,
                                                     "stop_on_error": True})
            async with asyncio.timeout(TIMEOUT):  # the shell child is running once its busy status came
                await ws.wait_for(lambda m: m["header"]["msg_type"] == "execute_input")
                while not any(p.name() == "sleep" for p in kernel_marked(kernel_id)):
                    await asyncio.sleep(0.05)
            end(s.proc, signal.SIGKILL)
    assert kernel_marked(kernel_id), "the killed server's kernel left nothing behind: the test shows nothing"

    async with server(config, tmp_path) as s:
        assert not kernel_marked(kernel_id), "processes of the killed server's kernel were left running"
        status, sessions = await s.call("GET", "api/sessions")
        assert sessions == []
        assert not list((tmp_path / "state" / "kernels").glob("*.json"))


async def test_without_keep_mode_kernels_stop_with_the_server(tmp_path, kill_leftovers):
    config = write_config(tmp_path, persist=False)
    async with server(config, tmp_path) as s:
        _, kernel_id = await new_session(s)
        assert record(tmp_path, kernel_id)["keep"] is False
        end(s.proc, signal.SIGTERM)
    assert not kernel_marked(kernel_id)
    assert not list((tmp_path / "state" / "kernels").glob("*.json"))


async def test_a_second_server_on_the_same_state_dir_refuses_in_keep_mode(tmp_path, kill_leftovers):
    config = write_config(tmp_path, persist=True)
    with serving(config, tmp_path):
        with pytest.raises(RuntimeError, match=r"state dir .*state is in use by another server \(pid \d+\)"):
            with serving(config, tmp_path):
                pass


async def test_without_keep_mode_a_second_server_runs_without_records_and_touches_no_kernel(tmp_path, kill_leftovers):
    config = write_config(tmp_path, persist=False)
    async with server(config, tmp_path) as first:
        _, kernel_id = await new_session(first)
        async with server(config, tmp_path) as second:
            assert any("keeps no kernel records" in line for line in second.proc.output)
            status, _ = await second.call("POST", "api/kernels", json={"name": "python3"})
            assert status == 201
            assert len(list((tmp_path / "state" / "kernels").glob("*.json"))) == 1
        assert kernel_marked(kernel_id), "the second server stopped the first one's kernel"


@pytest.mark.parametrize("persist", [True, False], ids=["keep", "off"])
async def test_a_recycled_pid_is_never_signalled(tmp_path, kill_leftovers, persist):
    """A record whose pid now names an unrelated process (not the kernel's start time, no marker)."""
    config = write_config(tmp_path, persist=persist)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(999)"], start_new_session=True)
    try:
        from himalia.serverinfo import start_time

        kernels = tmp_path / "state" / "kernels"
        kernels.mkdir(parents=True)
        kernel_id = str(uuid.uuid4())
        base = {"version": 1, "id": kernel_id, "name": "python3", "state": "running", "keep": True, "cwd": "/",
                "env": {}, "started": 0, "pid": stranger.pid, "pgid": os.getpgid(stranger.pid),
                "connection_info": {"transport": "tcp", "ip": "127.0.0.1", "shell_port": 1, "iopub_port": 2,
                                    "stdin_port": 3, "control_port": 4, "hb_port": 5, "key": "k",
                                    "signature_scheme": "hmac-sha256"}}
        # the same start time but no marker, and another kernel's with the wrong start time
        (kernels / f"{kernel_id}.json").write_text(json.dumps({**base, "process_started": start_time(stranger.pid)}))
        other = str(uuid.uuid4())
        (kernels / f"{other}.json").write_text(json.dumps({**base, "id": other, "process_started": 1}))
        async with server(config, tmp_path) as s:
            status, kernels_now = await s.call("GET", "api/kernels")
            assert kernels_now == []
            assert stranger.poll() is None, "an unrelated process was signalled"
            assert not list(kernels.glob("*.json"))
    finally:
        stranger.kill()
        stranger.wait()


def himalia_cli(config: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    return subprocess.run([sys.executable, "-m", "himalia.cli", "kernels", *args, "--config", str(config)],
                          capture_output=True, text=True, env=env, timeout=TIMEOUT)


async def test_himalia_kernels_list_and_stop_work_from_the_records(tmp_path, kill_leftovers):
    config = write_config(tmp_path, persist=True)
    async with server(config, tmp_path) as s:
        _, kernel_id = await new_session(s)
        listed = himalia_cli(config, tmp_path, "list", "--json")
        assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [kernel_id]
        refused = himalia_cli(config, tmp_path, "stop", "--all")
        assert refused.returncode == 1 and "in use by another server" in refused.stderr
        assert kernel_marked(kernel_id)
        end(s.proc, signal.SIGTERM)
    listed = himalia_cli(config, tmp_path, "list", "--json")
    assert [(json.loads(line)["id"], json.loads(line)["running"]) for line in listed.stdout.splitlines()] \
        == [(kernel_id, True)]
    [line] = himalia_cli(config, tmp_path, "list").stdout.splitlines()
    assert line.startswith(f"{kernel_id}  python3  running  pid ")  # WHERE: the pid; then the cwd
    stopped = himalia_cli(config, tmp_path, "stop", kernel_id[:8])
    assert stopped.returncode == 0, stopped.stderr
    assert not kernel_marked(kernel_id)
    assert himalia_cli(config, tmp_path, "list", "--json").stdout == ""
    async with server(config, tmp_path) as s:
        assert (await s.call("GET", "api/sessions"))[1] == []
