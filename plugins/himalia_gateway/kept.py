"""The gateway provider's part of `himalia kernels list|stop` (`himalia_kept_kernels`): our kernels
recorded in the state dir, listed from the records (no network) and stopped with no server running by
`DELETE /api/kernels/ID` at the gateway, with the configured url and auth headers.

A record of another gateway url than the configured one is listed but not stopped (the configured
credentials are never sent to another url). An unreachable gateway is a one-line error; the record stays."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from himalia import ApiError, KeptKernel, state_dir_of

from .client import GatewayClient, UpstreamError, quoted
from .config import GatewayConfig
from .health import Health
from .records import GatewayRecords


class GatewayKept:
    """The gateway kernels recorded in the state dir (a `KeptKernels`)."""

    provider = "gateway"

    def __init__(self, config: Any):
        self.records = GatewayRecords(state_dir_of(config))
        self.gateway: GatewayConfig = config.section("gateway").effective()

    def list(self) -> list[KeptKernel]:
        return [KeptKernel(id=r["id"], name=str(r.get("name")), where=r["url"], state="on the gateway",
                           detail="" if r.get("keep") else "(not kept: its server did not stop it)",
                           data={"url": r["url"], "kept": bool(r.get("keep")), "started": r.get("started")})
                for r in self.records.read_all()]

    def stop(self, kernel_ids: Sequence[str]) -> dict[str, str | None]:
        records = {r["id"]: r for r in self.records.read_all()}
        return asyncio.run(self._stop([records[i] for i in kernel_ids if i in records]))

    async def _stop(self, records: list[dict[str, Any]]) -> dict[str, str | None]:
        ours = self.gateway.url.rstrip("/") if self.gateway.url else ""
        outcome: dict[str, str | None] = {}
        for record in records:
            if record["url"].rstrip("/") != ours:
                outcome[record["id"]] = (f"recorded for the gateway {record['url']}, but [plugins.gateway] url is "
                                         f"{ours or 'not set'}; set it to that gateway to stop this kernel")
        todo = [r for r in records if r["id"] not in outcome]
        if not todo:
            return outcome
        # reachable=False: a failure is this command's one error line, not also a health warning
        async with GatewayClient(self.gateway, Health(self.gateway.url, reachable=False)) as client:
            for record in todo:
                outcome[record["id"]] = await self._delete(client, record["id"])
        return outcome

    async def _delete(self, client: GatewayClient, kernel_id: str) -> str | None:
        try:
            await client.request("DELETE", f"/api/kernels/{quoted(kernel_id)}")
        except ApiError as e:
            if not (isinstance(e, UpstreamError) and e.upstream_status == 404):  # 404: gone already
                return f"{e.message}; its record stays in {self.records.kernels}"
        await asyncio.to_thread(self.records.delete, kernel_id)
        return None
