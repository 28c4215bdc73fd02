"""The `[plugins.sessions]` table."""

from __future__ import annotations

from dataclasses import dataclass

from himalia import setting


@dataclass(frozen=True)
class SessionsConfig:
    database: str = setting("", "SQLite file holding the sessions (relative to the config file). Empty: "
                                "in memory. Sessions whose kernels are gone are dropped at start-up.",
                            path=True)
