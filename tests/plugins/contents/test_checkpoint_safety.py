"""Checkpoints pass the same confinement as every other path: a `.ipynb_checkpoints` directory (or a
checkpoint in it) that is a link out of the root is never followed to write, delete, read or move
anything outside; checkpoints of files in read-only directories go to a private per-user directory,
never to a shared one another local user could plant or read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest

NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
OUTSIDE = "outside content"


@pytest.fixture
def outside(tmp_path):
    path = tmp_path / "outside"
    path.mkdir()
    return path


@pytest.fixture
def linked_dir(root, outside):
    """`.ipynb_checkpoints` is a link to a directory outside the root holding a "checkpoint" there."""
    (outside / "nb-checkpoint.ipynb").write_text(OUTSIDE)
    (root / ".ipynb_checkpoints").symlink_to(outside, target_is_directory=True)
    (root / "nb.ipynb").write_text(json.dumps(NOTEBOOK))


@pytest.fixture
def linked_file(root, outside):
    """A real `.ipynb_checkpoints` whose checkpoint file is a link to a file outside the root."""
    (outside / "secret.ipynb").write_text(OUTSIDE)
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "nb-checkpoint.ipynb").symlink_to(outside / "secret.ipynb")
    (root / "nb.ipynb").write_text(json.dumps(NOTEBOOK))


def refused(status: int, message: str) -> bool:
    return status == 403 and "nb.ipynb" in message and "outside the root" in message


async def test_restoring_never_copies_an_outside_file_in(contents_server, root, outside, linked_dir):
    async with contents_server() as server:
        r = await server.post("/api/contents/nb.ipynb/checkpoints/checkpoint")
        assert refused(r.status, (await r.json())["message"]), await r.text()
        r = await server.get("/api/contents/nb.ipynb/checkpoints")
        assert refused(r.status, (await r.json())["message"]), await r.text()
    assert json.loads((root / "nb.ipynb").read_text()) == NOTEBOOK


async def test_restoring_never_reads_through_a_linked_checkpoint(contents_server, root, outside, linked_file):
    async with contents_server() as server:
        r = await server.post("/api/contents/nb.ipynb/checkpoints/checkpoint")
        assert refused(r.status, (await r.json())["message"]), await r.text()
    assert json.loads((root / "nb.ipynb").read_text()) == NOTEBOOK


async def test_saving_and_checkpointing_never_write_outside(contents_server, root, outside, linked_dir):
    async with contents_server() as server:
        r = await server.post("/api/contents/nb.ipynb/checkpoints")
        assert refused(r.status, (await r.json())["message"]), await r.text()
        notebook = dict(NOTEBOOK, metadata={"saved": True})
        (outside / "nb-checkpoint.ipynb").unlink()
        r = await server.put("/api/contents/nb.ipynb", json={"type": "notebook", "content": notebook})
        assert r.status == 200, await r.text()  # the save itself is fine: only its checkpoint is not kept
        assert json.loads((root / "nb.ipynb").read_text())["metadata"] == {"saved": True}
    assert os.listdir(outside) == []


async def test_deleting_never_deletes_outside(contents_server, root, outside, linked_dir):
    async with contents_server() as server:
        r = await server.delete("/api/contents/nb.ipynb/checkpoints/checkpoint")
        assert refused(r.status, (await r.json())["message"]), await r.text()
        r = await server.delete("/api/contents/nb.ipynb")
        assert r.status in (204, 403), await r.text()
    assert (outside / "nb-checkpoint.ipynb").read_text() == OUTSIDE


async def test_renaming_never_moves_an_outside_checkpoint_in(contents_server, root, outside, linked_dir):
    (root / "sub").mkdir()
    async with contents_server() as server:
        r = await server.patch("/api/contents/nb.ipynb", json={"path": "sub/nb.ipynb"})
        assert r.status in (200, 403), await r.text()
    assert (outside / "nb-checkpoint.ipynb").read_text() == OUTSIDE
    assert not (root / "sub" / ".ipynb_checkpoints" / "nb-checkpoint.ipynb").exists()


async def test_a_link_inside_the_root_is_still_followed(contents_server, root):
    """Confinement, not a ban on links: a checkpoint directory linked elsewhere inside the root works."""
    (root / "store").mkdir()
    (root / ".ipynb_checkpoints").symlink_to(root / "store", target_is_directory=True)
    (root / "a.txt").write_text("one")
    async with contents_server() as server:
        assert (await server.post("/api/contents/a.txt/checkpoints")).status == 201
        (root / "a.txt").write_text("two")
        assert (await server.post("/api/contents/a.txt/checkpoints/checkpoint")).status == 204
    assert (root / "a.txt").read_text() == "one" and (root / "store" / "a-checkpoint.txt").exists()


# --- files in directories the server cannot write: a private checkpoint directory -------------


@pytest.fixture
def locked(root, tmp_path, monkeypatch):
    """`root/ro` is immutable (root itself cannot add entries), holding a writable `a.txt`; the temp
    directory is this test's own."""
    chattr = shutil.which("chattr")
    ro = root / "ro"
    ro.mkdir()
    (ro / "a.txt").write_text("mine")
    if os.geteuid() != 0 or chattr is None or subprocess.run([chattr, "+i", str(ro)],
                                                             capture_output=True).returncode != 0:
        if os.geteuid() == 0:
            pytest.skip("needs chattr on a filesystem that supports it")
        ro.chmod(0o555)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield tmp
    if os.geteuid() == 0:
        subprocess.run([chattr, "-i", str(ro)], check=True)
    else:
        ro.chmod(0o755)


async def test_a_planted_shared_checkpoint_is_never_used(contents_server, root, locked):
    """Another local user could pre-create $TMPDIR/jupyter_checkpoints/ro/, read the copies and plant a
    checkpoint that a restore would then copy over the user's file."""
    shared = locked / "jupyter_checkpoints" / "ro"
    shared.mkdir(parents=True)
    (shared / "a-checkpoint.txt").write_text("planted")
    os.chmod(shared, 0o777)
    async with contents_server() as server:
        listed = await (await server.get("/api/contents/ro/a.txt/checkpoints")).json()
        assert listed == []
        r = await server.post("/api/contents/ro/a.txt/checkpoints")
        assert r.status == 201, await r.text()
        (root / "ro" / "a.txt").write_text("changed")
        r = await server.post("/api/contents/ro/a.txt/checkpoints/checkpoint")
        assert r.status == 204, await r.text()
    assert (root / "ro" / "a.txt").read_text() == "mine"
    assert (shared / "a-checkpoint.txt").read_text() == "planted" and os.listdir(shared) == ["a-checkpoint.txt"]
    private = locked / f"himalia-checkpoints-{os.geteuid()}"
    assert private.stat().st_mode & 0o777 == 0o700
    assert (private / "ro" / "a-checkpoint.txt").read_text() == "mine"


@pytest.mark.parametrize("how", ["other owner", "open mode", "link"])
async def test_a_private_directory_that_is_not_private_is_refused(contents_server, root, locked, tmp_path, how):
    private = locked / f"himalia-checkpoints-{os.geteuid()}"
    if how == "link":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        private.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    else:
        private.mkdir(mode=0o700)
        if how == "open mode":
            os.chmod(private, 0o777)
        elif os.geteuid() == 0:
            os.chown(private, 65534, 65534)
        else:
            pytest.skip("only root can give a directory away")
    async with contents_server() as server:
        r = await server.post("/api/contents/ro/a.txt/checkpoints")
        assert r.status == 403, await r.text()
        message = (await r.json())["message"]
        assert str(private) in message and "ro/a.txt" in message, message
    assert not any(p.name.startswith("a-checkpoint") for p in (tmp_path / "elsewhere").glob("**/*")) \
        if how == "link" else not (private / "ro").exists()
