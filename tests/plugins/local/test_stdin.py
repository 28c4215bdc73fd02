"""input() in kernels started together, each answered by its own client.

The local provider connects its stdin socket only once the kernel has answered. A stdin socket connected
while the kernel was still starting was seen up at the TCP level but unknown to the kernel's router
(ipykernel 7, next to a server starting 8 kernels in a loop: about one single-kernel test in 36), which
dropped the kernel's input_request, and input() hung for good. That race is too rare to fail this test
reliably without the fix (tests/plugins/kernels/test_channels.py's msg_id reuse test is where it showed);
this test keeps input() working for kernels that start together."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from kernel_ws import connect, running_kernel

KERNELS = 6


async def test_input_reaches_the_client_in_every_kernel_started_at_once(himalia_server):
    async with himalia_server() as server, AsyncExitStack() as stack:
        # started at once, as a person reopening a workspace of notebooks does: they start on a busy machine
        kernels = await asyncio.gather(*(stack.enter_async_context(running_kernel(server))
                                         for _ in range(KERNELS)))

        async def ask(kernel: dict) -> str:
            async with connect(server, kernel["id"]) as ws:
                ex = await ws.execute("print('hello', input('name? '))", answer=kernel["id"][:8], timeout=30)
                assert [m["content"]["prompt"] for m in ex.stdin] == ["name? "]
                return ex.stdout

        said = await asyncio.gather(*(ask(k) for k in kernels))
        assert said == [f"hello {k['id'][:8]}\n" for k in kernels]


async def test_input_reaches_the_client_after_a_restart(himalia_server):
    """After a restart on the same ports the stdin socket is connected afresh once the new process has
    answered (left connected, it would have reconnected to the new process while it was starting)."""
    async with himalia_server() as server, running_kernel(server) as kernel:
        for _ in range(2):
            async with connect(server, kernel["id"]) as ws:
                ex = await ws.execute("print('hello', input('name? '))", answer="ada", timeout=30)
                assert [m["content"]["prompt"] for m in ex.stdin] == ["name? "]
                assert ex.stdout == "hello ada\n"
            r = await server.post(f"/api/kernels/{kernel['id']}/restart")
            assert r.status == 200, await r.text()
