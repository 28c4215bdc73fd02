"""The lab plugin's pages over real HTTP: the root redirect, login, JupyterLab's and Notebook 7's pages
with their page config, static files, and base_url."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from himalia import hookimpl

from .conftest import AUTH, EXTENSION, TOKEN, page_config

HTML = {"Accept": "text/html,application/xhtml+xml"}


async def test_root_redirects_to_lab_and_a_token_login_leaves_the_address_bar(himalia_server):
    async with himalia_server(config=AUTH) as server:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(server.url_for(f"/?token={TOKEN}"), allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"] == "/lab"
                assert {"himalia-login", "_xsrf"} <= set(r.cookies)
            async with browser.get(server.url_for(f"/lab?token={TOKEN}&reset"), allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"] == "/lab?reset="
            async with browser.get(server.url_for("/lab"), allow_redirects=False) as r:  # by cookie now
                assert r.status == 200 and r.content_type == "text/html"
                config = page_config(await r.text())
                assert config["token"] == ""  # the page never carries the token


async def test_without_lab_the_root_answers_json(himalia_server):
    async with himalia_server(config=AUTH, disable=["lab"]) as server:
        r = await server.get("/")
        assert r.status == 200 and "is running" in (await r.json())["message"]


async def test_a_browser_without_login_gets_a_page_saying_how_to_log_in(himalia_server):
    async with himalia_server(config=AUTH) as server:
        async with aiohttp.ClientSession() as browser:
            for path in ("/lab", "/tree", "/", "/files/x.txt"):
                async with browser.get(server.url_for(path), headers=HTML, allow_redirects=False) as r:
                    assert r.status == 401 and r.content_type == "text/html", path
                    text = await r.text()
                    assert "?token=" in text and '<form method="get"' in text and TOKEN not in text
                    assert "You are not logged in" in text
            async with browser.get(server.url_for("/lab?token=wrong"), headers=HTML) as r:
                assert r.status == 401 and "is not this server" in await r.text()
            # API calls and scripts still get the JSON error, even from a browser
            for path in ("/api/contents", "/lab/api/settings"):
                async with browser.get(server.url_for(path), headers=HTML) as r:
                    assert r.status == 401 and (await r.json())["reason"] == "missing token", path
            async with browser.get(server.url_for("/lab")) as r:
                assert r.status == 401 and (await r.json())["reason"] == "missing token"


async def test_lab_page_config(himalia_server, extension, lab_dirs):
    async with himalia_server(config=AUTH) as server:
        r = await server.get("/lab")
        config = page_config(await r.text())
        assert config["baseUrl"] == "/" and config["appUrl"] == "/lab" and config["fullStaticUrl"] == "/static/lab"
        assert config["mode"] == "multiple-document" and config["workspace"] == "default" and config["treePath"] == ""
        assert isinstance(config["disabledExtensions"], list)
        assert config["terminalsAvailable"] is True  # the terminals plugin is on
        assert json.loads(config["notebookVersion"])[0] == 2
        assert config["buildAvailable"] is False and config["news"] == {"disabled": True}
        names = [e["name"] for e in config["federated_extensions"]]
        assert EXTENSION in names and "@jupyter-notebook/lab-extension" in names
        assert config["userSettingsDir"] == str(lab_dirs["settings"])

        config = page_config(await (await server.get("/lab/workspaces/mine/tree/a/b.ipynb")).text())
        assert (config["workspace"], config["treePath"]) == ("mine", "a/b.ipynb")
        config = page_config(await (await server.get("/doc/tree/x.ipynb")).text())
        assert config["mode"] == "single-document" and config["treePath"] == "x.ipynb"
        config = page_config(await (await server.get("/lab/some/unknown/page")).text())
        assert config["notFoundUrl"] == "/lab/some/unknown/page"
        r = await server.get("/lab/", allow_redirects=False)
        assert r.status == 302 and r.headers["Location"] == "/lab"


async def test_labextension_disable_disables_on_the_next_page(himalia_server, extension):
    """`jupyter labextension disable` writes disabledExtensions as a dict; the page must get a list."""
    async with himalia_server(config=AUTH) as server:
        config = page_config(await (await server.get("/lab")).text())
        assert EXTENSION not in config["disabledExtensions"]
        done = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "disable", "--level=user", EXTENSION],
                              capture_output=True, text=True, timeout=120, env=os.environ.copy())
        assert done.returncode == 0, done.stderr
        written = json.loads((Path(os.environ["JUPYTER_CONFIG_DIR"]) / "labconfig" / "page_config.json").read_text())
        assert written["disabledExtensions"] == {EXTENSION: True}
        config = page_config(await (await server.get("/lab")).text())
        assert config["disabledExtensions"] == [EXTENSION]


async def test_the_page_loads_the_bundle_its_template_names(himalia_server):
    async with himalia_server(config=AUTH) as server:
        html = await (await server.get("/lab")).text()
        import re

        scripts = re.findall(r'<script defer="defer" src="/static/lab/([^"?]+)', html)
        assert scripts and scripts[0].startswith("main.")
        r = await server.get(f"/static/lab/{scripts[0]}")
        assert r.status == 200 and "javascript" in r.content_type
        assert "max-age=31536000" in r.headers["Cache-Control"]
        for bad in ("/static/lab/..%2F..%2Fschemas", "/static/lab/.hidden", "/static/lab/nothing.js",
                    "/lab/extensions/x/..%2F..%2Fpackage.json", "/static/notebook/..%2F__init__.py",
                    "/lab/api/themes/..%2F..%2Fstatic%2Findex.html"):
            r = await server.get(bad)
            assert r.status == 404 and (await r.json())["reason"] == "not found", bad


async def test_federated_extension_files_and_favicons(himalia_server, extension):
    async with himalia_server(config=AUTH) as server:
        r = await server.get(f"/lab/extensions/{EXTENSION}/static/remoteEntry.abcdef0123456789.js")
        assert r.status == 200 and await r.text() == "/* container */"
        r = await server.get("/lab/extensions/@jupyter-notebook/lab-extension/package.json")
        assert r.status == 200
        r = await server.get("/lab/extensions/no-such-ext/static/x.js")
        assert r.status == 404 and "no-such-ext" in (await r.json())["message"]
        r = await server.get("/static/favicons/favicon.ico")
        assert r.status == 200
        r = await server.get("/custom/custom.css")
        assert r.status == 200 and r.content_type == "text/css"


async def test_notebook7_pages_and_redirects(himalia_server):
    async with himalia_server(config=AUTH) as server:
        root = server.root_dir
        (root / "sub").mkdir()
        (root / "sub" / "n.ipynb").write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}))
        (root / "sub" / "t.txt").write_text("hi")
        r = await server.get("/tree")
        config = page_config(await r.text())
        assert config["notebookPage"] == "tree" and config["treePath"] == "" and config["appUrl"] == "/lab"
        assert config["fullStaticUrl"] == "/static/notebook" and config["appName"] == "Jupyter Notebook"
        config = page_config(await (await server.get("/tree/sub")).text())
        assert config["treePath"] == "sub"
        for path, location in (("/tree/sub/n.ipynb", "/notebooks/sub/n.ipynb"), ("/tree/sub/t.txt", "/files/sub/t.txt"),
                               ("/notebooks/sub", "/tree/sub")):
            r = await server.get(path, allow_redirects=False)
            assert (r.status, r.headers.get("Location")) == (302, location), path
        r = await server.get("/tree/missing")
        assert r.status == 404 and "missing" in (await r.json())["message"]
        for path, page in (("/notebooks/sub/n.ipynb", "notebooks"), ("/edit/sub/t.txt", "edit"),
                           ("/consoles/c", "consoles"), ("/terminals/1", "terminals")):
            config = page_config(await (await server.get(path)).text())
            assert config["notebookPage"] == page, path
        html = await (await server.get("/tree")).text()
        import re

        script = re.search(r'src="/static/notebook/([^"?]+)', html).group(1)
        assert (await server.get(f"/static/notebook/{script}")).status == 200


async def test_base_url_everywhere(himalia_server, extension):
    config = {**AUTH, "server": {"base_url": "/jh/"}}
    async with himalia_server(config=config) as server:
        async with aiohttp.ClientSession() as browser:
            async with browser.get(server.url_for(f"/?token={TOKEN}"), allow_redirects=False) as r:
                assert r.headers["Location"] == "/jh/lab"
        page = page_config(await (await server.get("/lab")).text())
        assert page["baseUrl"] == "/jh/" and page["fullStaticUrl"] == "/jh/static/lab"
        assert page["fullSettingsUrl"] == "/jh/lab/api/settings" and page["settingsUrl"] == "/lab/api/settings"
        html = await (await server.get("/lab")).text()
        assert 'href="/jh/static/favicons/favicon.ico"' in html
        assert (await server.get(f"/lab/extensions/{EXTENSION}/package.json")).status == 200
        r = await server.get(f"/lab/api/themes/{EXTENSION}/index.css")
        assert f"url('/jh/lab/api/themes/{EXTENSION}/images/bg.png')" in await r.text()
        r = await server.get("/tree/x.ipynb", allow_redirects=False)
        assert r.status == 404
        (server.root_dir / "x.ipynb").write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}))
        r = await server.get("/tree/x.ipynb", allow_redirects=False)
        assert r.headers["Location"] == "/jh/notebooks/x.ipynb"
        tree = page_config(await (await server.get("/tree")).text())
        assert tree["frontendUrl"] == "/jh/" and tree["fullStaticUrl"] == "/jh/static/notebook"


class Landing:
    @hookimpl
    def himalia_default_urls(self, config):
        return ["/elsewhere"]


async def test_default_urls_first_plugin_by_name_wins(himalia_server):
    """'aaa' sorts before 'lab': its page is the root's."""
    async with himalia_server(config=AUTH, plugins={"aaa": Landing()}) as server:
        r = await server.get("/", allow_redirects=False)
        assert r.headers["Location"] == "/elsewhere"
    async with himalia_server(config=AUTH, plugins={"zzz": Landing()}) as server:
        r = await server.get("/", allow_redirects=False)
        assert r.headers["Location"] == "/lab"


def test_without_jupyterlab_the_plugin_serves_nothing_and_says_what_to_install(tmp_path):
    """A real `himalia plugins` and app in a process where jupyterlab cannot be imported."""
    script = tmp_path / "hide.py"
    script.write_text(
        "import sys\n"
        "sys.modules['jupyterlab'] = sys.modules['notebook'] = None  # as if not installed: find_spec says None\n"
        "from himalia.cli import main\n"
        "from himalia.app import create_app, load\n"
        "config, plugins = load(config_data={'server': {'root_dir': '.'}})\n"
        "app = create_app(config, plugins)\n"
        "paths = sorted({r.resource.canonical for r in app.router.routes()})\n"
        "print('ROUTES', [p for p in paths if 'lab' in p or 'tree' in p])\n"
        "sys.exit(main(['plugins']))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ROUTES []" in done.stdout
    assert "note: serves nothing: jupyterlab, notebook not installed; pip install 'himalia[lab]'" in done.stdout


async def test_a_broken_app_directory_is_named_in_the_error(himalia_server, tmp_path):
    """An app dir without a built index.html (a half-installed jupyterlab): a JSON 500 naming the file,
    not a traceback; the API routes of the other plugins are unaffected."""
    empty = tmp_path / "empty-app"
    (empty / "static").mkdir(parents=True)
    config = {**AUTH, "plugins": {**AUTH["plugins"], "lab": {"app_dir": str(empty)}}}
    async with himalia_server(config=config) as server:
        r = await server.get("/lab")
        assert r.status == 500
        body = await r.json()
        assert str(empty / "static" / "index.html") in body["message"] and "app_dir" in body["message"]
        (empty / "static" / "index.html").write_text('<script defer="defer" src="{{page_config.fullStaticUrl}}/main.1.js"></script>')
        r = await server.get("/lab/api/settings")
        assert r.status == 500 and "main.1.js" in (await r.json())["message"]  # tried again, next fault named
        assert (await server.get("/api/contents")).status == 200


async def test_default_url_setting_picks_notebook7_and_is_checked(himalia_server):
    config = {**AUTH, "plugins": {**AUTH["plugins"], "lab": {"default_url": "/tree"}}}
    async with himalia_server(config=config) as server:
        r = await server.get("/", allow_redirects=False)
        assert r.headers["Location"] == "/tree"
    from himalia import StartupError

    bad = {**AUTH, "plugins": {**AUTH["plugins"], "lab": {"default_url": "tree"}}}
    with pytest.raises(StartupError, match="default_url"):
        async with himalia_server(config=bad):
            pass


async def test_terminals_turned_off_are_not_offered(himalia_server):
    config = {"plugins": {**AUTH["plugins"], "terminals": {"enabled": False}}}
    async with himalia_server(config=config) as server:
        for path in ("/lab", "/tree"):
            assert page_config(await (await server.get(path)).text())["terminalsAvailable"] is False, path
