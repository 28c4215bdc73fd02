"""Nothing outside the root is read, listed or written; hidden paths stay hidden unless allowed."""

from __future__ import annotations

import os

import pytest
import yarl

SECRET = "top secret outside the root"


@pytest.fixture
def outside(tmp_path):
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text(SECRET)
    return path


async def raw_get(server, raw_path: str):
    """GET a URL exactly as written: no client-side normalisation of `..` or percent-escapes."""
    url = yarl.URL(server.url_for(raw_path), encoded=True)
    async with server.client.get(url) as r:
        return r.status, await r.text()


@pytest.mark.parametrize("raw", [
    "/api/contents/../outside/secret.txt",
    "/api/contents/%2e%2e/outside/secret.txt",
    "/api/contents/%2E%2E%2Foutside%2Fsecret.txt",
    "/api/contents/..%2foutside%2fsecret.txt",
    "/api/contents/sub/..%2F..%2Foutside/secret.txt",
    "/api/contents/sub/%2e%2e/%2e%2e/outside/secret.txt",
    "/api/contents/%2F..%2F..%2Foutside%2Fsecret.txt",
    "/files/../outside/secret.txt",
    "/files/%2e%2e/outside/secret.txt",
    "/files/sub%2F..%2F..%2Foutside%2Fsecret.txt",
    "/api/contents/%2e%2e/outside/secret.txt/checkpoints",
])
async def test_traversal_never_reaches_outside(contents_server, root, outside, raw):
    (root / "sub").mkdir()
    async with contents_server() as server:
        status, text = await raw_get(server, raw)
        assert status in (403, 404), (raw, status, text)
        assert SECRET not in text


async def test_absolute_paths_stay_inside_the_root(contents_server, root, outside):
    async with contents_server() as server:
        status, text = await raw_get(server, "/api/contents/" + str(outside / "secret.txt"))
        assert status == 404 and SECRET not in text
        status, text = await raw_get(server, "/api/contents/%2F" + str(outside / "secret.txt").lstrip("/"))
        assert status == 404 and SECRET not in text


async def test_traversal_in_bodies_is_refused(contents_server, root, outside):
    (root / "in.txt").write_text("inside")
    async with contents_server() as server:
        r = await server.post("/api/contents", json={"copy_from": "../outside/secret.txt"})
        assert r.status == 404 and SECRET not in await r.text()
        r = await server.patch("/api/contents/in.txt", json={"path": "../outside/moved.txt"})
        assert r.status == 404 and not (outside / "moved.txt").exists()
        r = await server.put("/api/contents/in.txt", json={"type": "file", "format": "text", "content": "x",
                                                          "path": "../outside/x"})
        assert (root / "in.txt").exists() and not (outside / "x").exists()
        r = await server.get("/api/contents/a\x00b")
        assert r.status in (400, 404)


async def test_links_out_of_the_root_are_refused_by_default(contents_server, root, outside):
    (root / "outlink").symlink_to(outside, target_is_directory=True)
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    (root / "kept.txt").write_text("fine")
    async with contents_server() as server:
        listing = await (await server.get("/api/contents")).json()
        assert [c["name"] for c in listing["content"]] == ["kept.txt"]
        for path in ("/api/contents/outlink/secret.txt", "/api/contents/leak.txt", "/api/contents/outlink",
                     "/files/leak.txt", "/files/outlink/secret.txt", "/api/contents/leak.txt/checkpoints"):
            r = await server.get(path)
            assert r.status == 403, path
            body = await r.json()
            assert SECRET not in str(body)
            assert "follow_symlinks_outside_root" in body["message"]
        r = await server.put("/api/contents/outlink/new.txt", json={"type": "file", "format": "text", "content": "x"})
        assert r.status == 403 and not (outside / "new.txt").exists()
        r = await server.put("/api/contents/leak.txt", json={"type": "file", "format": "text", "content": "x"})
        assert r.status == 403 and (outside / "secret.txt").read_text() == SECRET
        r = await server.post("/api/contents", json={"copy_from": "leak.txt"})
        assert r.status == 403
        r = await server.patch("/api/contents/kept.txt", json={"path": "outlink/kept.txt"})
        assert r.status == 403 and (root / "kept.txt").exists()
        r = await server.delete("/api/contents/outlink/secret.txt")
        assert r.status == 403 and (outside / "secret.txt").exists()
        r = await server.post("/api/contents/outlink", json={"type": "file"})
        assert r.status == 403 and list(outside.iterdir()) == [outside / "secret.txt"]


async def test_links_out_of_the_root_can_be_allowed(contents_server, root, outside):
    (root / "data").symlink_to(outside, target_is_directory=True)
    async with contents_server(follow_symlinks_outside_root=True) as server:
        listing = await (await server.get("/api/contents")).json()
        assert [c["name"] for c in listing["content"]] == ["data"]
        model = await (await server.get("/api/contents/data/secret.txt")).json()
        assert model["content"] == SECRET and model["path"] == "data/secret.txt"


async def test_links_inside_the_root_work(contents_server, root):
    (root / "real").mkdir()
    (root / "real" / "f.txt").write_text("inside")
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    (root / "broken").symlink_to(root / "nowhere")
    (root / "loop").symlink_to(root / "loop")
    async with contents_server() as server:
        listing = await (await server.get("/api/contents")).json()
        assert sorted(c["name"] for c in listing["content"]) == ["alias", "real"]  # broken links are left out
        model = await (await server.get("/api/contents/alias/f.txt")).json()
        assert model["content"] == "inside" and model["path"] == "alias/f.txt"
        r = await server.get("/api/contents/loop")
        assert r.status in (400, 404)


async def test_hidden_files_are_neither_listed_nor_served(contents_server, root):
    (root / ".secret").write_text("hidden")
    (root / ".hidden_dir").mkdir()
    (root / ".hidden_dir" / "f.txt").write_text("hidden too")
    (root / "visible.txt").write_text("ok")
    (root / "alias.txt").symlink_to(root / ".secret")
    async with contents_server() as server:
        listing = await (await server.get("/api/contents")).json()
        assert [c["name"] for c in listing["content"]] == ["visible.txt"]
        for path in ("/api/contents/.secret", "/api/contents/.hidden_dir/f.txt", "/api/contents/.hidden_dir",
                     "/files/.secret", "/api/contents/alias.txt", "/api/contents/.nothing_here"):
            r = await server.get(path)
            assert r.status == 404, path
            assert "hidden" not in (await r.text()).replace(path, "").replace("hidden_dir", "")
        r = await server.put("/api/contents/.new", json={"type": "file", "format": "text", "content": "x"})
        assert r.status == 400 and "allow_hidden" in (await r.json())["message"]
        assert not (root / ".new").exists()
        r = await server.put("/api/contents/.hidden_dir/f.txt", json={"type": "file", "format": "text", "content": "x"})
        assert r.status == 400 and (root / ".hidden_dir" / "f.txt").read_text() == "hidden too"
        assert (await server.delete("/api/contents/.secret")).status == 400 and (root / ".secret").exists()
        assert (await server.patch("/api/contents/visible.txt", json={"path": ".visible"})).status == 400
        assert (await server.patch("/api/contents/.secret", json={"path": "public"})).status == 400
        assert (await server.post("/api/contents", json={"copy_from": ".secret"})).status == 400
        assert (await server.post("/api/contents/.hidden_dir", json={"type": "file"})).status == 400
        r = await server.put("/api/contents/named.txt", json={"type": "file", "format": "text", "content": "x",
                                                               "path": ".elsewhere/named.txt"})
        assert r.status == 400 and "allow_hidden" in (await r.json())["message"]
        assert sorted(p.name for p in root.iterdir()) == [".hidden_dir", ".secret", "alias.txt", "visible.txt"]


async def test_checkpoints_of_a_hidden_file_are_not_found(contents_server, root):
    """Listing is a read: like GET of the file, a 404 that does not reveal it (it said "cannot write '.x'")."""
    (root / ".x").write_text("hidden")
    async with contents_server() as server:
        r = await server.get("/api/contents/.x/checkpoints")
        body = await r.json()
        assert r.status == 404 and "write" not in body["message"], body
        assert body == (await (await server.get("/api/contents/.nothing/checkpoints")).json()) | {
            "message": body["message"]}
        r = await server.post("/api/contents/.x/checkpoints")
        assert r.status == 400 and "cannot write '.x'" in (await r.json())["message"]
        assert not (root / ".ipynb_checkpoints").exists()
    async with contents_server(allow_hidden=True) as server:
        assert (await server.post("/api/contents/.x/checkpoints")).status == 201
        listed = await (await server.get("/api/contents/.x/checkpoints")).json()
        assert [c["id"] for c in listed] == ["checkpoint"]


async def test_hidden_files_when_allowed(contents_server, root):
    (root / ".secret").write_text("hidden")
    async with contents_server(allow_hidden=True) as server:
        listing = await (await server.get("/api/contents")).json()
        assert [c["name"] for c in listing["content"]] == [".secret"]
        assert (await (await server.get("/api/contents/.secret")).json())["content"] == "hidden"
        r = await server.put("/api/contents/.new", json={"type": "file", "format": "text", "content": "x"})
        assert r.status == 201 and (root / ".new").read_text() == "x"
        r = await server.put("/api/contents/named.txt", json={"type": "file", "format": "text", "content": "y",
                                                               "path": ".elsewhere/named.txt"})
        assert r.status == 201 and (root / "named.txt").read_text() == "y"


@pytest.mark.parametrize("swapped", ["file", "directory"])
def test_a_link_swapped_in_after_the_path_check_is_not_read(tmp_path, swapped):
    """resolve() checks realpath, then the file is opened: a link swapped in between must not be followed
    out of the root (O_NOFOLLOW on the file, the opened fd's /proc path checked for the directories)."""
    from himalia import BadRequest, Forbidden
    from himalia_contents.config import ContentsConfig
    from himalia_contents.filesystem import FileContents
    from himalia_contents.paths import Resolved

    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    if swapped == "file":
        (root / "secret.txt").symlink_to(outside / "secret.txt")
        checked = Resolved("secret.txt", str(root / "secret.txt"))
    else:
        (root / "d").symlink_to(outside)
        checked = Resolved("d/secret.txt", str(root / "d" / "secret.txt"))

    class Raced:
        """What resolve() returned before the swap: the path as it was when checked."""

        def resolve(self, path, write=False):
            return checked

    contents = FileContents(ContentsConfig(), str(root))
    contents.resolver = Raced()
    with pytest.raises((Forbidden, BadRequest)) as refused:
        contents._get(checked.api_path)
    assert checked.api_path in refused.value.message


@pytest.mark.parametrize("swapped", ["file", "directory"])
def test_files_serves_the_checked_file_not_a_link_swapped_in_later(tmp_path, swapped):
    """`/files/` streams what `open_local_file` opened and checked; a link swapped in after the check
    is refused there, and the path it hands out names the open file itself, not the path again."""
    from himalia import BadRequest, Forbidden
    from himalia_contents.config import ContentsConfig
    from himalia_contents.filesystem import FileContents
    from himalia_contents.paths import Resolved

    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (root / "d").mkdir()
    (root / "d" / "secret.txt").write_text("mine")
    contents = FileContents(ContentsConfig(), str(root))
    f, served = contents._open_local_file("d/secret.txt")
    with f:
        # the file is swapped for a link out of the root after it was opened: what is served stays ours
        (root / "d" / "secret.txt").unlink()
        (root / "d" / "secret.txt").symlink_to(outside / "secret.txt")
        assert open(served).read() == "mine"
    if swapped == "file":
        checked = Resolved("d/secret.txt", str(root / "d" / "secret.txt"))
    else:
        (root / "e").symlink_to(outside)
        checked = Resolved("e/secret.txt", str(root / "e" / "secret.txt"))

    class Raced:
        def resolve(self, path, write=False):
            return checked

    contents.resolver = Raced()
    with pytest.raises((Forbidden, BadRequest)) as refused:
        contents._open_local_file(checked.api_path)
    assert checked.api_path in refused.value.message


def b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


async def test_a_chunked_upload_never_writes_through_a_link_planted_at_its_partial_name(
        contents_server, root, outside):
    """The partial file's name is predictable (`.big.bin.himalia-upload`): a link planted there was
    followed by chunk 1's open() and overwrote its target outside the root (filesystem.py _save_chunk)."""
    (root / ".big.bin.himalia-upload").symlink_to(outside / "secret.txt")
    (root / "big.bin").write_bytes(b"old")
    (root / "big.bin").chmod(0o640)
    async with contents_server() as server:
        for number, piece in ((1, b"first "), (-1, b"last")):
            r = await server.put("/api/contents/big.bin", json={"type": "file", "format": "base64",
                                                                "chunk": number, "content": b64(piece)})
            assert r.status == 200, await r.text()
            if number == 1:  # a fresh private file replaced the link, not its target
                partial = root / ".big.bin.himalia-upload"
                assert not partial.is_symlink() and (partial.stat().st_mode & 0o777) == 0o600
    assert (outside / "secret.txt").read_text() == SECRET
    assert (root / "big.bin").read_bytes() == b"first last"
    assert (root / "big.bin").stat().st_mode & 0o777 == 0o640
    assert not (root / ".big.bin.himalia-upload").exists()


@pytest.mark.parametrize("number", [2, -1])
async def test_a_link_swapped_in_mid_upload_is_refused(contents_server, root, outside, number):
    async with contents_server() as server:
        r = await server.put("/api/contents/big.bin", json={"type": "file", "format": "base64", "chunk": 1,
                                                            "content": b64(b"first ")})
        assert r.status in (200, 201), await r.text()
        partial = root / ".big.bin.himalia-upload"
        partial.unlink()
        partial.symlink_to(outside / "secret.txt")
        r = await server.put("/api/contents/big.bin", json={"type": "file", "format": "base64",
                                                            "chunk": number, "content": b64(b"more")})
        assert r.status == 409, await r.text()
        message = (await r.json())["message"]
        assert "big.bin" in message and "symbolic link" in message and "chunk 1" in message
    assert (outside / "secret.txt").read_text() == SECRET
    assert not (root / "big.bin").exists()
