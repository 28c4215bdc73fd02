"""Keep mode and the output log (issue 17): two figures against real `himalia serve` processes.

    .venv/bin/python -m bench.restart                     # 3 rounds, 1 and 8 kernels, 20 000 lines
    .venv/bin/python -m bench.restart --rounds 1 --lines 5000 --json out.json

- **restart**: keep mode (`[plugins.kernels] persist = true`); N kernels started and answering; the
  server is stopped (SIGTERM, then in another round SIGKILL) and started again on the same state dir:
  seconds from the new `Popen` until every kernel answered `kernel_info` through a new websocket.
- **relay**: one kernel with 16 disconnected sessions (each connected with its own session_id, then
  closed), one live client running a print loop: stdout messages/s to the live client, the server's RSS
  before and after the flood, then the 16 sessions reconnect and each must be replayed exactly the
  lines it missed. Two variants, alternating in the same run: the output log (each session a cursor
  into it, as shipped) and `copies` (each session its own copy, the relay before issue 17's change:
  bench/himalia_copies.py). Both hold every line (the caps are raised to 50 000 messages).

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
from typing import Any, Callable

import aiohttp
import psutil

from himalia.testing import write_keep_config

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
    def __init__(self, run_id: str, *, persist: bool, extra: str = "", script: str | None = None):
        self.script = script
        self.tmp = Path(tempfile.mkdtemp(prefix="himalia-restart-"))
        self.port = _port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.config = write_keep_config(self.tmp, self.token, persist=persist, extra=extra, port=self.port)
        self.env = {**os.environ, RUN_ID_VAR: run_id, "JUPYTER_RUNTIME_DIR": str(self.tmp / "runtime")}
        self.env.pop("JUPYTER_TOKEN", None)
        self.process: subprocess.Popen | None = None

    async def start(self, http: aiohttp.ClientSession) -> None:
        program = [str(Path(__file__).parent / self.script)] if self.script else ["-m", "himalia.cli"]
        self.process = subprocess.Popen([sys.executable, *program, "serve", "--config", str(self.config)],
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


async def _receive_until(ws: aiohttp.ClientWebSocketResponse, done: Callable[[dict[str, Any]], bool]) -> int:
    """Read messages until one satisfies `done`; how many stream messages came before it."""
    got = 0
    async with asyncio.timeout(TIMEOUT):
        while True:
            frame = await ws.receive()
            if frame.type != aiohttp.WSMsgType.BINARY:
                raise RuntimeError(f"websocket closed: {frame.type}")
            msg = decode_v1(frame.data)
            if done(msg):
                return got
            if msg["header"]["msg_type"] == "stream":
                got += 1


async def kernel_info(http: aiohttp.ClientSession, server: Server, kernel_id: str) -> None:
    ws = await http.ws_connect(f"{server.url}api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}",
                               headers=server.headers, protocols=(V1,))
    try:
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": "kernel_info_request", "session": "bench", "username": "",
                  "date": "", "version": "5.3"}
        await ws.send_bytes(encode_v1("shell", header, {}))
        await _receive_until(ws, lambda msg: msg["header"]["msg_type"] == "kernel_info_reply")
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


async def _until_idle(ws: aiohttp.ClientWebSocketResponse, msg_id: str) -> int:
    """Stream messages received until the idle status of request `msg_id`."""
    return await _receive_until(ws, lambda msg: msg["header"]["msg_type"] == "status"
                                and msg["content"].get("execution_state") == "idle"
                                and msg["parent_header"].get("msg_id") == msg_id)


async def relay_round(http: aiohttp.ClientSession, run_id: str, lines: int, copies: bool) -> dict[str, float]:
    extra = "output_log_max_messages = 50000\nbuffer_max_messages = 50000"
    server = Server(run_id, persist=False, extra=extra, script="himalia_copies.py" if copies else None)
    await server.start(http)
    try:
        async with http.post(server.url + "api/kernels", headers=server.headers, json={"name": "python3"}) as r:
            kernel_id = (await r.json())["id"]
        sessions = [uuid.uuid4().hex for _ in range(16)]
        for session in sessions:  # 16 disconnected sessions
            ws = await http.ws_connect(f"{server.url}api/kernels/{kernel_id}/channels?session_id={session}",
                                       headers=server.headers, protocols=(V1,))
            await ws.close()
        ws = await http.ws_connect(f"{server.url}api/kernels/{kernel_id}/channels",  # no session: not kept
                                   headers=server.headers, protocols=(V1,))
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": "execute_request", "session": "bench", "username": "",
                  "date": "", "version": "5.3"}
        content = {"code": f"for i in range({lines}): print(i, flush=True)", "silent": False,
                   "store_history": False, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
        process = psutil.Process(server.process.pid)  # type: ignore[union-attr]
        rss_before = process.memory_info().rss / 2**20
        t0 = time.monotonic()
        await ws.send_bytes(encode_v1("shell", header, content))
        got = await _until_idle(ws, msg_id)
        elapsed = time.monotonic() - t0
        await ws.close()
        rss_after = process.memory_info().rss / 2**20
        replayed = []
        for session in sessions:  # each reconnects: exactly the lines it missed, then the idle
            ws = await http.ws_connect(f"{server.url}api/kernels/{kernel_id}/channels?session_id={session}",
                                       headers=server.headers, protocols=(V1,))
            try:
                replayed.append(await _until_idle(ws, msg_id))
            finally:
                await ws.close()
        return {"msgs_per_s": got / elapsed, "lines": got, "rss_before_mb": rss_before, "rss_after_mb": rss_after,
                "rss_growth_mb": rss_after - rss_before, "replayed_min": min(replayed), "replayed_max": max(replayed)}
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
    parser.add_argument("--only", choices=["restart", "relay"], help="run one of the two figures")
    ns = parser.parse_args(argv)
    run_id = secrets.token_hex(8)
    results: dict[str, list[Any]] = {}
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(ns.rounds):
                for kernels in (1, 8) if ns.only != "relay" else ():
                    for sig in (signal.SIGTERM, signal.SIGKILL):
                        key = f"restart {kernels} kernel(s), {sig.name}"
                        results.setdefault(key, []).append(await restart_round(http, run_id, kernels, sig))
                for copies in (True, False) if ns.only != "restart" else ():
                    key = (f"relay, 16 disconnected sessions, {ns.lines} lines: "
                           f"{'a copy per session (before)' if copies else 'output log (after)'}")
                    results.setdefault(key, []).append(await relay_round(http, run_id, ns.lines, copies))
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
