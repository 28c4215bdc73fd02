"""The warm pool in keep mode (`[plugins.local] pool` with `[plugins.kernels] persist = true`), with real
`himalia serve` processes and real ipykernel kernels: idle members are recorded but never kept (stopped
at a graceful exit, and by the next server after a kill); a member handed out becomes a kept kernel
whose relocation (directory, session name, environment) survives the server's restart and a restart
of the kernel after it was adopted.

conftest's `no_orphans` fails a test that leaves any process of its kernels behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from kernel_ws import V1, KernelWS

from himalia.testing import ApiClient, serve_process, write_keep_config

from .conftest import marked_processes

pytestmark = pytest.mark.timeout(300)

TOKEN = "pool-keep-test-token"
TIMEOUT = 60.0
PROBE = ("import os, json, localmod; print(json.dumps([os.getcwd(), __session__, os.environ.get('JPY_SESSION_NAME'), "
         "localmod.ANSWER]))")


class Server(ApiClient):
    def __init__(self, proc: Any):
        super().__init__(proc.url, TOKEN, TIMEOUT)
        self.proc = proc

    async def execute(self, kernel_id: str, code: str) -> Any:
        session_id = uuid.uuid4().hex
        ws = await asyncio.wait_for(self.http.ws_connect(
            f"api/kernels/{kernel_id}/channels?session_id={session_id}", protocols=(V1,)), TIMEOUT)
        try:
            run = await KernelWS(ws, V1, session_id).execute(code)
        finally:
            await asyncio.wait_for(ws.close(), 10)
        assert run.reply["content"]["status"] == "ok", run.reply["content"]
        return run

    async def pool(self) -> dict[str, Any]:
        status, body = await self.call("GET", "api/status")
        assert status == 200, body
        return body["kernel_pool"]["python3"]

    async def pool_full(self) -> None:
        """Until the pool has its idle member (the server is another process: its status is asked)."""
        async with asyncio.timeout(TIMEOUT):
            while (await self.pool())["idle"] < 1:
                await asyncio.sleep(0.1)


@asynccontextmanager
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    config = write_keep_config(tmp_path, TOKEN, extra="[plugins.local]\npool = {python3 = 1}\npool_fill_delay = 0\n")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    env.pop("JUPYTER_TOKEN", None)
    with serve_process("--config", str(config), env=env, timeout=TIMEOUT) as proc:
        s = Server(proc)
        try:
            yield s
        finally:
            await s.close()


def records(tmp_path: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in (tmp_path / "state" / "kernels").glob("*.json"):
        record = json.loads(path.read_text())
        found[record["id"]] = record
    return found


def processes_of(kernel_id: str, mark: str) -> list[psutil.Process]:
    found = []
    for p in marked_processes(mark):
        try:
            if p.environ().get("HIMALIA_KERNEL_ID") == kernel_id and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            continue
    return found


def gone(procs: list[psutil.Process]) -> bool:
    _, alive = psutil.wait_procs(procs, timeout=TIMEOUT)
    return not [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_a_pool_hit_is_kept_with_its_relocation_and_idle_members_never_are(tmp_path, no_orphans, sig):
    notebook_dir = tmp_path / "root" / "dir"
    notebook_dir.mkdir(parents=True)
    (notebook_dir / "localmod.py").write_text("ANSWER = 42\n")
    expected = [str(notebook_dir), "dir/n.ipynb", "dir/n.ipynb", 42]

    async with server(tmp_path) as s:
        await s.pool_full()
        (member_id, member), = records(tmp_path).items()
        assert member["pool_member"] is True and member["keep"] is False
        status, session = await s.call("POST", "api/sessions", json={
            "path": "dir/n.ipynb", "type": "notebook", "name": "n.ipynb", "kernel": {"name": "python3"}})
        assert status == 201, session
        kernel_id = session["kernel"]["id"]
        assert kernel_id == member_id and (await s.pool())["hits"] == 1  # a hit: the member, kept now
        kept = records(tmp_path)[kernel_id]
        assert kept["keep"] is True and kept["pool_member"] is False and kept["cwd"] == str(notebook_dir)
        assert kept["env"]["JPY_SESSION_NAME"] == "dir/n.ipynb"
        await s.pool_full()  # a new idle member, which must not be kept
        new_member = next(k for k, r in records(tmp_path).items() if r["pool_member"])
        new_member_procs = processes_of(new_member, no_orphans)
        assert new_member_procs
        assert json.loads((await s.execute(kernel_id, "x = 41\n" + PROBE)).stdout) == expected
        s.proc.process.send_signal(sig)
        s.proc.process.wait(TIMEOUT)
    if sig == signal.SIGTERM:  # stopped with the server, record and all
        assert gone(new_member_procs)
        assert new_member not in records(tmp_path)
    assert processes_of(kernel_id, no_orphans), "the kept kernel was stopped"

    async with server(tmp_path) as s:
        assert gone(new_member_procs)  # after a kill, the next server stops the member it finds
        status, sessions = await s.call("GET", "api/sessions")
        assert status == 200 and [(m["id"], m["kernel"]["id"]) for m in sessions] == [(session["id"], kernel_id)]
        assert (await s.execute(kernel_id, "print(x + 1)")).stdout == "42\n"
        # the relocation survives the adoption: a restart comes back in the notebook's directory
        status, body = await s.call("POST", f"api/kernels/{kernel_id}/restart")
        assert status == 200, (body, s.proc.output[-30:])
        assert json.loads((await s.execute(kernel_id, PROBE)).stdout) == expected
        status, _ = await s.call("DELETE", f"api/sessions/{session['id']}")
        assert status == 204
        await s.pool_full()
    assert records(tmp_path) == {}  # the second server's idle member went with it
    assert gone(marked_processes(no_orphans))
