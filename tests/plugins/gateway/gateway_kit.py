"""Test helpers: a real Jupyter Kernel Gateway on 127.0.0.1 with a token, a cuttable TCP proxy in front
of it, a manager on it, and running kernel code over `KernelChannels`."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from himalia import KernelMessage
from himalia.testing import stop_process

TOKEN = "gateway-test-token"
STARTUP_TIMEOUT = 60.0
WAIT = 60.0
"""Bound on every wait for a kernel's answer."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Gateway:
    url: str
    token: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.process)

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A blocking request straight to the gateway (for test setup and checks, in a thread)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=WAIT) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    async def aapi(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await asyncio.to_thread(self.api, method, path, body)




@contextmanager
def run_gateway(tmp: Path, *args: str, token: str = TOKEN, port: int | None = None,
                tls: tuple[Path, Path] | None = None) -> Iterator[Gateway]:
    """Start `jupyter kernelgateway` on 127.0.0.1 (over TLS with `tls=(certfile, keyfile)`); yield once
    `/api` answers; stop it (and its kernels)."""
    port = port or free_port()
    scheme, context = "http", None
    if tls is not None:
        args = (*args, f"--KernelGatewayApp.certfile={tls[0]}", f"--KernelGatewayApp.keyfile={tls[1]}")
        scheme, context = "https", ssl.create_default_context(cafile=str(tls[0]))
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "JUPYTER_DATA_DIR": str(tmp / "data"),
           "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_PLATFORM_DIRS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("JUPYTER_TOKEN", None)
    log = tmp / f"gateway-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "kernelgateway", "--KernelGatewayApp.ip=127.0.0.1",
             f"--KernelGatewayApp.port={port}", f"--KernelGatewayApp.auth_token={token}",
             "--KernelGatewayApp.port_retries=0", *args],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    gateway = Gateway(f"{scheme}://127.0.0.1:{port}", token, port, process, log)
    try:
        wait_until_up(gateway, STARTUP_TIMEOUT, "kernel gateway", context)
        yield gateway
    finally:
        stop_process(process)




def wait_until_up(gateway: Gateway, timeout: float, what: str, context: ssl.SSLContext | None = None) -> None:
    """Return once the gateway answers `/api` (a 401 counts: up, and asking for the token)."""
    deadline = time.monotonic() + timeout
    while True:  # bounded readiness poll: a gateway has no readiness signal but its port
        if gateway.process.poll() is not None:
            raise RuntimeError(f"{what} exited with {gateway.process.returncode}:\n{gateway.log.read_text()}")
        try:
            with urllib.request.urlopen(gateway.url + "/api", timeout=2, context=context):
                return
        except urllib.error.HTTPError:
            return
        except (OSError, http.client.HTTPException):  # not listening yet, or another program's port:
            # a free_port() can be taken by someone else (a kernel's ZMQ socket) before the gateway binds
            # it; the gateway then exits, which the poll above reports
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not up within {timeout}s:\n{gateway.log.read_text()}") from None
            time.sleep(0.1)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the openssl command line."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


# --- a TCP proxy the tests can cut, to drop upstream websockets without stopping the gateway ------


@dataclass
class Proxy:
    target_port: int
    port: int = 0
    refusing: bool = False
    connections: set[asyncio.StreamWriter] = field(default_factory=set)
    accepted: int = 0
    requests: list[bytes] = field(default_factory=list)
    """Every HTTP request head the clients sent through the proxy (websocket handshakes included)."""
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.connections |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, record: bool = False) -> None:
            try:
                while data := await src.read(65536):
                    if record and b" HTTP/1.1\r\n" in data.split(b"\r\n", 1)[0] + b"\r\n":
                        self.requests.append(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, record=True), pipe(up_reader, writer))
        self.connections -= {writer, up_writer}

    def cut(self) -> None:
        """Drop every open connection, as a network failure would."""
        for w in list(self.connections):
            w.transport.abort()
        self.connections.clear()



# --- kernel messages ------------------------------------------------------------------------------


def execute_request(code: str, session: str = "test-session") -> KernelMessage:
    header = {"msg_id": uuid.uuid4().hex, "msg_type": "execute_request", "username": "test", "session": session,
              "date": "2026-01-01T00:00:00Z", "version": "5.3"}
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {},
               "allow_stdin": False, "stop_on_error": True}
    return KernelMessage("shell", json.dumps(header).encode(), b"{}", b"{}", json.dumps(content).encode())


async def run_code(channels: Any, code: str) -> tuple[str, dict[str, Any]]:
    """Execute `code`; (stdout text, execute_reply content). Bounded by WAIT."""
    request = execute_request(code)
    await channels.send(request)
    parent = request.header_dict["msg_id"]
    out: list[str] = []
    reply: dict[str, Any] | None = None
    idle = False
    async with asyncio.timeout(WAIT):
        while reply is None or not idle:
            msg = await channels.recv()
            if json.loads(msg.parent_header or b"{}").get("msg_id") != parent:
                continue
            content = json.loads(msg.content)
            if msg.msg_type == "stream":
                out.append(content["text"])
            elif msg.msg_type == "execute_reply":
                reply = content
            elif msg.msg_type == "status" and content["execution_state"] == "idle":
                idle = True
    return "".join(out), reply



@asynccontextmanager
async def gateway_manager(url: str, token: str = TOKEN, **settings: Any) -> AsyncIterator[Any]:
    """A `GatewayKernelManager` on `url`, with its client; shuts its kernels down on exit."""
    from himalia_gateway.client import GatewayClient
    from himalia_gateway.config import GatewayConfig
    from himalia_gateway.manager import GatewayKernelManager

    config = GatewayConfig(url=url, auth_token=token, **settings).effective()
    async with GatewayClient(config) as client:
        manager = GatewayKernelManager(client, root_dir="/srv/notebooks")
        try:
            yield manager
        finally:
            await asyncio.wait_for(manager.shutdown_all(), WAIT)


async def drain(channels: Any) -> list[KernelMessage]:
    """Every message until the channels close for good (bounded by WAIT)."""
    from himalia import ChannelsClosed

    seen: list[KernelMessage] = []
    async with asyncio.timeout(WAIT):
        while True:
            try:
                seen.append(await channels.recv())
            except ChannelsClosed:
                return seen


# --- a kernel websocket client of Himalia (either wire protocol), written from the protocol docs ----

V1 = "v1.kernel.websocket.jupyter.org"


def client_message(code: str, session: str) -> dict[str, Any]:
    return {"channel": "shell", "header": {"msg_id": uuid.uuid4().hex, "msg_type": "execute_request",
                                           "username": "test", "session": session, "version": "5.3",
                                           "date": "2026-01-01T00:00:00Z"},
            "parent_header": {}, "metadata": {},
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}


def encode_v1(msg: dict[str, Any]) -> bytes:
    parts = [msg["channel"].encode()] + [json.dumps(msg[k]).encode()
                                         for k in ("header", "parent_header", "metadata", "content")]
    offsets = [8 * (len(parts) + 2)]
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


def decode_v1(data: bytes) -> dict[str, Any]:
    (n,) = struct.unpack_from("<Q", data)
    offsets = struct.unpack_from(f"<{n}Q", data, 8)
    parts = [data[offsets[i]:offsets[i + 1]] for i in range(n - 1)]
    msg = {k: json.loads(p) for k, p in zip(("header", "parent_header", "metadata", "content"), parts[1:5])}
    return {"channel": parts[0].decode(), **msg}


async def ws_send_execute(ws: Any, code: str, session: str = "e2e") -> str:
    """Send an execute_request over a Himalia kernel websocket (v1 when `ws.protocol` says so, else
    legacy JSON); return its msg_id."""
    msg = client_message(code, session)
    if ws.protocol == V1:
        await ws.send_bytes(encode_v1(msg))
    else:
        await ws.send_str(json.dumps(msg))
    return msg["header"]["msg_id"]


async def ws_receive(ws: Any) -> dict[str, Any]:
    """The next kernel message on a Himalia kernel websocket, decoded (fails if the socket ends)."""
    frame = await ws.receive()
    if frame.type.name == "BINARY":
        return decode_v1(frame.data)
    if frame.type.name == "TEXT":
        return json.loads(frame.data)
    raise AssertionError(f"websocket ended: {frame.type.name} {frame.data!r} {frame.extra!r}")


async def ws_read_reply(ws: Any, parent: str) -> tuple[str, dict[str, Any]]:
    """Read the messages answering `parent` until its execute_reply and idle status (bounded by WAIT);
    return the stream text and the reply's content."""
    out: list[str] = []
    reply: dict[str, Any] | None = None
    idle = False
    async with asyncio.timeout(WAIT):
        while reply is None or not idle:
            got = await ws_receive(ws)
            if got["parent_header"].get("msg_id") != parent:
                continue
            kind = got["header"]["msg_type"]
            if kind == "stream":
                out.append(got["content"]["text"])
            elif kind == "execute_reply":
                reply = got["content"]
            elif kind == "status" and got["content"]["execution_state"] == "idle":
                idle = True
    return "".join(out), reply


async def ws_execute(ws: Any, code: str, session: str = "e2e") -> tuple[str, dict[str, Any]]:
    """Execute over a Himalia kernel websocket; return the stream text and the reply's content."""
    return await ws_read_reply(ws, await ws_send_execute(ws, code, session))
