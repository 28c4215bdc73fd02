"""Records of our gateway kernels in the state dir, so the next server finds them again at the gateway.

Each kernel this server started on the gateway has `<state_dir>/gateway-kernels/<id>.json`, owner-only
(0600) and written atomically: its id, kernelspec name, the gateway's url, whether it is kept (keep
mode), when it started and was last used. It is written once the gateway answered the start request
with the id (a server killed between the two cannot know the id: that kernel stays on the gateway
until the gateway culls it), rewritten at a keep-mode exit, and removed when the kernel is shut down or
found gone.

The state dir itself (its one lock per server, atomic record writes, reading) is the core's
`himalia.statedir`. The calls here block: run them in a thread."""

from __future__ import annotations

from typing import Any

from himalia import StateDir, default_state_dir

__all__ = ["GatewayRecords", "default_state_dir"]


class GatewayRecords(StateDir):
    """The records of our gateway kernels (`<state_dir>/gateway-kernels`) and the state dir's lock."""

    def __init__(self, state_dir: str):
        super().__init__(state_dir, "gateway-kernels")

    def path_of(self, kernel_id: str) -> str:
        return self.record_path(kernel_id)

    def valid(self, record: dict[str, Any]) -> bool:
        return isinstance(record.get("url"), str)
