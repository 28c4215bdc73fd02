"""REST figures: requests/s on cheap and expensive GETs, and saving/loading a 5 MB notebook."""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from . import load
from .servers import Server
from .settings import Settings


class Unsupported(Exception):
    """The server does not answer this figure's request (yet); the row shows why."""


async def check_200(server: Server, path: str) -> None:
    assert server.http is not None
    async with server.http.get(server.base + path) as r:
        body = await r.read()
        if r.status != 200:
            raise Unsupported(f"GET {path} answered {r.status}: {body[:200].decode(errors='replace')}")


async def _rps(server: Server, s: Settings, path: str, concurrency: int, duration: float) -> dict[str, Any]:
    # warm-up: sequential requests, so none is still being served when the measured window opens
    deadline = time.perf_counter() + 1.0
    for _ in range(50):
        await check_200(server, path)
        if time.perf_counter() > deadline:
            break
    url = server.base + path
    result = await load.measure(url, server.auth, concurrency, duration, s.python_load)
    return {"rps": result.rps, "requests": result.requests, "errors": result.errors, "tool": result.tool}


async def status(server: Server, s: Settings) -> dict[str, Any]:
    return await _rps(server, s, "/api/status", 16, s.pick(3.0, 1.0))


async def kernelspecs(server: Server, s: Settings) -> dict[str, Any]:
    return await _rps(server, s, "/api/kernelspecs", 16, s.pick(3.0, 1.0))


async def contents(server: Server, s: Settings) -> dict[str, Any]:
    # jupyter_server answers ~3/s here, so a longer window and fewer connections keep the count meaningful
    return await _rps(server, s, "/api/contents/many", 4, s.pick(6.0, 3.0))


def big_notebook(target_bytes: int = 5 * 2**20) -> dict[str, Any]:
    """A valid nbformat 4.5 notebook of about target_bytes: code cells with 20 kB stream outputs."""
    line = "0123456789abcdef" * 4 + "\n"  # 65 chars
    output_text = line * 315  # ~20 kB
    cells = []
    size = 0
    i = 0
    while size < target_bytes:
        cell = {
            "cell_type": "code", "execution_count": i + 1, "id": f"cell-{i:05d}", "metadata": {},
            "source": f"for i in range(315):\n    print('{line.strip()}')  # cell {i}\n",
            "outputs": [{"output_type": "stream", "name": "stdout", "text": output_text}],
        }
        cells.append(cell)
        size += len(output_text) + 200
        i += 1
    return {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


async def notebook(server: Server, s: Settings) -> dict[str, Any]:
    """PUT then GET /api/contents/big.ipynb; the body is serialised once, so timings are send+server+read."""
    assert server.http is not None
    model: dict[str, Any] = {"type": "notebook", "format": "json", "content": big_notebook()}
    if server.variant == "jupyverse":
        # jupyverse's PUT requires `path` in the body and writes there (fps_contents ignores the URL's path)
        model["path"] = "big.ipynb"
    body = json.dumps(model).encode()
    url = server.base + "/api/contents/big.ipynb"
    headers = {"Content-Type": "application/json"}
    saves: list[float] = []
    loads: list[float] = []
    size = 0
    for i in range(1 + s.pick(5, 2)):  # the first pair warms caches and is dropped
        t0 = time.perf_counter()
        async with server.http.put(url, data=body, headers=headers) as r:
            text = await r.read()
            if r.status not in (200, 201):
                raise Unsupported(f"PUT {url} answered {r.status}: {text[:200].decode(errors='replace')}")
        t1 = time.perf_counter()
        async with server.http.get(url + "?content=1&type=notebook") as r:
            data = await r.read()
            if r.status != 200:
                raise Unsupported(f"GET {url} answered {r.status}: {data[:200].decode(errors='replace')}")
        t2 = time.perf_counter()
        size = len(data)
        if i:
            saves.append((t1 - t0) * 1000)
            loads.append((t2 - t1) * 1000)
    return {"save_ms": statistics.median(saves), "load_ms": statistics.median(loads),
            "body_mb": len(body) / 2**20, "loaded_mb": size / 2**20}
