"""The `[plugins.kernels]` table: kernel lifecycle, reconnect buffers and culling."""

from __future__ import annotations

from dataclasses import dataclass

from himalia import setting


@dataclass(frozen=True)
class KernelsConfig:
    default_kernel_name: str = setting("", "Kernelspec started when a client names none; empty: `python3` "
                                           "when installed, else the first installed spec.")
    shutdown_wait_time: float = setting(5.0, "Seconds a kernel gets to exit once shut down: half of it after "
                                             "`shutdown_request`, then SIGTERM reaches its process group, the "
                                             "other half before SIGKILL.")
    kernel_info_timeout: float = setting(60.0, "Seconds to wait for a (re)started kernel to answer on its "
                                               "channels before clients are told it is not responding.")
    restart_check_interval: float = setting(1.0, "Seconds between liveness checks of each local kernel "
                                                 "(jupyter_client's restarter `time_to_dead`; jupyter_server "
                                                 "uses 3): a death is noticed within this, and a kernel that "
                                                 "dies at start is reported dead after restart_limit checks.")
    kernelspec_cache_ttl: float = setting(2.0, "Seconds a kernelspec listing is reused before the kernel dirs "
                                               "are read again; 0 reads them on every request.")
    restart_limit: int = setting(5, "Automatic restarts tried in a row before a dying kernel is reported dead.")
    autorestart: bool = setting(True, "Restart local kernels that die.")
    buffer_max_messages: int = setting(10000, "Messages kept per disconnected client session for replay on "
                                              "reconnect; older output is dropped, and the client is told so.")
    buffer_max_bytes: int = setting(64 * 1024 * 1024, "Bytes kept per disconnected client session for replay.")
    buffer_max_sessions: int = setting(16, "Disconnected sessions buffered per kernel; the oldest is dropped.")
    client_max_backlog_bytes: int = setting(64 * 1024 * 1024, "Bytes a websocket client may leave unread "
                                                              "before it is disconnected (its session is "
                                                              "then buffered like any disconnected one).")
    cull_idle_timeout: float = setting(0.0, "Shut down kernels idle this many seconds; 0 turns culling off.")
    cull_interval: float = setting(300.0, "Seconds between checks for idle kernels.")
    cull_connected: bool = setting(False, "Also cull idle kernels that have websocket connections.")
    cull_busy: bool = setting(False, "Also cull kernels that are busy (with no activity for the timeout).")

    def __post_init__(self) -> None:
        for name in ("shutdown_wait_time", "kernel_info_timeout", "cull_idle_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"'{name}' must be >= 0, got {getattr(self, name)}")
        for name in ("restart_check_interval", "cull_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"'{name}' must be > 0, got {getattr(self, name)}")
        for name in ("buffer_max_messages", "buffer_max_bytes", "buffer_max_sessions", "client_max_backlog_bytes",
                     "restart_limit"):
            if getattr(self, name) < 0:
                raise ValueError(f"'{name}' must be >= 0, got {getattr(self, name)}")
