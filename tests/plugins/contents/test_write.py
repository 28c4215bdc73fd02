"""PUT /api/contents: saving files and notebooks, uploads (chunked too), save hooks, atomic writes."""

from __future__ import annotations

import asyncio
import base64
import errno
import json
import os
import stat

import nbformat
import pytest

from himalia import hookimpl

NOTEBOOK = {
    "cells": [
        {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": "# Title\ntext"},
        {"cell_type": "code", "id": "c1", "execution_count": 3, "metadata": {"trusted": True},
         "source": "print('é')\nx = 1",
         "outputs": [{"output_type": "stream", "name": "stdout", "text": "é\nsecond\n"},
                     {"output_type": "display_data", "metadata": {},
                      "data": {"text/html": "<b>a</b>\n<i>b</i>", "text/plain": "a\nb",
                               "application/json": {"k": [1, 2]}}}]},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                 "signature": "sha256:stale"},
    "nbformat": 4, "nbformat_minor": 5,
}


def temp_files(directory) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith((".himalia-tmp", ".himalia-upload"))]


async def test_save_text_and_base64_files(contents_server, root):
    async with contents_server() as server:
        r = await server.put("/api/contents/new.txt", json={"type": "file", "format": "text", "content": "one\n"})
        assert r.status == 201
        model = await r.json()
        assert model["path"] == "new.txt" and model["content"] is None and model["size"] == 4
        assert r.headers["Location"] == "/api/contents/new.txt"
        assert (root / "new.txt").read_bytes() == b"one\n"
        r = await server.put("/api/contents/new.txt", json={"type": "file", "format": "text", "content": "two\n"})
        assert r.status == 200 and (root / "new.txt").read_bytes() == b"two\n"
        data = os.urandom(3000)
        r = await server.put("/api/contents/blob.bin", json={"type": "file", "format": "base64",
                                                             "content": base64.encodebytes(data).decode()})
        assert r.status == 201 and (root / "blob.bin").read_bytes() == data
        assert temp_files(root) == []


async def test_notebook_is_written_as_nbformat_writes_it(contents_server, root):
    async with contents_server() as server:
        r = await server.put("/api/contents/nb.ipynb", json={"type": "notebook", "content": NOTEBOOK})
        assert r.status == 201
        model = await r.json()
        assert model["type"] == "notebook" and "message" not in model
        expected = nbformat.writes(nbformat.from_dict(json.loads(json.dumps(NOTEBOOK)))) + "\n"
        assert (root / "nb.ipynb").read_text(encoding="utf-8") == expected
        on_disk = json.loads((root / "nb.ipynb").read_text())
        assert "signature" not in on_disk["metadata"] and "trusted" not in on_disk["cells"][1]["metadata"]
        assert on_disk["cells"][0]["source"] == ["# Title\n", "text"]
        # a notebook's first save leaves a checkpoint, as jupyter_server does
        assert (root / ".ipynb_checkpoints" / "nb-checkpoint.ipynb").read_text() == expected
        # and reading it back gives the content saved (lines rejoined)
        back = await (await server.get("/api/contents/nb.ipynb")).json()
        assert back["content"]["cells"][1]["source"] == "print('é')\nx = 1"
        assert back["content"]["cells"][1]["outputs"][1]["data"]["application/json"] == {"k": [1, 2]}


async def test_invalid_notebook_is_saved_with_a_message(contents_server, root):
    bad = {"cells": [{"cell_type": "code", "metadata": {}, "source": "x", "outputs": []}], "metadata": {},
           "nbformat": 4, "nbformat_minor": 4}  # no execution_count
    async with contents_server() as server:
        r = await server.put("/api/contents/bad.ipynb", json={"type": "notebook", "content": bad})
        assert r.status == 201
        assert (await r.json())["message"].startswith("Notebook validation failed")
        assert json.loads((root / "bad.ipynb").read_text())["cells"][0]["source"] == ["x"]


@pytest.mark.parametrize("body, words", [
    ({"format": "text", "content": "x"}, "no 'type'"),
    ({"type": "socket", "format": "text", "content": "x"}, "unknown type"),
    ({"type": "file", "format": "json", "content": "x"}, "'format' must be"),
    ({"type": "file", "content": "x"}, "'format' must be"),
    ({"type": "file", "format": "text"}, "no 'content'"),
    ({"type": "file", "format": "text", "content": {"a": 1}}, "must be a string"),
    ({"type": "file", "format": "base64", "content": "not*base64!"}, "not valid base64"),
    ({"type": "file", "format": "base64", "content": "héllo"}, "not valid base64"),
    ({"type": "notebook", "content": "text"}, "must be a JSON object"),
    ({"type": "notebook", "content": {"cells": "no"}}, "nbformat"),
    ({"type": "notebook", "content": {"nbformat": 4, "metadata": {}, "cells": [7]}}, "malformed notebook"),
    ({"type": "file", "format": "text", "content": "x", "chunk": 0}, "'chunk'"),
    ({"type": "notebook", "content": NOTEBOOK, "chunk": 1}, "chunked uploads are for files"),
])
async def test_bad_models_are_refused_and_leave_the_file_alone(contents_server, root, body, words):
    (root / "keep.ipynb").write_text("original")
    async with contents_server() as server:
        r = await server.put("/api/contents/keep.ipynb", json=body)
        assert r.status == 400, await r.text()
        message = (await r.json())["message"]
        assert words in message and "keep.ipynb" in message
        assert (root / "keep.ipynb").read_text() == "original"
        assert temp_files(root) == []


@pytest.mark.parametrize("content", ["!!!!", "abcd*"])
async def test_bad_base64_is_refused_and_the_file_kept(contents_server, root, content):
    """A lenient decode saved "!!!!" as zero bytes and "abcd*" as junk over the file (_file_bytes)."""
    (root / "data.bin").write_bytes(b"original bytes")
    async with contents_server() as server:
        for chunk in (None, 1):
            body = {"type": "file", "format": "base64", "content": content}
            if chunk is not None:
                body["chunk"] = chunk
            r = await server.put("/api/contents/data.bin", json=body)
            assert r.status == 400, await r.text()
            message = (await r.json())["message"]
            assert "not valid base64" in message and "data.bin" in message
            assert (root / "data.bin").read_bytes() == b"original bytes"
            assert temp_files(root) == []


async def test_base64_wrapped_in_lines_is_accepted(contents_server, root):
    async with contents_server() as server:
        r = await server.put("/api/contents/data.bin", json={"type": "file", "format": "base64",
                                                             "content": " YWJj\r\nZGVm\n\tZ2hp \n"})
        assert r.status == 201, await r.text()
        assert (root / "data.bin").read_bytes() == b"abcdefghi"


async def test_malformed_bodies(contents_server, root):
    async with contents_server() as server:
        r = await server.put("/api/contents/x.txt", data=b"{nope", headers={"Content-Type": "application/json"})
        assert r.status == 400 and (await r.json())["reason"] == "malformed json"
        r = await server.put("/api/contents/x.txt", json=[1, 2])
        assert r.status == 400
        r = await server.put("/api/contents/x.txt", json={"copy_from": "y.txt"})
        assert r.status == 400
        assert not (root / "x.txt").exists()


async def test_save_keeps_the_file_mode_and_new_files_follow_the_umask(contents_server, root):
    target = root / "script.sh"
    target.write_text("echo 1\n")
    target.chmod(0o751)
    async with contents_server() as server:
        r = await server.put("/api/contents/script.sh", json={"type": "file", "format": "text", "content": "echo 2\n"})
        assert r.status == 200
        assert stat.S_IMODE(target.stat().st_mode) == 0o751 and target.read_text() == "echo 2\n"
        await server.put("/api/contents/fresh.txt", json={"type": "file", "format": "text", "content": ""})
        umask = os.umask(0)
        os.umask(umask)
        assert stat.S_IMODE((root / "fresh.txt").stat().st_mode) == 0o666 & ~umask


async def test_save_through_a_link_inside_the_root_writes_the_target(contents_server, root):
    (root / "real.txt").write_text("old")
    (root / "alias.txt").symlink_to("real.txt")
    async with contents_server() as server:
        r = await server.put("/api/contents/alias.txt", json={"type": "file", "format": "text", "content": "new"})
        assert r.status == 200
        assert (root / "alias.txt").is_symlink() and (root / "real.txt").read_text() == "new"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
async def test_a_failure_mid_save_keeps_the_previous_content(contents_server, root, monkeypatch, code):
    """A full disk (or a quota, or RLIMIT_FSIZE's EFBIG) while the new bytes are flushed: a 507 naming
    the file; the old file survives whole, no temp file stays."""
    (root / "precious.txt").write_text("all of the old content")
    real_fsync = os.fsync

    def disk_full(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).endswith(".himalia-tmp"):
            raise OSError(code, os.strerror(code))
        return real_fsync(fd)

    async with contents_server() as server:
        monkeypatch.setattr(os, "fsync", disk_full)
        r = await server.put("/api/contents/precious.txt",
                             json={"type": "file", "format": "text", "content": "new " * 100_000})
        monkeypatch.setattr(os, "fsync", real_fsync)
        assert r.status == 507
        body = await r.json()
        assert body["reason"] == "disk full" and "precious.txt" in body["message"]
        assert (root / "precious.txt").read_text() == "all of the old content"
        assert temp_files(root) == []


async def test_concurrent_saves_leave_one_complete_version(contents_server, root):
    versions = [(chr(ord("a") + i) * 300_000) for i in range(6)]
    async with contents_server() as server:
        results = await asyncio.gather(*[
            server.put("/api/contents/race.txt", json={"type": "file", "format": "text", "content": v})
            for v in versions])
        assert all(r.status in (200, 201) for r in results)
        assert (root / "race.txt").read_text() in versions
        assert temp_files(root) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories anyway")
async def test_read_only_directory_falls_back_to_writing_in_place(contents_server, root):
    locked = root / "locked"
    locked.mkdir()
    (locked / "f.txt").write_text("old")
    locked.chmod(0o555)
    try:
        async with contents_server() as server:
            r = await server.put("/api/contents/locked/f.txt", json={"type": "file", "format": "text", "content": "new"})
            assert r.status == 200 and (locked / "f.txt").read_text() == "new"
            r = await server.put("/api/contents/locked/g.txt", json={"type": "file", "format": "text", "content": "x"})
            assert r.status == 403 and "locked/g.txt" in (await r.json())["message"]
    finally:
        locked.chmod(0o755)


async def test_immutable_directory_falls_back_to_writing_in_place(contents_server, root):
    """The same fallback, for root: an immutable directory (chattr +i) refuses new entries even to root."""
    import shutil
    import subprocess

    locked = root / "locked"
    locked.mkdir()
    (locked / "f.txt").write_text("old")
    chattr = shutil.which("chattr")
    if os.geteuid() != 0 or chattr is None or subprocess.run([chattr, "+i", str(locked)],
                                                             capture_output=True).returncode != 0:
        pytest.skip("needs root and chattr on a filesystem that supports it")
    try:
        async with contents_server() as server:
            r = await server.put("/api/contents/locked/f.txt", json={"type": "file", "format": "text", "content": "new"})
            assert r.status == 200, await r.text()
            assert (locked / "f.txt").read_text() == "new"
    finally:
        subprocess.run([chattr, "-i", str(locked)], check=True)


async def test_chunked_upload_reads_back_byte_identical(contents_server, root):
    data = os.urandom(3 * 1024 * 1024 + 123)
    chunk = 1024 * 1024
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    (root / "upload.bin").write_bytes(b"previous")
    async with contents_server() as server:
        for n, piece in enumerate(pieces, start=1):
            number = -1 if n == len(pieces) else n
            r = await server.put("/api/contents/upload.bin", json={
                "type": "file", "format": "base64", "chunk": number, "content": base64.b64encode(piece).decode()})
            assert r.status == 200, await r.text()
            if number != -1:  # the old content stays whole until the last chunk lands
                assert (root / "upload.bin").read_bytes() == b"previous"
        assert (await r.json())["size"] == len(data)
        assert (root / "upload.bin").read_bytes() == data
        assert temp_files(root) == [] and not any(p.name.endswith("upload") for p in root.iterdir())
        r = await server.get("/files/upload.bin")
        assert await r.read() == data
        model = await (await server.get("/api/contents/upload.bin")).json()
        assert base64.b64decode(model["content"]) == data


async def test_chunked_upload_of_a_new_text_file(contents_server, root):
    async with contents_server() as server:
        for number, text in ((1, "alpha "), (2, "beta "), (-1, "gamma")):
            r = await server.put("/api/contents/d.txt", json={"type": "file", "format": "text",
                                                              "chunk": number, "content": text})
            assert r.status in (200, 201)
        assert (root / "d.txt").read_text() == "alpha beta gamma"
        r = await server.put("/api/contents/e.txt", json={"type": "file", "format": "text", "chunk": 3,
                                                          "content": "x"})
        assert r.status == 409 and "starts with chunk 1" in (await r.json())["message"]


class Rewriter:
    """A plugin that strips outputs before every save and records what was saved."""

    def __init__(self):
        self.saved = []

    @hookimpl
    def himalia_contents_pre_save(self, path, model):
        if model["type"] == "notebook":
            for cell in model["content"]["cells"]:
                if cell["cell_type"] == "code":
                    cell["outputs"] = []
                    cell["execution_count"] = None

    @hookimpl
    def himalia_contents_post_save(self, path, model):
        self.saved.append((path, model["type"], model["content"]))


class Refuser:
    @hookimpl
    def himalia_contents_pre_save(self, path, model):
        raise ValueError("no saving today")


async def test_pre_save_hook_rewrites_and_post_save_hook_is_told(contents_server, root):
    rewriter = Rewriter()
    async with contents_server(plugins={"rewriter": rewriter}) as server:
        r = await server.put("/api/contents/nb.ipynb", json={"type": "notebook", "content": NOTEBOOK})
        assert r.status == 201
        on_disk = json.loads((root / "nb.ipynb").read_text())
        assert on_disk["cells"][1]["outputs"] == [] and on_disk["cells"][1]["execution_count"] is None
        await server.put("/api/contents/t.txt", json={"type": "file", "format": "text", "content": "x"})
        for n in (1, -1):
            await server.put("/api/contents/big.txt", json={"type": "file", "format": "text", "chunk": n,
                                                            "content": "y"})
        assert rewriter.saved == [("nb.ipynb", "notebook", None), ("t.txt", "file", None), ("big.txt", "file", None)]


class Recorder:
    """Records where each save hook ran: the path it was given and whether it was on the event loop."""

    def __init__(self):
        self.calls = []

    def _record(self, hook, path):
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        self.calls.append((hook, path, on_loop))

    @hookimpl
    def himalia_contents_pre_save(self, path, model):
        self._record("pre", path)

    @hookimpl
    def himalia_contents_post_save(self, path, model):
        self._record("post", path)


async def test_save_hooks_run_off_the_event_loop_and_only_for_accepted_paths(contents_server, root, tmp_path):
    """The hooks ran in the async save, on the event loop and before the path was checked (filesystem.py save)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "out").symlink_to(outside)
    (root / "sub").mkdir()
    recorder = Recorder()
    async with contents_server(plugins={"recorder": recorder}) as server:
        for refused in (".hidden.ipynb", "out/nb.ipynb", ""):
            r = await server.put(f"/api/contents/{refused}", json={"type": "notebook", "content": NOTEBOOK})
            assert r.status in (400, 403), (refused, await r.text())
        assert recorder.calls == []
        r = await server.put("/api/contents/sub/nb.ipynb/", json={"type": "notebook", "content": NOTEBOOK})
        assert r.status == 201, await r.text()
        assert recorder.calls == [("pre", "sub/nb.ipynb", False), ("post", "sub/nb.ipynb", False)]
    assert list(outside.iterdir()) == []


async def test_a_failing_pre_save_hook_aborts_the_save(contents_server, root):
    (root / "t.txt").write_text("kept")
    async with contents_server(plugins={"refuser": Refuser()}) as server:
        r = await server.put("/api/contents/t.txt", json={"type": "file", "format": "text", "content": "x"})
        assert r.status == 500
        assert "refuser" in (await r.json())["message"]
        assert (root / "t.txt").read_text() == "kept"


async def test_put_directory_and_empty_put(contents_server, root):
    async with contents_server() as server:
        r = await server.put("/api/contents/newdir", json={"type": "directory"})
        assert r.status == 201 and (root / "newdir").is_dir()
        r = await server.put("/api/contents/newdir", json={"type": "directory"})
        assert r.status == 200
        r = await server.put("/api/contents/newdir")  # no body: an untitled file inside, as jupyter_server does
        assert r.status == 201 and (await r.json())["path"] == "newdir/untitled"
        r = await server.put("/api/contents/newdir", json={"type": "file", "format": "text", "content": "x"})
        assert r.status == 400 and "directory" in (await r.json())["message"]
        r = await server.put("/api/contents/missing/dir/f.txt", json={"type": "file", "format": "text", "content": "x"})
        assert r.status == 404 and "missing/dir/f.txt" in (await r.json())["message"]


def test_the_notebook_encoder_matches_the_stdlib_layout():
    from himalia_contents.notebooks import dumps_indented

    value = {"b": [1, 2.5, -0.0, 1e300, True, False, None, "é\n\"\\\u2028"], "a": {}, "c": [],
             "d": {"z": {"y": [[]]}, "ünï": "ç"}, "e": 10**20,
             "lines": ["one\n", "", "é\"\\\u2028\n", "\x00"], "one": ["x"]}  # all-string lists: one join
    assert dumps_indented(value) == json.dumps(value, sort_keys=True, indent=1, separators=(",", ": "),
                                               ensure_ascii=False)
    with pytest.raises(TypeError):
        dumps_indented({1: "x"})
    with pytest.raises(TypeError):
        dumps_indented({"x": object()})


@pytest.mark.parametrize("method,path", [("PUT", "new.txt"), ("POST", ""), ("PATCH", "notes.txt")])
async def test_json_nested_too_deeply_is_malformed_json(contents_server, root, method, path):
    """json.loads raises RecursionError (not ValueError) on `[[[[...`; that was a 500 (handlers.py _parse)."""
    (root / "notes.txt").write_text("x")
    async with contents_server() as server:
        r = await server.request(method, f"/api/contents/{path}", data=b"[" * 100_000,
                                 headers={"Content-Type": "application/json"})
        assert r.status == 400, await r.text()
        assert (await r.json())["reason"] == "malformed json"


async def test_a_new_chunked_upload_removes_stale_partial_uploads(contents_server, root):
    """Abandoned uploads' hidden partial files go once older than `stale_upload_age`; fresh ones stay."""
    stale = root / ".abandoned.bin.himalia-upload"
    fresh = root / ".in-progress.bin.himalia-upload"
    stale.write_bytes(b"old")
    fresh.write_bytes(b"new")
    an_hour_and_more = os.stat(stale).st_mtime - 3700
    os.utime(stale, (an_hour_and_more, an_hour_and_more))
    async with contents_server() as server:
        r = await server.put("/api/contents/up.bin", json={
            "type": "file", "format": "base64", "content": base64.b64encode(b"abc").decode(), "chunk": 1})
        assert r.status in (200, 201), await r.text()
        assert not stale.exists() and fresh.exists()
        r = await server.put("/api/contents/up.bin", json={
            "type": "file", "format": "base64", "content": base64.b64encode(b"def").decode(), "chunk": -1})
        assert r.status in (200, 201), await r.text()
    assert (root / "up.bin").read_bytes() == b"abcdef"
    assert sorted(p.name for p in root.iterdir()) == [".in-progress.bin.himalia-upload", "up.bin"]


def make_old(path, seconds=3700):
    then = os.stat(path).st_mtime - seconds
    os.utime(path, (then, then))


async def test_a_save_removes_temp_files_left_by_a_killed_save(contents_server, root):
    """A save killed mid-write (SIGKILL) leaves `.name.XXXX.himalia-tmp`; those older than
    `stale_upload_age` go when a save (or a chunked upload) next writes into that directory."""
    sub = root / "sub"
    sub.mkdir()
    stale = sub / ".notes.txt.k1ll3d.himalia-tmp"
    fresh = sub / ".notes.txt.wr1t1n.himalia-tmp"
    elsewhere = root / ".other.txt.k1ll3d.himalia-tmp"
    for path in (stale, fresh, elsewhere):
        path.write_bytes(b"half a save")
    make_old(stale)
    make_old(elsewhere)
    async with contents_server() as server:
        r = await server.put("/api/contents/sub/notes.txt", json={"type": "file", "format": "text", "content": "x"})
        assert r.status == 201, await r.text()
        assert not stale.exists() and fresh.exists() and elsewhere.exists()  # only the directory written to
        r = await server.put("/api/contents/up.bin", json={
            "type": "file", "format": "base64", "content": base64.b64encode(b"abc").decode(), "chunk": 1})
        assert r.status in (200, 201), await r.text()
        assert not elsewhere.exists()
