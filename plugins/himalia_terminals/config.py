"""The `[plugins.terminals]` table."""

from __future__ import annotations

from dataclasses import dataclass

from himalia import setting


@dataclass(frozen=True)
class TerminalsConfig:
    enabled: bool = setting(True, "Serve terminals (a shell for anyone holding the token, as a kernel is). "
                                  "Off: no terminal routes, and JupyterLab offers no terminal.")
    shell_command: list[str] = setting(default_factory=list, help="Command run in each terminal. Empty: $SHELL "
                                       "(else sh), as a login shell (-l) when the server has no terminal of "
                                       "its own, as jupyter_server_terminals does.")
    cull_inactive_timeout: float = setting(0.0, "End terminals with no input or output for this many seconds; "
                                                "0 turns culling off (jupyter_server's default too).")
    cull_interval: float = setting(300.0, "Seconds between checks for inactive terminals.")
    scrollback_chars: int = setting(256 * 1024, "Characters of recent output kept per terminal and replayed to "
                                                "a websocket that (re)connects, so a reloaded page shows them.")
    kill_wait: float = setting(2.0, "Seconds a terminal's processes get to exit after SIGHUP at DELETE or "
                                    "shutdown (half of it), then after SIGTERM (the other half), before SIGKILL.")

    def __post_init__(self) -> None:
        for name in ("cull_inactive_timeout", "kill_wait"):
            if getattr(self, name) < 0:
                raise ValueError(f"'{name}' must be >= 0, got {getattr(self, name)}")
        if self.cull_interval <= 0:
            raise ValueError(f"'cull_interval' must be > 0, got {self.cull_interval}")
        if self.scrollback_chars < 0:
            raise ValueError(f"'scrollback_chars' must be >= 0, got {self.scrollback_chars}")
