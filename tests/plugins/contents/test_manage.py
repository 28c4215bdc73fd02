"""POST (untitled, copy), PATCH (rename, move), DELETE, and checkpoints, named as jupyter_server names them."""

from __future__ import annotations

import errno
import json
import os

import pytest

NB = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


async def names(server, path="") -> list[str]:
    model = await (await server.get(f"/api/contents/{path}")).json()
    return sorted(c["name"] for c in model["content"])


async def test_new_untitled_names(contents_server, root):
    (root / "d").mkdir()
    async with contents_server() as server:
        created = []
        for body in ({"type": "notebook"}, {"type": "notebook"}, {"ext": ".ipynb"}, {"type": "file"},
                     {"type": "file", "ext": ".py"}, {"type": "file"}, {"type": "directory"},
                     {"type": "directory"}, {"type": "file", "ext": ".tar.gz"}):
            r = await server.post("/api/contents/d", json=body)
            assert r.status == 201, await r.text()
            model = await r.json()
            assert r.headers["Location"] == "/api/contents/" + model["path"].replace(" ", "%20")
            created.append(model["path"])
        assert created == ["d/Untitled.ipynb", "d/Untitled1.ipynb", "d/Untitled2.ipynb", "d/untitled",
                           "d/untitled.py", "d/untitled1", "d/Untitled Folder", "d/Untitled Folder 1",
                           "d/untitled.tar.gz"]
        assert json.loads((root / "d" / "Untitled.ipynb").read_text())["nbformat"] == 4
        assert (root / "d" / "Untitled Folder").is_dir()
        r = await server.post("/api/contents")  # no body: an untitled file in the root
        assert r.status == 201 and (await r.json())["path"] == "untitled"
        r = await server.post("/api/contents/nowhere", json={"type": "file"})
        assert r.status == 404 and "nowhere" in (await r.json())["message"]
        r = await server.post("/api/contents/d", json={"type": "pipe"})
        assert r.status == 400
        r = await server.post("/api/contents/d/untitled.py", json={"type": "file"})
        assert r.status == 400 and "PUT" in (await r.json())["message"]


async def test_copy_names_and_destinations(contents_server, root):
    (root / "nb.ipynb").write_text(json.dumps(NB))
    (root / "a.tar.gz").write_bytes(b"gz")
    (root / "dest").mkdir()
    (root / "folder").mkdir()
    (root / "folder" / "inner.txt").write_text("in")
    async with contents_server() as server:
        paths = []
        for source, target in (("nb.ipynb", ""), ("nb.ipynb", ""), ("nb-Copy1.ipynb", ""),
                               ("a.tar.gz", ""), ("nb.ipynb", "dest"), ("folder", "dest")):
            r = await server.post(f"/api/contents/{target}", json={"copy_from": source})
            assert r.status == 201, await r.text()
            paths.append((await r.json())["path"])
        assert paths == ["nb-Copy1.ipynb", "nb-Copy2.ipynb", "nb-Copy3.ipynb", "a-Copy1.tar.gz",
                         "dest/nb.ipynb", "dest/folder"]
        assert (root / "dest" / "folder" / "inner.txt").read_text() == "in"
        assert (root / "nb-Copy1.ipynb").read_bytes() == (root / "nb.ipynb").read_bytes()
        r = await server.post("/api/contents/dest", json={"copy_from": "missing.txt"})
        assert r.status == 404 and "missing.txt" in (await r.json())["message"]
        r = await server.post("/api/contents/no/such/dir", json={"copy_from": "nb.ipynb"})
        assert r.status == 404


async def test_rename_and_move(contents_server, root):
    (root / "a.txt").write_text("A")
    (root / "b.txt").write_text("B")
    (root / "sub").mkdir()
    async with contents_server() as server:
        await server.post("/api/contents/a.txt/checkpoints")
        r = await server.patch("/api/contents/a.txt", json={"path": "sub/moved.txt"})
        assert r.status == 200
        model = await r.json()
        assert model["path"] == "sub/moved.txt" and model["name"] == "moved.txt"
        assert r.headers["Location"] == "/api/contents/sub/moved.txt"
        assert (root / "sub" / "moved.txt").read_text() == "A" and not (root / "a.txt").exists()
        # its checkpoint moved along
        assert len(await (await server.get("/api/contents/sub/moved.txt/checkpoints")).json()) == 1
        r = await server.patch("/api/contents/b.txt", json={"path": "sub/moved.txt"})
        assert r.status == 409 and "sub/moved.txt" in (await r.json())["message"]
        assert (root / "b.txt").read_text() == "B"
        r = await server.patch("/api/contents/ghost.txt", json={"path": "g.txt"})
        assert r.status == 404 and "ghost.txt" in (await r.json())["message"]
        r = await server.patch("/api/contents/b.txt", json={"path": "nowhere/b.txt"})
        assert r.status == 404
        r = await server.patch("/api/contents/b.txt")
        assert r.status == 400
        r = await server.patch("/api/contents/sub", json={"path": "renamed"})
        assert r.status == 200 and (root / "renamed" / "moved.txt").exists()


async def test_delete_files_and_directories(contents_server, root):
    (root / "f.txt").write_text("x")
    (root / "empty").mkdir()
    (root / "only_checkpoints" / ".ipynb_checkpoints").mkdir(parents=True)
    (root / "full").mkdir()
    (root / "full" / "x.txt").write_text("x")
    async with contents_server() as server:
        await server.post("/api/contents/f.txt/checkpoints")
        r = await server.delete("/api/contents/f.txt")
        assert r.status == 204 and not (root / "f.txt").exists()
        assert not (root / ".ipynb_checkpoints" / "f-checkpoint.txt").exists()
        assert (await server.delete("/api/contents/empty")).status == 204
        assert (await server.delete("/api/contents/only_checkpoints")).status == 204
        r = await server.delete("/api/contents/full")
        assert r.status == 400
        message = (await r.json())["message"]
        assert "full" in message and "always_delete_dir" in message
        assert (root / "full" / "x.txt").exists()
        r = await server.delete("/api/contents/f.txt")
        assert r.status == 404
        r = await server.delete("/api/contents")
        assert r.status == 400 and (root).exists()
    async with contents_server(always_delete_dir=True) as server:
        assert (await server.delete("/api/contents/full")).status == 204
        assert not (root / "full").exists()


async def test_delete_to_trash(contents_server, root, tmp_path, monkeypatch):
    plat = pytest.importorskip("send2trash.plat_other")
    xdg = str(tmp_path / "xdg").encode()  # send2trash reads $XDG_DATA_HOME once, at import
    monkeypatch.setattr(plat, "XDG_DATA_HOME", xdg)
    monkeypatch.setattr(plat, "HOMETRASH_B", xdg + b"/Trash")
    monkeypatch.setattr(plat, "HOMETRASH", (tmp_path / "xdg" / "Trash").as_posix())
    (root / "full").mkdir()
    (root / "full" / "x.txt").write_text("trash me")
    async with contents_server(delete_to_trash=True) as server:
        r = await server.delete("/api/contents/full")
        assert r.status == 204 and not (root / "full").exists()
    trashed = list((tmp_path / "xdg").rglob("x.txt"))
    assert len(trashed) == 1 and trashed[0].read_text() == "trash me"


async def test_delete_a_link_removes_the_link_not_its_target(contents_server, root):
    (root / "target.txt").write_text("stay")
    (root / "link.txt").symlink_to("target.txt")
    async with contents_server() as server:
        assert (await server.delete("/api/contents/link.txt")).status == 204
    assert not (root / "link.txt").is_symlink() and (root / "target.txt").read_text() == "stay"


async def test_checkpoints_create_list_restore_delete(contents_server, root):
    (root / "d").mkdir()
    (root / "d" / "nb.ipynb").write_text(json.dumps(NB))
    async with contents_server() as server:
        base = "/api/contents/d/nb.ipynb/checkpoints"
        assert await (await server.get(base)).json() == []
        r = await server.post(base)
        assert r.status == 201
        checkpoint = await r.json()
        assert checkpoint["id"] == "checkpoint" and checkpoint["last_modified"].endswith("Z")
        assert r.headers["Location"] == "/api/contents/d/nb.ipynb/checkpoints/checkpoint"
        stored = root / "d" / ".ipynb_checkpoints" / "nb-checkpoint.ipynb"
        assert stored.read_text() == json.dumps(NB)
        assert await (await server.get(base)).json() == [checkpoint]
        # the checkpoint directory is hidden from listings
        assert await names(server, "d") == ["nb.ipynb"]
        (root / "d" / "nb.ipynb").write_text("changed")
        r = await server.post(f"{base}/checkpoint")
        assert r.status == 204 and (root / "d" / "nb.ipynb").read_text() == json.dumps(NB)
        r = await server.post(f"{base}/other")
        assert r.status == 404 and "d/nb.ipynb@other" in (await r.json())["message"]
        assert (await server.delete(f"{base}/checkpoint")).status == 204
        assert not stored.exists()
        assert (await server.delete(f"{base}/checkpoint")).status == 404
        r = await server.post("/api/contents/d/missing.ipynb/checkpoints")
        assert r.status == 404
        r = await server.post("/api/contents/d/checkpoints")  # a directory has no checkpoints
        assert r.status in (400, 404)


async def test_checkpoints_are_shared_with_jupyter_servers_layout(contents_server, root):
    """A checkpoint jupyter_server left behind is found and restored."""
    (root / "nb.ipynb").write_text("current")
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "nb-checkpoint.ipynb").write_text("from jupyter_server")
    async with contents_server() as server:
        assert [c["id"] for c in await (await server.get("/api/contents/nb.ipynb/checkpoints")).json()] == ["checkpoint"]
        assert (await server.post("/api/contents/nb.ipynb/checkpoints/checkpoint")).status == 204
        assert (root / "nb.ipynb").read_text() == "from jupyter_server"


async def test_trust_signs_a_notebook(contents_server, root):
    nb = {"cells": [{"cell_type": "code", "execution_count": 1, "id": "a", "metadata": {}, "source": "x",
                     "outputs": [{"output_type": "display_data", "metadata": {},
                                  "data": {"text/html": "<script>1</script>"}}]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (root / "nb.ipynb").write_text(json.dumps(nb))
    async with contents_server() as server:
        before = await (await server.get("/api/contents/nb.ipynb")).json()
        assert before["content"]["cells"][0]["metadata"]["trusted"] is False
        assert (await server.post("/api/contents/nb.ipynb/trust")).status == 201
        after = await (await server.get("/api/contents/nb.ipynb")).json()
        assert after["content"]["cells"][0]["metadata"]["trusted"] is True


def tree_of(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


async def test_copying_a_directory_into_itself_is_refused(contents_server, root):
    """Was an endless copytree (ENAMETOOLONG after ~1500 levels) and a 500 (filesystem.py _copy)."""
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "a.txt").write_text("a")
    before = tree_of(root)
    async with contents_server() as server:
        for dest in ("dir/sub", "dir"):
            r = await server.post(f"/api/contents/{dest}", json={"copy_from": "dir"})
            assert r.status == 400, await r.text()
            message = (await r.json())["message"]
            assert "'dir'" in message and f"'{dest}/dir" in message, message
    assert tree_of(root) == before


async def test_a_failed_directory_copy_leaves_nothing(contents_server, root, monkeypatch):
    """A directory is copied into a hidden temp directory and renamed into place only when complete."""
    import shutil

    (root / "dir").mkdir()
    for i in range(5):
        (root / "dir" / f"f{i}.txt").write_text(str(i))
    before = tree_of(root)
    real_copyfileobj = shutil.copyfileobj
    copied = []

    def disk_full_after_three(src, dst, *args, **kwargs):
        if len(copied) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        copied.append(src)
        return real_copyfileobj(src, dst, *args, **kwargs)

    async with contents_server() as server:
        monkeypatch.setattr(shutil, "copyfileobj", disk_full_after_three)
        r = await server.post("/api/contents", json={"copy_from": "dir"})
        monkeypatch.setattr(shutil, "copyfileobj", real_copyfileobj)
        assert r.status == 507, await r.text()
        assert copied, "the copy never started"
        assert tree_of(root) == before
        r = await server.post("/api/contents", json={"copy_from": "dir"})
        assert r.status == 201
        assert (await r.json())["path"] == "dir-Copy1"
        assert sorted(os.listdir(root / "dir-Copy1")) == [f"f{i}.txt" for i in range(5)]


async def test_moving_a_directory_into_itself_is_refused(contents_server, root):
    """shutil.move raised shutil.Error (no errno): a 500 "filesystem error on 'dir': None" (_rename)."""
    (root / "dir" / "sub").mkdir(parents=True)
    before = tree_of(root)
    async with contents_server() as server:
        for dest in ("dir/sub/dir", "dir/inner"):
            r = await server.patch("/api/contents/dir", json={"path": dest})
            assert r.status == 400, await r.text()
            message = (await r.json())["message"]
            assert "None" not in message and "'dir'" in message and repr(dest) in message, message
    assert tree_of(root) == before


def test_os_errors_without_errno_name_the_error():
    """An OSError with no errno or strerror (shutil.Error) still says what went wrong."""
    import shutil

    from himalia import ApiError
    from himalia_contents.models import os_errors

    with pytest.raises(ApiError) as raised, os_errors("dir"):
        raise shutil.Error("Cannot move a directory into itself")
    assert "None" not in raised.value.message and "into itself" in raised.value.message
