"""Kernel relay speed: execute round-trip (`pass`, sequential: reply and idle) and iopub rate, for a
direct jupyter_client client, Himalia's websocket, and optionally a jupyter_server for comparison.

    .venv/bin/python bench/kernels.py [--n 500] [--lines 20000] [--jupyter-server /tmp/venv/bin/jupyter]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid

import aiohttp

V1 = "v1.kernel.websocket.jupyter.org"
FLOOD = "import sys\nfor i in range({n}):\n    sys.stdout.write(f'{{i}}\\n'); sys.stdout.flush()\n"


def summary(name: str, samples: list[float]) -> str:
    s = sorted(samples)
    p = lambda q: s[min(len(s) - 1, int(q * len(s)))] * 1000  # noqa: E731
    return f"{name:16s} p50 {p(0.5):6.2f} ms  p90 {p(0.9):6.2f} ms  p99 {p(0.99):6.2f} ms  (n={len(s)})"


# --- direct jupyter_client ----------------------------------------------------------------------


async def direct(n: int, lines: int) -> tuple[list[float], float]:
    from jupyter_client.manager import AsyncKernelManager

    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=60)

    async def run(code: str) -> int:
        msg_id = kc.execute(code)
        got_reply = idle = False
        count = 0
        while not (got_reply and idle):
            if not got_reply and await kc.shell_channel.msg_ready():
                reply = await kc.get_shell_msg()
                got_reply = reply["parent_header"].get("msg_id") == msg_id
                continue
            msg = await kc.get_iopub_msg()
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                count += msg["content"]["text"].count("\n")
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
                if not got_reply:
                    await kc.get_shell_msg()
                    got_reply = True
        return count

    try:
        for _ in range(20):
            await run("pass")
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            await run("pass")
            samples.append(time.perf_counter() - t)
        t = time.perf_counter()
        assert await run(FLOOD.format(n=lines)) == lines
        rate = lines / (time.perf_counter() - t)
        return samples, rate
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


# --- over a websocket (Himalia or jupyter_server) -------------------------------------------------


def encode_v1(channel: str, header: dict, content: dict) -> bytes:
    parts = [channel.encode(), json.dumps(header).encode(), b"{}", b"{}", json.dumps(content).encode()]
    offsets = [8 * (len(parts) + 2)]
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


def decode_v1(data: bytes) -> tuple[str, dict, dict, dict]:
    n = struct.unpack_from("<Q", data)[0]
    o = struct.unpack_from(f"<{n}Q", data, 8)
    return (data[o[0]:o[1]].decode(), json.loads(data[o[1]:o[2]]), json.loads(data[o[2]:o[3]]),
            json.loads(data[o[4]:o[5]]))


async def over_websocket(base: str, token: str, n: int, lines: int) -> tuple[list[float], float]:
    headers = {"Authorization": f"token {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        r = await http.post(f"{base}/api/kernels", json={"name": "python3"})
        kernel = await r.json()
        session = uuid.uuid4().hex
        try:
            async with http.ws_connect(f"{base}/api/kernels/{kernel['id']}/channels?session_id={session}",
                                       protocols=(V1,), max_msg_size=0) as ws:

                async def run(code: str) -> int:
                    msg_id = uuid.uuid4().hex
                    header = {"msg_id": msg_id, "msg_type": "execute_request", "session": session,
                              "username": "bench", "date": "", "version": "5.3"}
                    await ws.send_bytes(encode_v1("shell", header, {"code": code, "silent": False}))
                    got_reply = idle = False
                    count = 0
                    while not (got_reply and idle):
                        frame = await asyncio.wait_for(ws.receive(), 120)
                        channel, hdr, parent, content = decode_v1(frame.data)
                        if parent.get("msg_id") != msg_id:
                            continue
                        if channel == "shell":
                            got_reply = True
                        elif hdr["msg_type"] == "stream":
                            count += content["text"].count("\n")
                        elif hdr["msg_type"] == "status" and content["execution_state"] == "idle":
                            idle = True
                    return count

                for _ in range(20):
                    await run("pass")
                samples = []
                for _ in range(n):
                    t = time.perf_counter()
                    await run("pass")
                    samples.append(time.perf_counter() - t)
                t = time.perf_counter()
                got = await run(FLOOD.format(n=lines))
                rate = lines / (time.perf_counter() - t)
                assert got == lines, f"{got} of {lines} lines arrived"
                return samples, rate
        finally:
            await http.delete(f"{base}/api/kernels/{kernel['id']}")


async def himalia(n: int, lines: int) -> tuple[list[float], float]:
    from himalia.testing import serve_app

    async with serve_app(root_dir=tempfile.mkdtemp()) as server:
        return await over_websocket(server.url.rstrip("/"), server.token, n, lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def jupyter_server(jupyter: str, n: int, lines: int) -> tuple[list[float], float]:
    port = free_port()
    proc = subprocess.Popen([jupyter, "server", "--ServerApp.token=bench", f"--port={port}", "--no-browser", "--allow-root",
                             f"--ServerApp.root_dir={tempfile.mkdtemp()}",
                             "--ZMQChannelsWebsocketConnection.iopub_msg_rate_limit=0",
                             "--ZMQChannelsWebsocketConnection.iopub_data_rate_limit=0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    await http.get(f"{base}/api")
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
        return await over_websocket(base, "bench", n, lines)
    finally:
        proc.terminate()
        proc.wait(10)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--jupyter-server", default="")
    args = ap.parse_args()
    runs = [("direct", direct(args.n, args.lines)), ("himalia", himalia(args.n, args.lines))]
    if args.jupyter_server:
        runs.append(("jupyter_server", jupyter_server(args.jupyter_server, args.n, args.lines)))
    for name, coro in runs:
        samples, rate = await coro
        print(summary(name, samples), f"  iopub {rate:7.0f} lines/s", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    sys.exit(asyncio.run(main()))
