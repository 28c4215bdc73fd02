"""Log forging: a client's string never starts a line of its own in the server's log (issue 20, item 7)."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import yarl

from himalia.testing import serve_process

FORGED = "[W 12:00:00 aiohttp.access] 200 GET /api/contents/forged (127.0.0.1) 1.00ms"
ESCAPED = "%0A" + FORGED.replace(" ", "%20").replace("[", "%5B").replace("]", "%5D")


async def get_raw(url: str) -> int:
    async with aiohttp.ClientSession() as c:
        async with c.get(yarl.URL(url, encoded=True)) as r:  # sent as written: %0A stays %0A
            return r.status


def test_a_newline_in_the_path_cannot_forge_a_log_line(tmp_path):
    """Unauthenticated, through a real `himalia serve` and its own logging set-up."""
    with serve_process("--root-dir", str(tmp_path), "--token", "t") as server:
        status = asyncio.run(asyncio.wait_for(get_raw(server.url_for("/x" + ESCAPED)), 30))
        assert status == 401
        deadline = time.monotonic() + 30
        while not any("401 GET /x" in line for line in server.output):  # the access line, however written
            assert time.monotonic() < deadline, "\n".join(server.output)
            time.sleep(0.05)  # another process's output: no event to wait on
    assert not any(line.startswith("[W 12:00:00") for line in server.output), "\n".join(server.output)
    assert any("401 GET /x%0A%5BW" in line for line in server.output), "\n".join(server.output)


async def test_the_access_log_and_error_log_keep_the_path_escaped(himalia_server, caplog):
    caplog.set_level(logging.DEBUG)
    async with himalia_server(config={"plugins": {"auth": {"token": "t"}}}) as server:
        assert await asyncio.wait_for(get_raw(server.url_for("/x" + ESCAPED)), 30) == 401
        assert await asyncio.wait_for(get_raw(server.url_for("/x%1B%5B31mred")), 30) == 401
    lines = [r.getMessage() for r in caplog.records if r.name.endswith("access")]
    assert any("/x%0A%5BW%2012:00:00" in line for line in lines), lines
    assert any("/x%1B%5B31mred" in line for line in lines), lines
    assert not any("\n" in r.getMessage() or "\x1b" in r.getMessage() for r in caplog.records)
