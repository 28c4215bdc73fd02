"""The `[plugins.kernels]` table: what serves any kernel provider (first answer, buffers, culling)."""

from __future__ import annotations

from dataclasses import dataclass

from himalia import setting


MOVED = {key: "[plugins.local]" for key in ("shutdown_wait_time", "restart_check_interval",
                                             "kernelspec_cache_ttl", "restart_limit", "autorestart")}
"""Keys that left [plugins.kernels] when the local provider became its own plugin."""


@dataclass(frozen=True)
class KernelsConfig:
    default_kernel_name: str = setting("", "Kernelspec started when a client names none; empty: the provider's "
                                           "default (`python3` when installed, for local kernels).")
    kernel_info_timeout: float = setting(60.0, "Seconds a started or restarted kernel gets to answer before the "
                                               "start fails (503) or clients are told it is not responding.")
    buffer_max_messages: int = setting(10000, "Replies and input requests kept per disconnected client session "
                                              "for replay on reconnect (the output it missed is replayed from "
                                              "the kernel's output log); older ones are dropped, and the "
                                              "client is told so.")
    buffer_max_bytes: int = setting(64 * 1024 * 1024, "Bytes of replies and input requests kept per "
                                                      "disconnected client session for replay.")
    buffer_max_sessions: int = setting(16, "Disconnected sessions remembered per kernel (where each stands in "
                                           "the output log, its replies); the oldest is forgotten.")
    buffer_max_total_bytes: int = setting(256 * 1024 * 1024, "Bytes the replies and input requests kept for all "
                                                             "disconnected sessions of all kernels may hold "
                                                             "together; past it, those of the sessions that left "
                                                             "first are emptied (their clients are told on "
                                                             "reconnect). 0: no server-wide cap.")
    client_max_backlog_bytes: int = setting(64 * 1024 * 1024, "Bytes a websocket client may leave unread "
                                                              "before it is disconnected (its session is "
                                                              "then buffered like any disconnected one).")
    server_max_backlog_bytes: int = setting(256 * 1024 * 1024, "Bytes all websocket clients of all kernels "
                                                               "together may leave unread; past it, the client "
                                                               "with the largest backlog is disconnected (code "
                                                               "1013, its session buffered like any "
                                                               "disconnected one). 0: no server-wide cap.")
    cull_idle_timeout: float = setting(0.0, "Shut down kernels idle this many seconds; 0 turns culling off.")
    cull_interval: float = setting(300.0, "Seconds between checks for idle kernels.")
    cull_connected: bool = setting(False, "Also cull idle kernels that have websocket connections.")
    cull_busy: bool = setting(False, "Also cull kernels that are busy (with no activity for the timeout).")
    output_log_max_messages: int = setting(10000, "Messages of each kernel's output log (its iopub, numbered), "
                                                  "which clients read after a sequence number (websocket "
                                                  "`?since=N`, `GET /api/kernels/{id}/outputs?since=N`) and "
                                                  "from which a reconnecting session is replayed the output "
                                                  "it missed; 0 keeps no log (a reconnecting session is then "
                                                  "told how much it missed, and gets its replies only).")
    output_log_max_bytes: int = setting(32 * 1024 * 1024, "Bytes of each kernel's output log; the oldest "
                                                          "messages go first.")
    persist: bool = setting(False, "Keep mode: kernels outlive the server. At SIGTERM/SIGINT (or POST "
                                   "/api/shutdown) websockets are closed with 1012 and the kernels keep "
                                   "running; the next server on the same [server] state_dir adopts them. "
                                   "Off: every kernel is shut down with the server. `himalia kernels stop` "
                                   "stops kept kernels.")


    def __post_init__(self) -> None:
        for name in ("kernel_info_timeout", "cull_idle_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"'{name}' must be >= 0, got {getattr(self, name)}")
        if self.cull_interval <= 0:
            raise ValueError(f"'cull_interval' must be > 0, got {self.cull_interval}")
        for name in ("output_log_max_messages", "output_log_max_bytes", "buffer_max_messages", "buffer_max_bytes", "buffer_max_sessions", "buffer_max_total_bytes",
                     "client_max_backlog_bytes", "server_max_backlog_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"'{name}' must be >= 0, got {getattr(self, name)}")
