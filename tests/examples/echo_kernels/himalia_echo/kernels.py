"""The provider contract and nothing more: a KernelManager whose kernels live in this process, and
their KernelChannels. Messages the kernel sends are made with `himalia.wire.message`."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from himalia import ChannelsClosed, KernelMessage, Model, NotFound, isoformat, utcnow, wire

SPEC = {"argv": [], "display_name": "Echo", "language": "text"}


class EchoKernel:
    def __init__(self, kernel_id: str):
        self.id = kernel_id
        self.channels: set[EchoChannels] = set()
        self.count = 0
        self.session = uuid.uuid4().hex

    def publish(self, msg_type: str, content: dict[str, Any], parent: KernelMessage) -> None:
        msg = wire.message("iopub", msg_type, content, session=self.session, parent=parent.header)
        for channels in list(self.channels):
            channels.incoming.put_nowait(msg)

    def handle(self, request: KernelMessage, sender: EchoChannels) -> None:
        """Answer one request at once (an echo kernel never blocks)."""
        msg_type = request.msg_type
        if not msg_type.endswith("_request"):
            return
        self.publish("status", {"execution_state": "busy"}, request)
        if msg_type == "execute_request":
            code = json.loads(request.content).get("code", "")
            self.count += 1
            self.publish("execute_input", {"code": code, "execution_count": self.count}, request)
            if code:
                self.publish("stream", {"name": "stdout", "text": code + "\n"}, request)
            reply = {"status": "ok", "execution_count": self.count, "user_expressions": {}, "payload": []}
        elif msg_type == "kernel_info_request":
            reply = {"status": "ok", "protocol_version": "5.3", "implementation": "echo",
                     "implementation_version": "0.1", "banner": "echo",
                     "language_info": {"name": "text", "mimetype": "text/plain", "file_extension": ".txt"}}
        else:
            reply = {"status": "ok"}
        answer = wire.message(request.channel, msg_type.replace("_request", "_reply"), reply,
                              session=self.session, parent=request.header)
        sender.incoming.put_nowait(answer)
        self.publish("status", {"execution_state": "idle"}, request)


class EchoChannels:
    """KernelChannels to one echo kernel."""

    def __init__(self, kernel: EchoKernel):
        self.kernel = kernel
        self.incoming: asyncio.Queue[KernelMessage | None] = asyncio.Queue()
        self.closed = False
        kernel.channels.add(self)

    async def send(self, msg: KernelMessage) -> None:
        if self.closed:
            raise ChannelsClosed(self.kernel.id)
        self.kernel.handle(msg, self)

    async def recv(self) -> KernelMessage:
        msg = await self.incoming.get()
        if msg is None:
            self.incoming.put_nowait(None)
            raise ChannelsClosed(self.kernel.id)
        return msg

    async def close(self) -> None:
        self.closed = True
        self.kernel.channels.discard(self)
        self.incoming.put_nowait(None)


class EchoKernels:
    """The KernelManager of echo kernels."""

    def __init__(self) -> None:
        self.kernels: dict[str, EchoKernel] = {}
        self.started = isoformat(utcnow())

    async def list_kernelspecs(self) -> Model:
        return {"default": "echo", "kernelspecs": {"echo": await self.get_kernelspec("echo")}}

    async def get_kernelspec(self, name: str) -> Model:
        if name != "echo":
            raise NotFound(f"no kernelspec named {name!r}; installed: echo", "no such kernelspec")
        return {"name": "echo", "spec": SPEC, "resources": {}}

    async def get_kernelspec_resource(self, name: str, resource: str) -> tuple[bytes, str]:
        raise NotFound(f"no resource {resource!r} in kernelspec {name!r}", "no such resource")

    async def start_kernel(self, name: str | None = None, *, path: str | None = None,
                           env: Mapping[str, str] | None = None, timeout: float | None = None) -> Model:
        await self.get_kernelspec(name or "echo")
        kernel = EchoKernel(str(uuid.uuid4()))
        self.kernels[kernel.id] = kernel  # it answers at once: ready as soon as it exists
        return self._model(kernel)

    def _get(self, kernel_id: str) -> EchoKernel:
        try:
            return self.kernels[kernel_id]
        except KeyError:
            raise NotFound(f"no kernel with id {kernel_id!r}", "no such kernel") from None

    def _model(self, kernel: EchoKernel) -> Model:
        return {"id": kernel.id, "name": "echo", "last_activity": self.started, "execution_state": "idle",
                "connections": 0}

    async def list_kernels(self) -> list[Model]:
        return [self._model(k) for k in self.kernels.values()]

    async def get_kernel(self, kernel_id: str) -> Model:
        return self._model(self._get(kernel_id))

    async def shutdown_kernel(self, kernel_id: str, *, now: bool = False) -> None:
        kernel = self.kernels.pop(kernel_id, None)
        if kernel is None:
            raise NotFound(f"no kernel with id {kernel_id!r}", "no such kernel")
        for channels in list(kernel.channels):
            await channels.close()

    async def interrupt_kernel(self, kernel_id: str) -> None:
        self._get(kernel_id)

    async def restart_kernel(self, kernel_id: str, *, timeout: float | None = None) -> Model:
        kernel = self._get(kernel_id)
        kernel.count = 0
        return self._model(kernel)

    async def open_channels(self, kernel_id: str) -> EchoChannels:
        return EchoChannels(self._get(kernel_id))


@asynccontextmanager
async def echo_kernels(app: Any) -> AsyncIterator[EchoKernels]:
    service = EchoKernels()
    try:
        yield service
    finally:
        for kernel_id in list(service.kernels):
            await service.shutdown_kernel(kernel_id)
