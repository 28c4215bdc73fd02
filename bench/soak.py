"""Soak: many REST clients and many kernel websockets against one `himalia serve`, with nothing lost.

    .venv/bin/python -m bench.soak                          # 3 rounds: 200 REST clients for 30 s, then
                                                            # 100 websocket clients streaming output
    .venv/bin/python -m bench.soak --rounds 1 --duration 5  # a quick look
    .venv/bin/python -m bench.soak --together               # websockets streaming during the REST load

Each round: REST clients loop over a mix of reads and writes for `--duration` seconds (each client
saves its own file and reads it back byte for byte); then `--kernels` kernels each get
`--ws-clients / --kernels` websockets, and every client must receive every line every execution
prints, in order. An error is any non-2xx answer, exception, mismatch or missing line. After each
round the kernels are shut down and the server's RSS is read: across rounds it must stay flat (a
leak check, not a timing). Exit status 1 when any error happened or memory grew by more than
`--max-growth-mb`. Not a test: nothing here runs in the normal suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

V1 = "v1.kernel.websocket.jupyter.org"
RUN_ID_VAR = "HIMALIA_SOAK_RUN_ID"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 40.0


# --- the server ---------------------------------------------------------------------------------

class Server:
    """`himalia serve` on a free port over a fresh root, in temp Jupyter dirs; every process it and its
    kernels start carries a run id in the environment, so `stop` can reap anything left behind."""

    def __init__(self) -> None:
        self.run_id = secrets.token_hex(8)
        self.tmp = Path(tempfile.mkdtemp(prefix="himalia-soak-"))
        self.root = self.tmp / "root"
        self.token = secrets.token_hex(16)
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> None:
        self.root.mkdir()
        (self.root / "notes.txt").write_text("notes\n" * 100)
        (self.root / "nb.ipynb").write_text(json.dumps(
            {"cells": [{"cell_type": "code", "source": "print(1)", "metadata": {}, "outputs": [],
                        "execution_count": None, "id": "c1"}],
             "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
        many = self.root / "many"
        many.mkdir()
        for i in range(200):
            (many / f"f{i:03d}.txt").write_text(f"{i}\n")
        (self.root / "clients").mkdir()
        env = {k: v for k, v in os.environ.items() if k != "JUPYTER_TOKEN"}
        env.update(JUPYTER_RUNTIME_DIR=str(self.tmp / "runtime"), JUPYTER_CONFIG_DIR=str(self.tmp / "config"),
                   JUPYTER_PLATFORM_DIRS="1")
        env[RUN_ID_VAR] = self.run_id
        self.log = open(self.tmp / "server.log", "w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "himalia.cli", "serve", "--port", "0", "--root-dir", str(self.root),
             "--token", self.token], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("himalia serve exited:\n" + (self.tmp / "server.log").read_text())
            found = re.search(r"^\s+(http://\S+?)\?token=", (self.tmp / "server.log").read_text(), re.M)
            if found:
                self.url = found.group(1).rstrip("/")
                return
            time.sleep(0.1)  # polling a log file for the start-up line; no event to wait on
        raise RuntimeError(f"himalia serve printed no URL within {START_TIMEOUT}s")

    def rss_mb(self) -> float:
        assert self.process is not None
        return psutil.Process(self.process.pid).memory_info().rss / 2**20

    def stop(self) -> dict[str, Any]:
        """SIGTERM, wait (bounded), then reap anything still carrying the run id."""
        result: dict[str, Any] = {}
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                result["exit_status"] = self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                result["exit_status"] = "killed after timeout"
        result["leftover_processes"] = reap(self.run_id)
        log = (self.tmp / "server.log").read_text(errors="replace")
        result["server_tracebacks"] = log.count("unexpected error answering")
        # what the server itself complained about (kernels dying under load, sockets reset...), for
        # the report; the full log goes with the temp dir
        complaints = [line for line in log.splitlines() if any(w in line for w in ("WARNING", "ERROR", "Error"))
                      and "Kernel is running over TCP without encryption" not in line]  # ipykernel's, each start
        result["server_complaints"] = len(complaints)
        result["server_complaint_samples"] = complaints[:20]
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return result

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}


def reap(run_id: str) -> list[int]:
    mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    marker = f"{RUN_ID_VAR}={run_id}".encode()
    victims = []
    for pid in psutil.pids():
        if pid in mine:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    victims.append(psutil.Process(pid))
        except (OSError, psutil.Error):
            continue
    for p in victims:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(victims, timeout=5)
    return [p.pid for p in victims]


# --- REST load ----------------------------------------------------------------------------------

@dataclass
class RestResult:
    clients: int
    seconds: float
    requests: int = 0
    errors: int = 0
    lost_bytes: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    error_samples: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms) or [0.0]
        return {"clients": self.clients, "seconds": round(self.seconds, 1), "requests": self.requests,
                "rps": round(self.requests / self.seconds, 1) if self.seconds else 0, "errors": self.errors,
                "lost_or_mismatched_saves": self.lost_bytes,
                "p50_ms": round(statistics.median(lat), 1), "p99_ms": round(lat[int(len(lat) * 0.99) - 1], 1),
                "error_samples": self.error_samples[:5]}


async def rest_client(n: int, server: Server, session: aiohttp.ClientSession, stop_at: float,
                      result: RestResult) -> None:
    base = server.url
    mine = f"clients/c{n:03d}.txt"
    reads = ["/api/status", "/api/contents", "/api/contents/notes.txt", "/api/contents/nb.ipynb",
             "/api/contents/many", "/api/kernelspecs", "/api/sessions", "/api/kernels", "/api/me",
             "/files/notes.txt", "/api/contents/many?content=0"]
    i = 0
    doing = ""
    while time.monotonic() < stop_at:
        i += 1
        try:
            if i % 4 == 0:
                doing = f"PUT {mine}"
                text = f"client {n} save {i} " + secrets.token_hex(64) * (1 + i % 32)
                started = time.monotonic()
                async with session.put(f"{base}/api/contents/{mine}",
                                       json={"type": "file", "format": "text", "content": text}) as r:
                    await r.read()
                    ok = r.status in (200, 201)
                result.latencies_ms.append((time.monotonic() - started) * 1000)
                result.requests += 1
                if not ok:
                    result.errors += 1
                    result.error_samples.append(f"PUT {mine}: {r.status}")
                    continue
                doing = f"GET {mine} after save"
                async with session.get(f"{base}/api/contents/{mine}") as r:
                    body = await r.json()
                result.requests += 1
                if r.status != 200 or body.get("content") != text:
                    result.lost_bytes += 1
                    result.error_samples.append(f"GET {mine} after save: {r.status}, content differs")
            else:
                path = reads[i % len(reads)]
                doing = f"GET {path}"
                started = time.monotonic()
                async with session.get(base + path) as r:
                    await r.read()
                    status = r.status
                result.latencies_ms.append((time.monotonic() - started) * 1000)
                result.requests += 1
                if status != 200:
                    result.errors += 1
                    result.error_samples.append(f"GET {path}: {status}")
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as e:
            result.errors += 1
            result.error_samples.append(f"{doing}: {type(e).__name__}: {e}")


async def rest_phase(server: Server, clients: int, duration: float) -> RestResult:
    result = RestResult(clients, duration)
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(headers=server.headers, connector=connector, timeout=timeout) as session:
        started = time.monotonic()
        stop_at = started + duration
        await asyncio.wait_for(asyncio.gather(*(rest_client(n, server, session, stop_at, result)
                                                for n in range(clients))), duration + 120)
        result.seconds = time.monotonic() - started
    return result


# --- websocket streaming ------------------------------------------------------------------------

def encode_v1(channel: str, msg_type: str, session: str, content: dict[str, Any]) -> tuple[bytes, str]:
    msg_id = uuid.uuid4().hex
    hdr = {"msg_id": msg_id, "msg_type": msg_type, "session": session, "username": "soak",
           "date": "2026-01-01T00:00:00.000000Z", "version": "5.3"}
    parts = [channel.encode()] + [json.dumps(x).encode() for x in (hdr, {}, {}, content)]
    offsets = [8 * (len(parts) + 2)]
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts), msg_id


def decode_v1(data: bytes) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
    n = struct.unpack_from("<Q", data)[0]
    offsets = struct.unpack_from(f"<{n}Q", data, 8)
    parts = [data[offsets[i]:offsets[i + 1]] for i in range(n - 1)]
    return parts[0].decode(), json.loads(parts[1]), json.loads(parts[2]), json.loads(parts[4])


@dataclass
class WsResult:
    clients: int
    kernels: int
    executions: int = 0
    lines_expected: int = 0
    lines_received: int = 0
    errors: int = 0
    seconds: float = 0.0
    error_samples: list[str] = field(default_factory=list)


async def listen(ws: aiohttp.ClientWebSocketResponse, runs: asyncio.Queue, result: WsResult) -> None:
    """Collect stdout per parent msg_id until its idle status; check every run's lines, in order."""
    texts: dict[str, list[str]] = {}
    while True:
        run = await runs.get()
        if run is None:
            return
        msg_id, lines = run
        while True:
            frame = await ws.receive()
            if frame.type != aiohttp.WSMsgType.BINARY:
                raise ConnectionError(f"websocket {frame.type}: {frame.extra!r}")
            channel, header, parent, content = decode_v1(frame.data)
            pid = parent.get("msg_id")
            if channel != "iopub" or pid is None:
                continue
            if header["msg_type"] == "stream" and content.get("name") == "stdout":
                texts.setdefault(pid, []).append(content["text"])
            elif header["msg_type"] == "status" and content.get("execution_state") == "idle" and pid == msg_id:
                got = "".join(texts.pop(msg_id, [])).splitlines()
                result.lines_expected += lines
                result.lines_received += len(got)
                if got != [str(i) for i in range(lines)]:
                    result.errors += 1
                    result.error_samples.append(f"run {msg_id[:8]}: {len(got)} of {lines} lines, in order: "
                                                f"{got == sorted(got, key=int)}")
                break


async def kernel_group(server: Server, session: aiohttp.ClientSession, clients: int, executions: int,
                       lines: int, result: WsResult) -> None:
    async with session.post(f"{server.url}/api/kernels", json={}) as r:
        kernel_id = (await r.json())["id"]
    url = f"{server.url.replace('http', 'ws', 1)}/api/kernels/{kernel_id}/channels"
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    try:
        for _ in range(clients):
            sockets.append(await session.ws_connect(f"{url}?session_id={uuid.uuid4().hex}", protocols=(V1,),
                                                    max_msg_size=0))
        queues = [asyncio.Queue() for _ in sockets]
        listeners = [asyncio.ensure_future(listen(ws, q, result)) for ws, q in zip(sockets, queues)]
        driver = sockets[0]
        for _ in range(executions):
            frame, msg_id = encode_v1("shell", "execute_request", uuid.uuid4().hex, {
                "code": f"for i in range({lines}): print(i)", "silent": False, "store_history": False,
                "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
            for q in queues:
                q.put_nowait((msg_id, lines))
            await driver.send_bytes(frame)
            result.executions += 1
        for q in queues:
            q.put_nowait(None)
        done = await asyncio.gather(*listeners, return_exceptions=True)
        for d in done:
            if isinstance(d, BaseException):
                result.errors += 1
                result.error_samples.append(f"listener: {type(d).__name__}: {d}")
    finally:
        for ws in sockets:
            await ws.close()
        async with session.delete(f"{server.url}/api/kernels/{kernel_id}") as r:
            if r.status != 204:
                result.errors += 1
                result.error_samples.append(f"DELETE kernel: {r.status}")


async def ws_phase(server: Server, clients: int, kernels: int, executions: int, lines: int) -> WsResult:
    result = WsResult(clients, kernels)
    per = [clients // kernels + (1 if i < clients % kernels else 0) for i in range(kernels)]
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(headers=server.headers, timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(kernel_group(server, session, n, executions, lines, result)
                                                for n in per)), 600)
        result.seconds = time.monotonic() - started
    return result


# --- rounds -------------------------------------------------------------------------------------

async def ws_until(stop_at: float, server: Server, args: argparse.Namespace) -> WsResult:
    """`ws_phase` again and again (new kernels each time) until `stop_at`: websockets streaming for as
    long as the REST clients run (`--together`); the results added up."""
    total = WsResult(args.ws_clients, args.kernels)
    while True:
        one = await ws_phase(server, args.ws_clients, args.kernels, args.executions, args.lines)
        total.executions += one.executions
        total.lines_expected += one.lines_expected
        total.lines_received += one.lines_received
        total.errors += one.errors
        total.seconds += one.seconds
        total.error_samples += one.error_samples[:10 - len(total.error_samples)]
        if time.monotonic() >= stop_at:
            return total


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    server = Server()
    report: dict[str, Any] = {"command": " ".join(["python -m bench.soak", *sys.argv[1:]]), "rounds": []}
    try:
        server.start()
        report["rss_mb_after_start"] = round(server.rss_mb(), 1)
        for n in range(args.rounds):
            if args.together:
                rest, ws = await asyncio.gather(
                    rest_phase(server, args.rest_clients, args.duration),
                    ws_until(time.monotonic() + args.duration, server, args))
            else:
                rest = await rest_phase(server, args.rest_clients, args.duration)
                ws = await ws_phase(server, args.ws_clients, args.kernels, args.executions, args.lines)
            # kernels gone (DELETE answered); let the server settle on what it holds, then read RSS
            async with aiohttp.ClientSession(headers=server.headers) as s:
                async with s.get(f"{server.url}/api/kernels") as r:
                    left = len(await r.json())
            row = {"round": n + 1, "rest": rest.summary(), "ws": asdict(ws), "kernels_left": left,
                   "rss_mb": round(server.rss_mb(), 1)}
            report["rounds"].append(row)
            print(json.dumps(row), flush=True)
    finally:
        report["stop"] = server.stop()
    rss = [r["rss_mb"] for r in report["rounds"]]
    report["rss_growth_mb_after_round_1"] = round(rss[-1] - rss[0], 1) if rss else None
    errors = sum(r["rest"]["errors"] + r["rest"]["lost_or_mismatched_saves"] + r["ws"]["errors"] + r["kernels_left"]
                 for r in report["rounds"])
    report["errors"] = errors
    report["ok"] = (errors == 0 and report["stop"]["exit_status"] == 0 and not report["stop"]["leftover_processes"]
                    and report["stop"]["server_tracebacks"] == 0
                    and (report["rss_growth_mb_after_round_1"] or 0) <= args.max_growth_mb)
    return report


def markdown(report: dict[str, Any]) -> str:
    out = [f"`{report['command']}`", "",
           "| round | REST clients | requests | req/s | p50 ms | p99 ms | REST errors | lost saves | "
           "ws clients | kernels | executions | lines received / expected | ws errors | ws s | server RSS MB |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["rounds"]:
        rest, ws = r["rest"], r["ws"]
        out.append(f"| {r['round']} | {rest['clients']} | {rest['requests']} | {rest['rps']} | {rest['p50_ms']} | "
                   f"{rest['p99_ms']} | {rest['errors']} | {rest['lost_or_mismatched_saves']} | {ws['clients']} | "
                   f"{ws['kernels']} | {ws['executions']} | {ws['lines_received']} / {ws['lines_expected']} | "
                   f"{ws['errors']} | {ws['seconds']:.1f} | {r['rss_mb']} |")
    out.append("")
    out.append(f"RSS after start {report.get('rss_mb_after_start')} MB; growth from round 1 to the last: "
               f"{report['rss_growth_mb_after_round_1']} MB. Shutdown: "
               f"{ {k: v for k, v in report['stop'].items() if k != 'server_complaint_samples'} }. "
               f"{'OK' if report['ok'] else 'FAILED'}.")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rest-clients", type=int, default=200)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of REST load per round")
    p.add_argument("--ws-clients", type=int, default=100)
    p.add_argument("--kernels", type=int, default=4, help="the websocket clients are spread over these")
    p.add_argument("--executions", type=int, default=10, help="executions per kernel per round")
    p.add_argument("--lines", type=int, default=2000, help="lines each execution prints")
    p.add_argument("--max-growth-mb", type=float, default=25.0, help="RSS growth tolerated from round 1 to the last")
    p.add_argument("--together", action="store_true",
                   help="stream to the websockets (new kernels each pass) for as long as the REST clients "
                        "run, instead of after them")
    p.add_argument("--json", default="", help="also write the report here")
    args = p.parse_args(argv)
    report = asyncio.run(soak(args))
    print(markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
