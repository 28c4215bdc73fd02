"""Keep mode and the output log (issue 17): two figures against real `himalia serve` processes.

    .venv/bin/python -m bench.restart                     # 3 rounds, 1 and 8 kernels, 20 000 lines
    .venv/bin/python -m bench.restart --rounds 1 --lines 5000 --json out.json

- **restart**: keep mode (`[plugins.kernels] persist = true`); N kernels started and answering; the
  server is stopped (SIGTERM, then in another round SIGKILL) and started again on the same state dir:
  seconds from the new `Popen` until every kernel answered `kernel_info` through a new websocket.
- **relay**: one kernel with 16 disconnected sessions (each connected with its own session_id, then
  closed, so each has a reconnect buffer), one live client running a print loop: stdout messages/s to
  the live client, and the server's RSS after, with the output log off (`output_log_max_messages = 0`)
  and on (the default), alternating in the same run.

Not a test: nothing asserts a time. Every process carries a run id in its environment and is killed at
the end (kept kernels included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import psutil

V1 = "v1.kernel.websocket.jupyter.org"

RUN_ID_VAR = "HIMALIA_RESTART_BENCH_ID"
TIMEOUT = 120.0


def encode_v1(channel: str, header: dict[str, Any], content: dict[str, Any]) -> bytes:
    parts = [channel.encode(), *(json.dumps(p).encode() for p in (header, {}, {}, content))]
    offsets = [8 * (len(parts) + 2)]
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


def decode_v1(data: bytes) -> dict[str, Any]:
    n = struct.unpack_from("<Q", data)[0]
    offsets = struct.unpack_from(f"<{n}Q", data, 8)
    parts = [data[offsets[i]:offsets[i + 1]] for i in range(n - 1)]
    return dict(zip(("header", "parent_header", "metadata", "content"), (json.loads(p) for p in parts[1:5])))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, run_id: str, *, persist: bool, extra: str = ""):
        self.tmp = Path(tempfile.mkdtemp(prefix="himalia-restart-"))
        (self.tmp / "root").mkdir()
        self.port = _port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.config = self.tmp / "himalia.toml"
        self.config.write_text(f"""
[server]
port = {self.port}
port_retries = 0
root_dir = "{self.tmp / 'root'}"
state_dir = "{self.tmp / 'state'}"
[plugins.auth]
token = "{self.token}"
[plugins.sessions]
database = "{self.tmp / 'sessions.db'}"
[plugins.kernels]
persist = {'true' if persist else 'false'}
{extra}
""")
        self.env = {**os.environ, RUN_ID_VAR: run_id, "JUPYTER_RUNTIME_DIR": str(self.tmp / "runtime")}
        self.env.pop("JUPYTER_TOKEN", None)
        self.process: subprocess.Popen | None = None

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "himalia.cli", "serve", "--config", str(self.config)],
                                        env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        async with asyncio.timeout(TIMEOUT):
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"himalia serve exited with {self.process.returncode}")
                try:
                    async with http.get(self.url + "api/status", headers=self.headers) as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.01)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(TIMEOUT)


async def kernel_info(http: aiohttp.ClientSession, server: Server, kernel_id: str) -> None:
    ws = await http.ws_connect(f"{server.url}api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}",
                               headers=server.headers, protocols=(V1,))
    try:
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": "kernel_info_request", "session": "bench", "username": "",
                  "date": "", "version": "5.3"}
        await ws.send_bytes(encode_v1("shell", header, {}))
        async with asyncio.timeout(TIMEOUT):
            while True:
                frame = await ws.receive()
                if frame.type != aiohttp.WSMsgType.BINARY:
                    raise RuntimeError(f"websocket closed: {frame.type}")
                msg = decode_v1(frame.data)
                if msg["header"]["msg_type"] == "kernel_info_reply":
                    return
    finally:
        await ws.close()


async def restart_round(http: aiohttp.ClientSession, run_id: str, kernels: int, sig: int) -> float:
    server = Server(run_id, persist=True)
    await server.start(http)
    ids = []
    try:
        for _ in range(kernels):
            async with http.post(server.url + "api/kernels", headers=server.headers, json={"name": "python3"}) as r:
                ids.append((await r.json())["id"])
        await asyncio.gather(*(kernel_info(http, server, k) for k in ids))
        server.stop(sig)
        t0 = time.monotonic()
        await server.start(http)
        await asyncio.gather(*(kernel_info(http, server, k) for k in ids))
        return time.monotonic() - t0
    finally:
        for k in ids:
            try:
                async with http.delete(server.url + f"api/kernels/{k}", headers=server.headers):
                    pass
            except aiohttp.ClientError:
                pass
        server.stop()


async def relay_round(http: aiohttp.ClientSession, run_id: str, lines: int, log_on: bool) -> dict[str, float]:
    extra = "" if log_on else "output_log_max_messages = 0"
    server = Server(run_id, persist=False, extra=extra)
    await server.start(http)
    try:
        async with http.post(server.url + "api/kernels", headers=server.headers, json={"name": "python3"}) as r:
            kernel_id = (await r.json())["id"]
        for _ in range(16):  # 16 disconnected sessions, each with a reconnect buffer
            ws = await http.ws_connect(f"{server.url}api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}",
                                       headers=server.headers, protocols=(V1,))
            await ws.close()
        ws = await http.ws_connect(f"{server.url}api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}",
                                   headers=server.headers, protocols=(V1,))
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": "execute_request", "session": "bench", "username": "",
                  "date": "", "version": "5.3"}
        content = {"code": f"for i in range({lines}): print(i, flush=True)", "silent": False,
                   "store_history": False, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
        t0 = time.monotonic()
        await ws.send_bytes(encode_v1("shell", header, content))
        got = 0
        async with asyncio.timeout(TIMEOUT):
            while True:
                msg = decode_v1((await ws.receive()).data)
                if msg["header"]["msg_type"] == "stream":
                    got += 1
                if msg["header"]["msg_type"] == "status" and msg["content"].get("execution_state") == "idle" \
                        and msg["parent_header"].get("msg_id") == msg_id:
                    break
        elapsed = time.monotonic() - t0
        await ws.close()
        rss = psutil.Process(server.process.pid).memory_info().rss / 2**20  # type: ignore[union-attr]
        return {"msgs_per_s": got / elapsed, "rss_mb": rss}
    finally:
        server.stop()


def reap(run_id: str) -> None:
    for p in psutil.process_iter():
        try:
            if p.environ().get(RUN_ID_VAR) == run_id:
                p.kill()
        except psutil.Error:
            continue


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.restart")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--json", default="bench-restart.json")
    ns = parser.parse_args(argv)
    run_id = secrets.token_hex(8)
    results: dict[str, list[Any]] = {}
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(ns.rounds):
                for kernels in (1, 8):
                    for sig in (signal.SIGTERM, signal.SIGKILL):
                        key = f"restart {kernels} kernel(s), {sig.name}"
                        results.setdefault(key, []).append(await restart_round(http, run_id, kernels, sig))
                for log_on in (False, True):
                    key = f"relay, 16 disconnected sessions, output log {'on' if log_on else 'off'}"
                    results.setdefault(key, []).append(await relay_round(http, run_id, ns.lines, log_on))
    finally:
        reap(run_id)
    print("| figure | median |\n| --- | --- |")
    for key, values in results.items():
        if isinstance(values[0], dict):
            cell = ", ".join(f"{k} {statistics.median(v[k] for v in values):.1f}" for k in values[0])
        else:
            cell = f"{statistics.median(values):.2f} s"
        print(f"| {key} | {cell} |")
    Path(ns.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
