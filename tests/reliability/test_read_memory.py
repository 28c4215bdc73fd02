"""Reading a large file through the contents API costs the server about a piece of memory, not
several copies of the file: it was about 4x the file's size for text, 6x for base64 (jupyter_server:
5x and 6.5x; 8x for text with wide characters). Measured on a real `himalia serve` with its peak
resident memory (VmHWM) before and after one read."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest

from himalia.testing import serve_process

from reliability_kit import isolated_env

TOKEN = "read-memory-token"
SIZE = 64 * 1024 * 1024


def kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
@pytest.mark.parametrize("name, params", [("big.txt", {}), ("big.bin", {}), ("big.txt", {"format": "base64"})])
async def test_a_large_read_costs_far_less_than_the_file(tmp_path, name, params):
    root = tmp_path / "root"
    root.mkdir()
    line = "0123456789 abcdefghij é ABCDEFGHIJKLMNOPQRSTUVWXYZ\n".encode()
    (root / "big.txt").write_bytes(line * (SIZE // len(line)))
    (root / "big.bin").write_bytes(os.urandom(SIZE))
    with serve_process("--root-dir", str(root), "--token", TOKEN, env=isolated_env(tmp_path)) as server:
        async with aiohttp.ClientSession(headers={"Authorization": f"token {TOKEN}"}) as client:
            async with asyncio.timeout(120):
                async with client.get(server.url_for("/api/contents")) as r:  # warm: imports, first model
                    assert r.status == 200
                before = kb(server.process.pid, "VmRSS")
                received = 0
                async with client.get(server.url_for(f"/api/contents/{name}"), params=params) as r:
                    assert r.status == 200
                    async for piece in r.content.iter_chunked(1 << 20):
                        received += len(piece)
                grown = (kb(server.process.pid, "VmHWM") - before) * 1024
    assert received > SIZE
    assert grown < SIZE // 2, f"reading {name} ({SIZE >> 20} MB) grew the server by {grown >> 20} MB"
