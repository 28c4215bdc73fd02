"""Notebook export over real HTTP: nested notebooks read through the contents API, downloads with their
file names, the sandboxing CSP, zips of extracted files, cookie logins, and conversions off the loop."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import zipfile
from pathlib import Path

import aiohttp
import nbformat
import yarl

TOKEN = "nbconvert-token"
AUTH = {"plugins": {"auth": {"token": TOKEN}}}
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8ffff3f0005fe02fe"
    "a7d6a4c30000000049454e44ae426082")).decode()


def notebook(*cells, **metadata) -> nbformat.NotebookNode:
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python", "mimetype": "text/x-python", "file_extension": ".py"}}
    return nbformat.v4.new_notebook(cells=list(cells), metadata={**meta, **metadata})


def code(source: str, *outputs) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source, execution_count=1, outputs=list(outputs))


def stream(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def write(root: Path, path: str, nb: nbformat.NotebookNode) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(target))


async def raw_get(server, path: str) -> aiohttp.ClientResponse:
    """GET with the path sent as written (`..` kept; the client would otherwise resolve it)."""
    async with server.client.get(yarl.URL(server.url_for(path), encoded=True)) as r:
        await r.read()
        return r


async def test_formats_are_listed_with_their_mimetypes_and_each_one_works(himalia_server):
    async with himalia_server() as server:
        r = await server.get("/api/nbconvert")
        assert r.status == 200
        formats = await r.json()
        assert formats["html"] == {"output_mimetype": "text/html"}
        assert formats["python"] == {"output_mimetype": "text/x-python"}
        assert {"script", "notebook", "markdown"} <= set(formats)
        body = {"name": "probe.ipynb", "content": notebook(code("print(6*7)", stream("42\n")))}
        for name in formats:  # a listed format is one that converts
            r = await server.post(f"/nbconvert/{name}", json=body)
            assert r.status == 200, (name, await r.text())


async def test_html_and_script_of_a_nested_notebook_download_with_the_right_name(himalia_server):
    async with himalia_server() as server:
        write(server.root_dir, "work/deep er/My Notebook.ipynb",
              notebook(code("print(6*7)", stream("42-from-the-output\n"))))
        r = await server.get("/nbconvert/html/work/deep%20er/My%20Notebook.ipynb?download=true")
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        disposition = r.headers["Content-Disposition"]
        assert disposition.startswith("attachment;") and 'filename="My Notebook.html"' in disposition
        assert r.headers["Content-Security-Policy"] == "sandbox allow-scripts"
        assert "Last-Modified" in r.headers and r.headers["Last-Modified"].endswith("GMT")
        html = await r.text()
        assert "42-from-the-output" in html and "<html" in html

        r = await server.get("/nbconvert/script/work/deep%20er/My%20Notebook.ipynb?download=true")
        assert r.status == 200
        assert 'filename="My Notebook.py"' in r.headers["Content-Disposition"]
        assert r.headers["Content-Type"] == "text/x-python; charset=utf-8"
        assert "print(6*7)" in await r.text()


async def test_print_is_served_inline(himalia_server):
    """JupyterLab's Print opens nbconvert/html/<path> with no download flag."""
    async with himalia_server() as server:
        write(server.root_dir, "a/n.ipynb", notebook(code("1", stream("printed\n"))))
        for query in ("", "?download=false"):
            r = await server.get(f"/nbconvert/html/a/n.ipynb{query}")
            assert r.status == 200
            assert "Content-Disposition" not in r.headers
            assert r.headers["Content-Security-Policy"] == "sandbox allow-scripts"
            assert "printed" in await r.text()


async def test_sanitize_html(himalia_server):
    evil = nbformat.v4.new_output("display_data", data={"text/html": "<b>bold</b><script>alert('x')</script>"})
    async with himalia_server() as server:
        write(server.root_dir, "s.ipynb", notebook(code("x", evil)))
        raw = await (await server.get("/nbconvert/html/s.ipynb")).text()
        assert "<script>alert('x')</script>" in raw
        clean = await (await server.get("/nbconvert/html/s.ipynb?sanitize_html=true")).text()
        assert "<script>alert('x')</script>" not in clean and "<b>bold</b>" in clean


async def test_extracted_files_are_zipped_with_the_export(himalia_server):
    image = nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})
    async with himalia_server() as server:
        write(server.root_dir, "plots/fig.ipynb", notebook(code("plot()", image)))
        r = await server.get("/nbconvert/markdown/plots/fig.ipynb")  # a zip is always an attachment
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/zip"
        assert 'filename="fig.zip"' in r.headers["Content-Disposition"]
        with zipfile.ZipFile(io.BytesIO(await r.read())) as z:
            names = z.namelist()
            assert "fig.md" in names
            pngs = [n for n in names if n.endswith(".png")]
            assert pngs and z.read(pngs[0]) == base64.b64decode(PNG)
            assert pngs[0] in z.read("fig.md").decode()


async def test_paths_get_the_contents_apis_answers(himalia_server):
    async with himalia_server() as server:
        root = server.root_dir
        (root / "notes.txt").write_text("hi")
        (root / "dir").mkdir()
        write(root, ".hidden/n.ipynb", notebook())
        write(root, "n.ipynb", notebook())
        (root.parent / "outside.ipynb").write_text(nbformat.writes(notebook()))
        r = await server.get("/nbconvert/html/notes.txt", allow_redirects=False)
        assert r.status == 302 and r.headers["Location"] == "/files/notes.txt"
        r = await server.get("/nbconvert/html/dir")
        assert r.status == 400 and "directory" in (await r.json())["message"]
        for path in ("missing.ipynb", ".hidden/n.ipynb", "../outside.ipynb", "%2e%2e/outside.ipynb",
                     "dir/../../outside.ipynb"):
            contents = await raw_get(server, f"/api/contents/{path}")
            export = await raw_get(server, f"/nbconvert/html/{path}")
            assert contents.status >= 400 and export.status == contents.status, path
            assert (await export.json())["reason"] == (await contents.json())["reason"], path


async def test_unknown_format_is_a_404_listing_the_formats(himalia_server):
    async with himalia_server() as server:
        write(server.root_dir, "n.ipynb", notebook())
        for r in (await server.get("/nbconvert/nope/n.ipynb"),
                  await server.post("/nbconvert/nope", json={"content": notebook()})):
            assert r.status == 404
            message = (await r.json())["message"]
            assert "'nope'" in message and "html" in message and "script" in message


async def test_post_converts_the_notebook_in_the_body(himalia_server):
    async with himalia_server() as server:
        body = {"name": "sent.ipynb", "content": notebook(code("print(1)", stream("from-the-body\n")))}
        r = await server.post("/nbconvert/html", json=body)
        assert r.status == 200 and "from-the-body" in await r.text()
        assert r.headers["Content-Security-Policy"] == "sandbox allow-scripts"
        r = await server.post("/nbconvert/html?download=true", json=body)
        assert 'filename="sent.html"' in r.headers["Content-Disposition"]
        for bad, words in (({"content": {"cells": "no"}}, "not a valid notebook"),
                           ({"content": [1]}, "must be a JSON object"),
                           ({"name": "x.ipynb"}, "'content' is missing"),
                           ({"name": 5, "content": notebook()}, "'name'")):
            r = await server.post("/nbconvert/html", json=bad)
            assert r.status == 400, (bad, await r.text())
            assert words in (await r.json())["message"]
        r = await server.post("/nbconvert/html", data=b"{nope")
        assert r.status == 400


async def test_a_big_export_does_not_stall_other_requests(himalia_server, monkeypatch):
    """A 5 MB notebook is exported while /api/status answers: the exporter is held at its start (in its
    thread) until a status request has been answered, so an export run on the event loop would hang
    the status request instead (and fail this test at its deadline)."""
    from nbconvert.exporters.html import HTMLExporter

    started, release = threading.Event(), threading.Event()
    original = HTMLExporter.from_notebook_node

    def held(self, nb, resources=None, **kw):
        if len(nb.cells) > 100:  # the big one, not the format probe
            started.set()
            release.wait(60)
        return original(self, nb, resources=resources, **kw)

    monkeypatch.setattr(HTMLExporter, "from_notebook_node", held)
    cells = [code(f"print({i})", stream(f"line {i} " + "x" * 5000 + "\n")) for i in range(1000)]
    async with himalia_server() as server:
        write(server.root_dir, "big/huge.ipynb", notebook(*cells))
        assert (server.root_dir / "big/huge.ipynb").stat().st_size > 5_000_000
        exporting = asyncio.create_task(server.get("/nbconvert/html/big/huge.ipynb?download=true", timeout=120))
        try:
            assert await asyncio.wait_for(asyncio.to_thread(started.wait, 60), 70)
            status = await server.get("/api/status", timeout=30)
            assert status.status == 200 and not exporting.done()
        finally:
            release.set()
        r = await exporting
        assert r.status == 200 and "line 999 " in await r.text()


async def test_a_browser_navigation_with_the_login_cookie_exports(himalia_server):
    async with himalia_server(config=AUTH) as server:
        write(server.root_dir, "d/n.ipynb", notebook(code("1", stream("cookie-export\n"))))
        url = server.url_for("/nbconvert/html/d/n.ipynb?download=true")
        async with aiohttp.ClientSession() as stranger:
            async with stranger.get(url) as r:
                assert r.status == 401
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(server.url_for(f"/api/status?token={TOKEN}")) as r:
                assert r.status == 200
            async with browser.get(url) as r:  # a plain navigation: the cookie, no header, no XSRF
                assert r.status == 200 and "cookie-export" in await r.text()
            # and an export URL opened with ?token= works the same
        async with aiohttp.ClientSession() as c:
            async with c.get(url + f"&token={TOKEN}") as r:
                assert r.status == 200


async def test_the_spec_describes_the_routes(himalia_server):
    async with himalia_server() as server:
        spec = json.loads(await (await server.get("/api/spec.yaml")).text())
        assert {"/api/nbconvert", "/nbconvert/{format}/{path}", "/nbconvert/{format}"} <= set(spec["paths"])
