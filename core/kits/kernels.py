"""`KernelsKit`: the kernel-provider contract the kernels plugin's kernel service relies on
(`himalia.services.KernelManager`, `KernelChannels`), with real kernels.

    class TestMyProvider(KernelsKit):
        @pytest.fixture
        async def kernel_provider(self, himalia_server):
            async with himalia_server(config={"server": {"kernel_provider": "mine"}}) as server:
                yield server.app[SERVICES].kernel_provider

The provider starts with no kernel of its own listed. The kit starts kernels of `kernel_name` (None:
the provider's default) that must answer a `kernel_info_request` within `timeout` seconds, and shuts
down each one it starts; the kernel it sends `code` to must be one of `code_kernel_name` (by default a
Python kernel, where `code` prints; a provider without Python kernels sets `code = None` to skip the
execute cases).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from .. import wire
from ..errors import NotFound
from ..services import ChannelsClosed, KernelChannels, KernelManager, KernelMessage, Model

NO_SUCH_ID = "00000000-0000-4000-8000-000000000000"


class KernelsKit:
    """The kernel-provider contract. Subclass with a `kernel_provider` fixture yielding your running
    KernelManager (from a server, so it is entered and exited as at run time)."""

    kernel_name: str | None = None
    """The kernelspec the kit starts; None: the provider's default."""
    code: str | None = "print(6 * 7)"
    """Code the kit runs in a started kernel, printing `expected_output` on stdout; None skips it."""
    expected_output: str = "42\n"
    timeout: float = 60.0
    """Seconds a kernel may take to start, restart or answer."""

    @pytest.fixture
    def kernel_provider(self) -> KernelManager:
        raise NotImplementedError("define a `kernel_provider` fixture yielding your running KernelManager")

    # -- helpers -----------------------------------------------------------------------------

    @asynccontextmanager
    async def started(self, provider: KernelManager, **kwargs: Any) -> AsyncIterator[Model]:
        """A kernel started for the test, shut down after it whatever happens."""
        model = await asyncio.wait_for(provider.start_kernel(self.kernel_name, timeout=self.timeout, **kwargs),
                                       self.timeout + 10)
        try:
            yield model
        finally:
            await asyncio.wait_for(provider.shutdown_kernel(model["id"]), self.timeout)

    async def ask(self, channels: KernelChannels, channel: str, msg_type: str,
                  content: dict[str, Any] | None = None) -> tuple[KernelMessage, list[KernelMessage]]:
        """Send a request; its reply and the iopub messages that answer it, until its idle status."""
        request = wire.message(channel, msg_type, content, session="kernels-kit")
        msg_id = request.header_dict["msg_id"]
        await channels.send(request)
        reply, iopub, idle = None, [], False
        async with asyncio.timeout(self.timeout):
            while reply is None or not idle:
                msg = await channels.recv()
                if json.loads(msg.parent_header or b"{}").get("msg_id") != msg_id:
                    continue
                if msg.channel == "iopub":
                    iopub.append(msg)
                    idle = idle or (msg.msg_type == "status"
                                    and json.loads(msg.content).get("execution_state") == "idle")
                elif msg.msg_type.endswith("_reply"):
                    reply = msg
        return reply, iopub

    async def stdout(self, channels: KernelChannels, code: str) -> str:
        reply, iopub = await self.ask(channels, "shell", "execute_request",
                                      {"code": code, "silent": False, "store_history": False,
                                       "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
        assert json.loads(reply.content)["status"] == "ok", reply.content
        return "".join(json.loads(m.content)["text"] for m in iopub
                       if m.msg_type == "stream" and json.loads(m.content).get("name") == "stdout")

    # -- kernelspecs -------------------------------------------------------------------------

    async def test_is_a_kernel_manager_listing_its_kernelspecs(self, kernel_provider: KernelManager) -> None:
        assert isinstance(kernel_provider, KernelManager)
        specs = await kernel_provider.list_kernelspecs()
        assert set(specs) >= {"default", "kernelspecs"} and specs["kernelspecs"], specs
        assert specs["default"] in specs["kernelspecs"]
        for name, spec in specs["kernelspecs"].items():
            assert set(spec) >= {"name", "spec", "resources"} and spec["name"] == name
            assert {"display_name", "language"} <= set(spec["spec"])
            assert await kernel_provider.get_kernelspec(name) == spec
        assert self.kernel_name is None or self.kernel_name in specs["kernelspecs"]

    async def test_unknown_kernelspec_is_not_found(self, kernel_provider: KernelManager) -> None:
        with pytest.raises(NotFound):
            await kernel_provider.get_kernelspec("no-such-kernelspec")
        with pytest.raises(NotFound):
            await kernel_provider.start_kernel("no-such-kernelspec", timeout=self.timeout)
        assert await kernel_provider.list_kernels() == []

    async def test_unknown_kernel_ids_are_not_found(self, kernel_provider: KernelManager) -> None:
        with pytest.raises(NotFound):
            await kernel_provider.get_kernel(NO_SUCH_ID)
        with pytest.raises(NotFound):
            await kernel_provider.shutdown_kernel(NO_SUCH_ID)
        with pytest.raises(NotFound):
            await kernel_provider.interrupt_kernel(NO_SUCH_ID)
        with pytest.raises(NotFound):
            await kernel_provider.restart_kernel(NO_SUCH_ID, timeout=self.timeout)
        with pytest.raises(NotFound):
            await kernel_provider.open_channels(NO_SUCH_ID)

    # -- kernels -----------------------------------------------------------------------------

    async def test_a_started_kernel_is_listed_and_answers_until_shut_down(self, kernel_provider: KernelManager) -> None:
        async with self.started(kernel_provider) as model:
            kid = model["id"]
            assert set(model) >= {"id", "name", "last_activity", "execution_state", "connections"}
            assert model["last_activity"].endswith("Z") or model["last_activity"].endswith("+00:00")
            assert [k["id"] for k in await kernel_provider.list_kernels()] == [kid]
            assert (await kernel_provider.get_kernel(kid))["name"] == model["name"]
            channels = await kernel_provider.open_channels(kid)
            try:
                reply, _ = await self.ask(channels, "shell", "kernel_info_request")
                assert reply.msg_type == "kernel_info_reply"
                assert json.loads(reply.content)["status"] == "ok"
            finally:
                await channels.close()
            with pytest.raises(ChannelsClosed):
                await channels.recv()
        with pytest.raises(NotFound):
            await kernel_provider.get_kernel(kid)
        assert await kernel_provider.list_kernels() == []

    async def test_code_runs_and_survives_a_restart_without_its_state(self, kernel_provider: KernelManager) -> None:
        if self.code is None:
            pytest.skip("this kit's subclass runs no code (code = None)")
        async with self.started(kernel_provider) as model:
            channels = await kernel_provider.open_channels(model["id"])
            try:
                assert await self.stdout(channels, self.code) == self.expected_output
                restarted = await asyncio.wait_for(
                    kernel_provider.restart_kernel(model["id"], timeout=self.timeout), self.timeout + 10)
                assert restarted["id"] == model["id"]
                # the channels open before the restart keep working, with the new kernel behind them
                assert await self.stdout(channels, self.code) == self.expected_output
            finally:
                await channels.close()

    async def test_interrupt_stops_a_running_cell(self, kernel_provider: KernelManager) -> None:
        if self.code is None:
            pytest.skip("this kit's subclass runs no code (code = None)")
        async with self.started(kernel_provider) as model:
            channels = await kernel_provider.open_channels(model["id"])
            try:
                request = wire.message("shell", "execute_request",
                                       {"code": "import time\nprint('sleeping', flush=True)\ntime.sleep(300)",
                                        "silent": False, "store_history": False, "user_expressions": {},
                                        "allow_stdin": False, "stop_on_error": True}, session="kernels-kit")
                msg_id = request.header_dict["msg_id"]
                await channels.send(request)
                reply = None
                async with asyncio.timeout(self.timeout):
                    while reply is None:
                        msg = await channels.recv()
                        if json.loads(msg.parent_header or b"{}").get("msg_id") != msg_id:
                            continue
                        if msg.msg_type == "stream":  # the cell is running: interrupt it (once per print)
                            await kernel_provider.interrupt_kernel(model["id"])
                        elif msg.msg_type == "execute_reply":
                            reply = msg
                content = json.loads(reply.content)
                assert content["status"] == "error" and content["ename"] == "KeyboardInterrupt"
            finally:
                await channels.close()

    async def test_two_kernels_are_distinct_and_each_shut_down_alone(self, kernel_provider: KernelManager) -> None:
        async with self.started(kernel_provider) as one:
            async with self.started(kernel_provider) as two:
                assert one["id"] != two["id"]
                assert sorted(k["id"] for k in await kernel_provider.list_kernels()) == sorted([one["id"], two["id"]])
            assert [k["id"] for k in await kernel_provider.list_kernels()] == [one["id"]]
        assert await kernel_provider.list_kernels() == []
