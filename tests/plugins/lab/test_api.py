"""The lab APIs over real HTTP, with the shapes jupyterlab_server answers, and Himalia's JSON errors."""

from __future__ import annotations

import json

from .conftest import AUTH, EXTENSION, SCHEMA_ID

THEMES = "@jupyterlab/apputils-extension:themes"


async def test_settings_list_get_put(himalia_server, extension, lab_dirs):
    async with himalia_server(config=AUTH) as server:
        r = await server.get("/lab/api/settings")
        assert r.status == 200
        listing = (await r.json())["settings"]
        ids = {s["id"] for s in listing}
        assert SCHEMA_ID in ids and THEMES in ids  # federated and core schemas
        ids_only = await (await server.get("/lab/api/settings?ids_only=true")).json()
        assert {s["id"] for s in ids_only["settings"]} == ids and "schema" not in ids_only["settings"][0]

        one = await (await server.get(f"/lab/api/settings/{SCHEMA_ID}")).json()
        assert one["id"] == SCHEMA_ID and one["version"] == "1.2.3" and one["schema"]["properties"]["answer"]
        assert one["raw"] == "{}" and one["settings"] == {}

        raw = '{\n  // JSON5, comments kept\n  "answer": 7\n}'
        r = await server.put(f"/lab/api/settings/{SCHEMA_ID}", data=json.dumps({"raw": raw}))
        assert r.status == 204
        saved = lab_dirs["settings"] / EXTENSION / "plugin.jupyterlab-settings"
        assert saved.read_text() == raw
        one = await (await server.get(f"/lab/api/settings/{SCHEMA_ID}")).json()
        assert one["settings"] == {"answer": 7} and one["raw"] == raw

        r = await server.put(f"/lab/api/settings/{THEMES}", data=json.dumps({"raw": '{"theme": "JupyterLab Dark"}'}))
        assert r.status == 204
        assert (lab_dirs["settings"] / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings").exists()


async def test_settings_errors_are_json(himalia_server, extension, lab_dirs):
    async with himalia_server(config=AUTH) as server:
        cases = [
            ("GET", "/lab/api/settings/@nobody/nothing:plugin", None, 404),
            ("PUT", "/lab/api/settings/@nobody/nothing:plugin", json.dumps({"raw": "{}"}), 404),
            ("PUT", f"/lab/api/settings/{SCHEMA_ID}", "not json", 400),
            ("PUT", f"/lab/api/settings/{SCHEMA_ID}", json.dumps({"nope": 1}), 400),
            ("PUT", f"/lab/api/settings/{SCHEMA_ID}", json.dumps({"raw": 5}), 400),
            ("PUT", f"/lab/api/settings/{SCHEMA_ID}", json.dumps({"raw": "{oops"}), 400),
            ("PUT", f"/lab/api/settings/{SCHEMA_ID}", json.dumps({"raw": '{"answer": "many"}'}), 400),
            ("PUT", f"/lab/api/settings/{SCHEMA_ID}", json.dumps({"raw": '{"unknown": 1}'}), 400),
        ]
        for method, path, body, status in cases:
            r = await server.request(method, path, data=body)
            assert r.status == status, (method, path, body, await r.text())
            error = await r.json()
            assert error["message"] and "reason" in error, error
        assert not (lab_dirs["settings"] / EXTENSION).exists()  # nothing written by a refused PUT


async def test_overrides_json_applies_to_defaults(himalia_server, extension, lab_dirs, tmp_path, monkeypatch):
    """`<app dir>/settings/overrides.json` changes a schema's defaults, as in jupyter lab."""
    import shutil

    from jupyterlab.commands import get_app_dir

    app_dir = tmp_path / "app"
    shutil.copytree(get_app_dir(), app_dir, symlinks=True)
    (app_dir / "settings").mkdir(exist_ok=True)
    (app_dir / "settings" / "overrides.json").write_text(json.dumps({SCHEMA_ID: {"answer": 99}}))
    config = {**AUTH, "plugins": {**AUTH["plugins"], "lab": {"app_dir": str(app_dir)}}}
    async with himalia_server(config=config) as server:
        one = await (await server.get(f"/lab/api/settings/{SCHEMA_ID}")).json()
        assert one["schema"]["properties"]["answer"]["default"] == 99


async def test_workspaces(himalia_server, lab_dirs):
    async with himalia_server(config=AUTH) as server:
        assert await (await server.get("/lab/api/workspaces")).json() == {"workspaces": {"ids": [], "values": []}}
        space = {"data": {"layout-restorer:data": {"main": {"current": "notebook:a.ipynb"}}},
                 "metadata": {"id": "mine"}}
        r = await server.put("/lab/api/workspaces/mine", data=json.dumps(space))
        assert r.status == 204
        assert any(p.suffix == ".jupyterlab-workspace" for p in lab_dirs["workspaces"].iterdir())
        got = await (await server.get("/lab/api/workspaces/mine")).json()
        assert got["data"] == space["data"] and got["metadata"]["id"] == "mine"
        listing = await (await server.get("/lab/api/workspaces/")).json()
        assert listing["workspaces"]["ids"] == ["mine"]
        # an unknown workspace is an empty one, as in jupyterlab_server
        empty = await (await server.get("/lab/api/workspaces/other")).json()
        assert empty["data"] == {} and empty["metadata"]["id"] in ("other", "/other")

        r = await server.put("/lab/api/workspaces/mine", data="{not json")
        assert r.status == 400 and (await r.json())["reason"] == "bad workspace"
        r = await server.put("/lab/api/workspaces/mine", data=json.dumps({"data": {}, "metadata": {"id": "other"}}))
        assert r.status == 400 and "mine" in (await r.json())["message"]
        assert (await server.delete("/lab/api/workspaces/mine")).status == 204
        r = await server.delete("/lab/api/workspaces/mine")
        assert r.status == 404 and "mine" in (await r.json())["message"]


async def test_translations(himalia_server):
    async with himalia_server(config=AUTH) as server:
        listing = await (await server.get("/lab/api/translations")).json()
        assert "en" in listing["data"] and listing["message"] == ""
        r = await server.get("/lab/api/translations/default")
        assert r.status == 200  # the page must load without a language pack; the message says so
        body = await r.json()
        assert body["data"] == {} and "message" in body
        body = await (await server.get("/lab/api/translations/xx_YY")).json()
        assert body["data"] == {} and "xx_YY" in body["message"]


async def test_themes(himalia_server, extension):
    async with himalia_server(config=AUTH) as server:
        r = await server.get("/lab/api/themes/@jupyterlab/theme-dark-extension/index.css")
        assert r.status == 200 and r.content_type == "text/css"
        r = await server.get(f"/lab/api/themes/{EXTENSION}/index.css")
        text = await r.text()
        assert f"url('/lab/api/themes/{EXTENSION}/images/bg.png')" in text and "url('/abs.png')" in text
        r = await server.get("/lab/api/themes/@jupyterlab/no-such-theme/index.css")
        assert r.status == 404 and (await r.json())["reason"] == "not found"


async def test_licenses(himalia_server):
    async with himalia_server(config=AUTH) as server:
        r = await server.get("/lab/api/licenses/?bundles=@jupyterlab/application-top&full_text=false")
        assert r.status == 200
        bundles = (await r.json())["bundles"]
        assert "@jupyterlab/application-top" in bundles
        r = await server.get("/lab/api/licenses?format=markdown&full_text=false&download=1")
        assert r.status == 200 and r.content_type == "text/markdown"
        assert r.headers["Content-Disposition"].startswith("attachment;")
        for query in ("format=pdf", "full_text=maybe", "bundles=("):
            r = await server.get(f"/lab/api/licenses?{query}")
            assert r.status == 400 and (await r.json())["reason"] == "bad query", query


async def test_optional_endpoints_answer_without_the_internet(himalia_server):
    async with himalia_server(config=AUTH) as server:
        expected = {"/lab/api/news": {"news": []}, "/lab/api/update": {"notification": None},
                    "/lab/api/plugins": {"lockRules": [], "allLocked": False}, "/lab/api/extensions": []}
        for path, body in expected.items():
            r = await server.get(path)
            assert r.status == 200 and await r.json() == body, path


async def test_malformed_workspaces_are_400_not_500(himalia_server, lab_dirs):
    """jupyterlab_server's WorkspacesManager indexes into the body unchecked (a 500 in jupyter lab)."""
    async with himalia_server(config=AUTH) as server:
        for body in ('{"data": {}, "metadata": {}}', '{"data": {}, "metadata": {"id": 5}}', "[]", "{}", "null",
                     '{"data": 1, "metadata": "x"}'):
            r = await server.put("/lab/api/workspaces/w", data=body)
            assert r.status == 400 and (await r.json())["reason"] == "bad workspace", body
        assert not lab_dirs["workspaces"].exists() or not any(lab_dirs["workspaces"].iterdir())


async def test_settings_listing_follows_changes_on_disk(himalia_server, extension, lab_dirs):
    """The listing is cached; a settings file written behind the server's back, and an extension
    removed, show on the next request."""
    import shutil

    async with himalia_server(config=AUTH) as server:
        def answer(listing):
            return next(s for s in listing["settings"] if s["id"] == SCHEMA_ID)["settings"]

        assert answer(await (await server.get("/lab/api/settings")).json()) == {}
        target = lab_dirs["settings"] / EXTENSION
        target.mkdir(parents=True)
        (target / "plugin.jupyterlab-settings").write_text('{"answer": 3}')
        assert answer(await (await server.get("/lab/api/settings")).json()) == {"answer": 3}
        shutil.rmtree(extension)
        ids = {s["id"] for s in (await (await server.get("/lab/api/settings")).json())["settings"]}
        assert SCHEMA_ID not in ids
