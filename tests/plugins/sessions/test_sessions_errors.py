"""Bad requests to /api/sessions get a JSON error with a 4xx status, before any kernel is involved;
the spec describes the routes; the database setting resolves against the config file."""

from __future__ import annotations

import json

import pytest

from himalia import SERVICES

BAD_BODIES = [
    ("nonsense", "malformed json", "not valid JSON"),
    ("[1, 2]", "malformed json", "must be a JSON object"),
    ("", "malformed json", "empty body"),
    (json.dumps({"type": "notebook", "kernel": {"name": "python3"}}), "missing field", "path"),
    (json.dumps({"path": "a.ipynb", "kernel": {"name": "python3"}}), "missing field", "type"),
    (json.dumps({"path": 5, "type": "notebook"}), "invalid field", "'path' must be a string"),
    (json.dumps({"path": None, "type": "notebook"}), "invalid field", "'path' must be a string"),
    (json.dumps({"path": "a.ipynb", "type": "notebook", "name": 3}), "invalid field", "'name'"),
    (json.dumps({"path": "a.ipynb", "type": "notebook", "kernel": "python3"}), "invalid field", "'kernel'"),
    (json.dumps({"path": "a.ipynb", "type": "notebook", "kernel": {"name": 3}}), "invalid field",
     "'kernel.name'"),
]


@pytest.mark.parametrize(("body", "reason", "message"), BAD_BODIES)
async def test_post_rejects_bad_bodies_with_400(himalia_server, body, reason, message):
    async with himalia_server() as server:
        r = await server.post("/api/sessions", data=body)
        assert r.status == 400
        error = await r.json()
        assert error["reason"] == reason
        assert message in error["message"]
        assert await server.app[SERVICES].session_store.list() == []


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_unknown_session_id_is_404_naming_it(himalia_server, method):
    async with himalia_server() as server:
        r = await server.request(method, "/api/sessions/0b5e11e2-dead-4bee-8f00-000000000000", json={})
        assert r.status == 404
        error = await r.json()
        assert error == {"message": "no session with id 0b5e11e2-dead-4bee-8f00-000000000000",
                         "reason": "no such session"}


async def test_patch_rejects_bad_bodies_before_looking_the_session_up(himalia_server):
    async with himalia_server() as server:
        r = await server.patch("/api/sessions/x", data="{")
        assert r.status == 400 and (await r.json())["reason"] == "malformed json"
        r = await server.patch("/api/sessions/x", json={"kernel": ["python3"]})
        assert r.status == 400 and "'kernel'" in (await r.json())["message"]


async def test_empty_list(himalia_server):
    async with himalia_server() as server:
        r = await server.get("/api/sessions")
        assert r.status == 200
        assert await r.json() == []


async def test_spec_describes_the_session_routes(himalia_server):
    async with himalia_server() as server:
        r = await server.get("/api/spec.yaml")
        spec = json.loads(await r.text())
        routes = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops if m != "parameters"}
        for route in server.app.router.routes():
            path = route.resource.canonical
            if path.startswith("/api/sessions"):
                assert (route.method, path) in routes
        assert {("GET", "/api/sessions"), ("POST", "/api/sessions"), ("GET", "/api/sessions/{session_id}"),
                ("PATCH", "/api/sessions/{session_id}"), ("DELETE", "/api/sessions/{session_id}")} <= routes
        session = spec["components"]["schemas"]["Session"]
        assert set(session["required"]) == {"id", "path", "name", "type", "kernel"}
        assert spec["paths"]["/api/sessions"]["post"]["responses"]["201"]["headers"]["Location"]


async def test_database_path_resolves_against_the_config_file(himalia_server, tmp_path):
    config_file = tmp_path / "etc" / "himalia.toml"
    async with himalia_server(config={"plugins": {"sessions": {"database": "state/sessions.db"}}},
                              config_path=config_file) as server:
        store = server.app[SERVICES].session_store
        assert store.database == str(tmp_path / "etc" / "state" / "sessions.db")
        assert (tmp_path / "etc" / "state" / "sessions.db").is_file()


async def test_default_database_is_in_memory(himalia_server, tmp_path):
    async with himalia_server() as server:
        assert server.app[SERVICES].session_store.database == ":memory:"
