"""`/api/config/{section}` over real HTTP, on real files of the Jupyter config path (the tests' own
$JUPYTER_CONFIG_DIR), checked against jupyter_server's own ConfigManager reading the same files."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import aiohttp
import yarl


def user_file(section: str) -> Path:
    return Path(os.environ["JUPYTER_CONFIG_DIR"]) / "serverconfig" / f"{section}.json"


async def test_patch_merges_and_null_deletes(himalia_server):
    async with himalia_server() as server:
        r = await server.get("/api/config/notebook")
        assert r.status == 200 and await r.json() == {}
        r = await server.patch("/api/config/notebook", json={"a": {"b": 1, "c": 2}, "x": "kept"})
        assert r.status == 200 and await r.json() == {"a": {"b": 1, "c": 2}, "x": "kept"}
        r = await server.patch("/api/config/notebook", json={"a": {"b": None, "d": [1, 2]}, "y": True})
        assert await r.json() == {"a": {"c": 2, "d": [1, 2]}, "x": "kept", "y": True}
        r = await server.patch("/api/config/notebook", json={"a": {"c": None, "d": None}, "nothing": None})
        assert await r.json() == {"x": "kept", "y": True}  # an emptied table goes too
        assert await (await server.get("/api/config/notebook")).json() == {"x": "kept", "y": True}
        assert json.loads(user_file("notebook").read_text()) == {"x": "kept", "y": True}

        # jupyter_server reads what Himalia wrote
        from jupyter_server.services.config.manager import ConfigManager

        assert ConfigManager().get("notebook") == {"x": "kept", "y": True}


async def test_put_replaces_the_users_section(himalia_server):
    async with himalia_server() as server:
        await server.patch("/api/config/tree", json={"old": 1})
        r = await server.put("/api/config/tree", json={"new": {"k": "v"}})
        assert r.status == 204
        assert await (await server.get("/api/config/tree")).json() == {"new": {"k": "v"}}


async def test_sections_merge_over_the_config_path_as_jupyter_server_reads_them(himalia_server, tmp_path,
                                                                              monkeypatch):
    """$JUPYTER_CONFIG_PATH ranks above the user's directory on the Jupyter config path (jupyter_core),
    so an administrator's value there wins over a user's PATCH; `.d` files give defaults."""
    from jupyter_server.services.config.manager import ConfigManager

    admin = tmp_path / "admin"
    (admin / "serverconfig" / "lab.d").mkdir(parents=True)
    (admin / "serverconfig" / "lab.d" / "10-pkg.json").write_text('{"from_pkg": 1, "forced": "pkg"}')
    (admin / "serverconfig" / "lab.json").write_text('{"forced": "admin", "sys": {"a": 1}}')
    (admin / "serverconfig" / "broken.json").write_text("{not json")
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(admin))
    async with himalia_server() as server:
        assert await (await server.get("/api/config/lab")).json() == {"from_pkg": 1, "forced": "admin", "sys": {"a": 1}}
        r = await server.patch("/api/config/lab", json={"forced": "user", "sys": {"b": 3}, "mine": 1})
        merged = {"from_pkg": 1, "forced": "admin", "sys": {"a": 1, "b": 3}, "mine": 1}
        assert await r.json() == merged
        assert await (await server.get("/api/config/lab")).json() == merged == ConfigManager().get("lab")
        # only the user's file was written, with only the user's changes
        assert json.loads(user_file("lab").read_text()) == {"forced": "user", "sys": {"b": 3}, "mine": 1}
        assert json.loads((admin / "serverconfig" / "lab.json").read_text())["forced"] == "admin"
        # a broken file is skipped (logged), not a 500
        r = await server.get("/api/config/broken")
        assert r.status == 200 and await r.json() == {}


async def test_section_names_are_checked(himalia_server):
    async with himalia_server() as server:
        config_dir = Path(os.environ["JUPYTER_CONFIG_DIR"])
        for name in ("..", "a.b", "%2e%2e", "..%2F..%2Fescape", "a%2Fb", "a%00b", "x" * 300, "sp%20ace"):
            for method in ("GET", "PATCH", "PUT"):
                url = yarl.URL(server.url_for(f"/api/config/{name}"), encoded=True)
                async with server.client.request(method, url, json={"k": 1}) as r:
                    assert r.status == 400, (method, name, r.status)
                    # a NUL never reaches the plugin: the core refuses it where the URL enters
                    expected = "bad string" if "%00" in name else "bad section"
                    assert (await r.json())["reason"] == expected
        # nothing in the config or data dirs (the runtime dir holds the server's own state: its lock)
        written = [p for p in config_dir.parent.rglob("*") if p.is_file() and "runtime" not in p.parts]
        assert written == [], written


async def test_bodies_must_be_json_objects(himalia_server):
    async with himalia_server() as server:
        for body in (b"[1]", b"nope", b"", b'"s"'):
            for method in ("PATCH", "PUT"):
                r = await server.request(method, "/api/config/notebook", data=body)
                assert r.status == 400, (method, body)
        assert not user_file("notebook").exists()


async def test_concurrent_patches_lose_nothing(himalia_server):
    async with himalia_server() as server:
        results = await asyncio.gather(*(server.patch("/api/config/busy", json={f"k{i}": i}) for i in range(20)))
        assert all(r.status == 200 for r in results)
        assert await (await server.get("/api/config/busy")).json() == {f"k{i}": i for i in range(20)}


async def test_strangers_are_refused(himalia_server):
    async with himalia_server(config={"plugins": {"auth": {"token": "t"}}}) as server:
        async with aiohttp.ClientSession() as anonymous:
            for method in ("GET", "PATCH", "PUT"):
                async with anonymous.request(method, server.url_for("/api/config/notebook"), json={"a": 1}) as r:
                    assert r.status == 401
        assert not user_file("notebook").exists()
