"""Chunked uploads are identified: chunk 1 starts one, each later chunk must continue the upload in
progress of that file, in order, and anything else is a 409 naming the file. Two clients uploading
one file at once used to both get 200s while the file kept chunks of both (or only the last), and a
lone chunk -1 replaced the file with that chunk alone."""

from __future__ import annotations

import base64

import pytest


def chunk(number: int, data: bytes) -> dict:
    return {"type": "file", "format": "base64", "chunk": number, "content": base64.b64encode(data).decode()}


async def put(server, number: int, data: bytes, path: str = "up.bin"):
    r = await server.put(f"/api/contents/{path}", json=chunk(number, data))
    body = await r.json()
    return r.status, body.get("message", "")


async def test_a_second_upload_of_the_same_file_is_refused_while_one_is_in_progress(contents_server, root):
    (root / "up.bin").write_bytes(b"old")
    async with contents_server() as server:
        assert (await put(server, 1, b"A1"))[0] == 200
        status, message = await put(server, 1, b"B1")
        assert status == 409 and "up.bin" in message and "in progress" in message, message
        assert (await put(server, 2, b"A2"))[0] == 200
        status, message = await put(server, 2, b"B2")
        assert status == 409 and "up.bin" in message and "chunk 3" in message, message
        assert (await put(server, -1, b"A3"))[0] == 200
    assert (root / "up.bin").read_bytes() == b"A1A2A3"


@pytest.mark.parametrize("numbers", [(-1,), (2,), (2, -1), (1, 3), (1, -1, -1), (1, -1, 2)])
async def test_a_chunk_that_does_not_continue_an_upload_is_409_and_changes_nothing(contents_server, root, numbers):
    (root / "up.bin").write_bytes(b"old")
    async with contents_server() as server:
        statuses = []
        for number in numbers:
            statuses.append(await put(server, number, f"<{number}>".encode()))
        *earlier, (status, message) = statuses
        assert status == 409 and "up.bin" in message and "chunk 1" in message, statuses
    expected = b"<1><-1>" if numbers[:2] == (1, -1) else b"old"
    assert (root / "up.bin").read_bytes() == expected


async def test_an_idle_upload_may_be_started_over(contents_server, root):
    """With `upload_takeover_after = 0`, an upload whose client went away is taken over at once."""
    async with contents_server(upload_takeover_after=0) as server:
        assert (await put(server, 1, b"A1"))[0] == 201
        assert (await put(server, 1, b"B1"))[0] == 201
        assert (await put(server, -1, b"B2"))[0] == 201
    assert (root / "up.bin").read_bytes() == b"B1B2"


async def test_uploads_in_progress_are_bounded_server_wide(contents_server, root, monkeypatch):
    """Each upload in progress holds state and a partial file; there was no bound on how many."""
    import himalia_contents.filesystem as filesystem

    monkeypatch.setattr(filesystem, "MAX_UPLOADS", 2)
    async with contents_server() as server:
        for name in ("a.bin", "b.bin"):
            assert (await put(server, 1, b"1", name))[0] == 201
        status, message = await put(server, 1, b"1", "c.bin")
        assert status == 503 and "c.bin" in message, message
        assert (await put(server, -1, b"2", "a.bin"))[0] == 201  # one ends: room for another
        assert (await put(server, 1, b"1", "c.bin"))[0] == 201
    assert not (root / "c.bin").exists() and (root / "a.bin").read_bytes() == b"12"
