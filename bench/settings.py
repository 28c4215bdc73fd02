"""What one bench run was asked for: quick or full, which wire protocol, which load generator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    quick: bool = False
    protocol: str = "v1.kernel.websocket.jupyter.org"  # or "legacy"
    python_load: bool = False  # aiohttp load generator even when wrk is installed

    def pick(self, full: T, quick: T) -> T:
        return quick if self.quick else full
