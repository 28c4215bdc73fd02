"""The warm kernel pool ([plugins.local] pool), end to end: real ipykernel members, real HTTP and
kernel websockets, real directories and modules next to the notebook."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from kernel_ws import connect

from himalia import SERVICES
from himalia_local.pool import pool_key_env, unrelocatable

from .conftest import marked_processes, running

TIMEOUT = 60.0
POOL = {"plugins": {"local": {"pool": {"python3": 1}, "pool_fill_delay": 0}}}


def pool_config(size: int = 1) -> dict:
    return {"plugins": {"local": {"pool": {"python3": size}, "pool_fill_delay": 0}}}


def provider(server):
    return server.app[SERVICES].kernel_provider


async def full(server) -> list[str]:
    """Wait for the pool to be full; the ids of its idle members."""
    pool = provider(server).pool
    await asyncio.wait_for(pool.wait_full(), TIMEOUT)
    return [m.id for m in pool.members()]


async def stats(server) -> dict:
    r = await server.get("/api/status")
    assert r.status == 200
    return (await r.json())["kernel_pool"]["python3"]


@pytest.fixture
def notebook_dir(tmp_path):
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "localmod.py").write_text("ANSWER = 42\n")
    return root / "dir"


async def create_session(server, path: str) -> dict:
    r = await server.post("/api/sessions", json={"path": path, "type": "notebook", "name": Path(path).name,
                                                 "kernel": {"name": "python3"}})
    assert r.status == 201, await r.text()
    return await r.json()


PROBE = ("import os, sys, localmod; print(json.dumps([os.getcwd(), __session__, os.environ.get('JPY_SESSION_NAME'),"
         " localmod.ANSWER]))")


async def probe(server, kernel_id: str) -> tuple[list, int]:
    """What the kernel says about itself, and the execution count of that first execute."""
    async with connect(server, kernel_id) as ws:
        run = await ws.execute("import json\n" + PROBE)
    assert run.reply["content"]["status"] == "ok", run.reply["content"]
    return json.loads(run.stdout), run.reply["content"]["execution_count"]


async def test_a_pool_hit_runs_in_the_notebooks_directory_and_restarts_there(himalia_server, notebook_dir):
    async with himalia_server(config=POOL) as server:
        members = await full(server)
        session = await create_session(server, "dir/n.ipynb")
        kernel_id = session["kernel"]["id"]
        assert kernel_id in members  # a hit: the idle member, not a new kernel
        assert (await stats(server))["hits"] == 1

        facts, count = await probe(server, kernel_id)
        assert facts == [str(notebook_dir), "dir/n.ipynb", "dir/n.ipynb", 42]
        assert count == 1  # the relocation left no trace in the history
        km = provider(server)._kernels[kernel_id].km
        info = json.loads(Path(km.connection_file).read_text())
        assert info["jupyter_session"] == "dir/n.ipynb"

        r = await server.post(f"/api/kernels/{kernel_id}/restart")
        assert r.status == 200, await r.text()
        facts, count = await probe(server, kernel_id)
        assert facts == [str(notebook_dir), "dir/n.ipynb", "dir/n.ipynb", 42]
        assert count == 1

        # the pool refills, with another kernel, which stays invisible
        refilled = await full(server)
        assert refilled and kernel_id not in refilled
        r = await server.get("/api/kernels")
        assert [k["id"] for k in await r.json()] == [kernel_id]


async def test_members_are_invisible_and_stopped_at_shutdown(himalia_server, no_orphans):
    async with himalia_server(config=pool_config(2)) as server:
        members = provider(server).pool.members
        await full(server)
        pids = [m.km.provisioner.pid for m in members()]
        assert len(pids) == 2 and all(running(p) for p in pids)
        r = await server.get("/api/kernels")
        assert await r.json() == []
        r = await server.get("/api/sessions")
        assert await r.json() == []
        assert (await stats(server)) == {"size": 2, "idle": 2, "hits": 0, "misses": 0, "discarded": 0,
                                         "failed_starts": 0}
    assert not [p for p in pids if running(p)]
    assert not marked_processes(no_orphans)


async def test_two_concurrent_hits_get_two_kernels_each_in_its_directory(himalia_server, tmp_path):
    for d in ("a", "b"):
        (tmp_path / "root" / d).mkdir(parents=True)
        (tmp_path / "root" / d / "localmod.py").write_text(f"ANSWER = {d!r}\n")
    async with himalia_server(config=pool_config(2)) as server:
        members = await full(server)
        a, b = await asyncio.gather(create_session(server, "a/x.ipynb"), create_session(server, "b/y.ipynb"))
        assert a["kernel"]["id"] != b["kernel"]["id"]
        assert {a["kernel"]["id"], b["kernel"]["id"]} == set(members)
        for session, d in ((a, "a"), (b, "b")):
            facts, count = await probe(server, session["kernel"]["id"])
            assert facts == [str(tmp_path / "root" / d), session["path"], session["path"], d]
            assert count == 1


async def test_a_burst_larger_than_the_pool_falls_back_to_normal_starts(himalia_server, notebook_dir):
    async with himalia_server(config=POOL) as server:
        await full(server)
        sessions = await asyncio.gather(*(create_session(server, f"dir/n{i}.ipynb") for i in range(3)))
        assert len({s["kernel"]["id"] for s in sessions}) == 3
        st = await stats(server)
        assert (st["hits"], st["misses"]) == (1, 2)
        for s in sessions:
            facts, count = await probe(server, s["kernel"]["id"])
            assert facts[0] == str(notebook_dir) and facts[1] == s["path"] and count == 1


async def test_a_member_killed_while_idle_is_replaced_and_the_next_start_succeeds(himalia_server, notebook_dir):
    async with himalia_server(config=POOL) as server:
        pool = provider(server).pool
        [doomed] = await full(server)
        os.kill(pool.members()[0].km.provisioner.pid, signal.SIGKILL)
        await asyncio.wait_for(pool.wait_until(lambda st: st["python3"]["discarded"] == 1
                                               and st["python3"]["idle"] == 1), TIMEOUT)
        [replacement] = await full(server)
        assert replacement != doomed
        session = await create_session(server, "dir/n.ipynb")
        assert session["kernel"]["id"] == replacement
        facts, _ = await probe(server, replacement)
        assert facts[0] == str(notebook_dir)


async def test_a_member_that_does_not_move_is_discarded_and_a_kernel_started_instead(himalia_server,
                                                                                   notebook_dir):
    async with himalia_server(config=POOL) as server:
        pool = provider(server).pool
        [stuck] = await full(server)
        member = pool.members()[0]
        # break the member from the inside, through jupyter_client's own client: chdir does nothing
        kc = member.km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=TIMEOUT)
            reply = await kc.execute_interactive("import os; os.chdir = lambda path: None", timeout=TIMEOUT)
            assert reply["content"]["status"] == "ok"
        finally:
            kc.stop_channels()
        pid = member.km.provisioner.pid

        session = await create_session(server, "dir/n.ipynb")
        kernel_id = session["kernel"]["id"]
        assert kernel_id != stuck
        facts, count = await probe(server, kernel_id)
        assert facts == [str(notebook_dir), "dir/n.ipynb", "dir/n.ipynb", 42] and count == 1
        st = await stats(server)
        assert (st["hits"], st["misses"], st["discarded"]) == (0, 1, 1)
        await asyncio.wait_for(asyncio.to_thread(_wait_gone, pid), TIMEOUT)


def _wait_gone(pid: int) -> None:
    import psutil

    try:
        psutil.Process(pid).wait(TIMEOUT)
    except psutil.NoSuchProcess:
        pass


async def test_request_env_is_patched_in_but_start_only_variables_are_never(himalia_server, notebook_dir, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "libmod.py").write_text("WHERE = 'lib'\n")
    async with himalia_server(config=POOL) as server:
        members = await full(server)
        r = await server.post("/api/kernels", json={"name": "python3", "path": "dir", "env": {"MY_FLAG": "on"}})
        assert r.status == 201, await r.text()
        hit = (await r.json())["id"]
        assert hit in members
        async with connect(server, hit) as ws:
            run = await ws.execute("import os; print(os.environ['MY_FLAG'], os.getcwd())")
        assert run.stdout.split() == ["on", str(notebook_dir)]

        await full(server)
        r = await server.post("/api/kernels", json={"name": "python3", "path": "dir", "env": {"PYTHONPATH": str(lib)}})
        assert r.status == 201, await r.text()
        cold = (await r.json())["id"]
        assert cold not in provider(server).pool.members() and cold != hit
        async with connect(server, cold) as ws:
            run = await ws.execute("import libmod, os; print(libmod.WHERE, os.getcwd())")
        assert run.stdout.split() == ["lib", str(notebook_dir)]
        st = await stats(server)
        assert (st["hits"], st["misses"]) == (1, 1)


async def test_a_variable_the_kernelspec_sets_is_never_patched_over(himalia_server, tmp_path, monkeypatch):
    data = tmp_path / "data"
    spec = data / "kernels" / "withenv"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "With env", "language": "python", "env": {"SPEC_VAR": "from-spec"}}))
    monkeypatch.setenv("JUPYTER_PATH", str(data))
    config = {"plugins": {"local": {"pool": {"withenv": 1}, "pool_fill_delay": 0}}}
    async with himalia_server(config=config) as server:
        pool = provider(server).pool
        await asyncio.wait_for(pool.wait_full(), TIMEOUT)
        member = pool.members()[0].id
        r = await server.post("/api/kernels", json={"name": "withenv", "env": {"SPEC_VAR": "from-request"}})
        assert r.status == 201, await r.text()
        kernel_id = (await r.json())["id"]
        assert kernel_id != member  # a cold start: jupyter_client lays the spec's env over the request's
        async with connect(server, kernel_id) as ws:
            run = await ws.execute("import os; print(os.environ['SPEC_VAR'])")
        assert run.stdout == "from-spec\n"
        assert (pool.status()["withenv"]["hits"], pool.status()["withenv"]["misses"]) == (0, 1)


async def test_a_kernelspec_that_cannot_be_relocated_is_not_pooled(himalia_server, tmp_path, monkeypatch):
    data = tmp_path / "data"
    spec = data / "kernels" / "notpython"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Not Python", "language": "julia"}))
    monkeypatch.setenv("JUPYTER_PATH", str(data))
    config = {"plugins": {"local": {"pool": {"notpython": 1}, "pool_fill_delay": 0}}}
    async with himalia_server(config=config) as server:
        pool = provider(server).pool
        await asyncio.wait_for(pool.wait_until(lambda st: "not_pooled" in st["notpython"]), TIMEOUT)
        assert "only ipykernel" in pool.status()["notpython"]["not_pooled"]
        assert pool.members() == []
        r = await server.post("/api/kernels", json={"name": "notpython"})
        assert r.status == 201  # started the normal way
        assert pool.status()["notpython"]["hits"] == 0


def test_relocation_rules():
    ipykernel = {"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "language": "python"}
    assert unrelocatable(ipykernel) is None
    assert "only ipykernel" in unrelocatable({**ipykernel, "language": "R"})
    assert "argv" in unrelocatable({**ipykernel, "argv": ["python", "-m", "other_kernel"]})
    assert "provisioner" in unrelocatable({**ipykernel, "metadata": {"kernel_provisioner": {
        "provisioner_name": "docker-provisioner"}}})
    assert "relocate = false" in unrelocatable({**ipykernel, "metadata": {"himalia": {"relocate": False}}})
    assert "${...}" in unrelocatable({**ipykernel, "env": {"DATA": "${HOME}/data"}})
    assert unrelocatable({**ipykernel, "env": {"OMP_NUM_THREADS": "1"}}) is None
    assert unrelocatable({"argv": ["xeus"], "language": "cpp",
                          "metadata": {"himalia": {"relocate": "ipykernel"}}}) is None
    assert pool_key_env({"JPY_SESSION_NAME": "a.ipynb", "MY_FLAG": "1"}) == ()
    assert pool_key_env({"OMP_NUM_THREADS": "1", "MPLBACKEND": "agg"}) != ()


def test_pool_is_off_by_default_and_sizes_are_checked():
    from himalia_local.config import LocalConfig

    assert LocalConfig().pool == {}
    with pytest.raises(ValueError, match="python3 = -1"):
        LocalConfig(pool={"python3": -1})


async def test_an_idle_members_record_goes_with_it(himalia_server, tmp_path):
    state = tmp_path / "state"
    config = {**pool_config(1), "server": {"state_dir": str(state)}}
    async with himalia_server(config=config) as server:
        members = await full(server)
        records = {p.stem: json.loads(p.read_text()) for p in (state / "kernels").glob("*.json")}
        assert list(records) == members  # recorded, so a kill of the server leaves nothing unfound
        assert records[members[0]]["pool_member"] is True and records[members[0]]["keep"] is False
    assert not list((state / "kernels").glob("*"))  # stopped at shutdown: record and log removed
