"""The `[plugins.local]` table: what only local kernel processes have (restarts, liveness, shutdown)."""

from __future__ import annotations

from dataclasses import dataclass

from himalia import setting


@dataclass(frozen=True)
class LocalConfig:
    shutdown_wait_time: float = setting(5.0, "Seconds a kernel gets to exit once shut down: half of it after "
                                             "`shutdown_request`, then SIGTERM reaches its process group, the "
                                             "other half before SIGKILL.")
    shutdown: str = setting("request", "How a kernel is shut down: \"request\" (jupyter_client's sequence: interrupt, "
                                       "`shutdown_request`, then SIGTERM and SIGKILL if it does not exit) or "
                                       "\"terminate\" (SIGTERM to its process group at once, SIGKILL after "
                                       "shutdown_wait_time): ~10× faster with ipykernel, which then exits without "
                                       "its polite teardown (IPython's last history writes and atexit handlers "
                                       "do not run).")
    restart_check_interval: float = setting(1.0, "Seconds between liveness checks of each local kernel "
                                                 "(jupyter_client's restarter `time_to_dead`; jupyter_server "
                                                 "uses 3): a death is noticed within this, and a kernel that "
                                                 "dies at start is reported dead after restart_limit checks.")
    kernelspec_cache_ttl: float = setting(2.0, "Seconds a kernelspec listing is reused before the kernel dirs "
                                               "are read again; 0 reads them on every request.")
    restart_limit: int = setting(5, "Automatic restarts tried in a row before a dying kernel is reported dead.")
    autorestart: bool = setting(True, "Restart local kernels that die.")
    pool: dict[str, int] = setting(default_factory=dict, help=(
        "Idle started kernels to keep per kernelspec, e.g. {python3 = 1}; a start of that kernelspec takes "
        "one, moved to the notebook's directory and environment, and a replacement starts in the "
        "background. Off by default: each idle kernel holds a kernel's memory. Only kernels whose "
        "kernelspec can be relocated (ipykernel) are pooled. In keep mode ([plugins.kernels] persist) idle "
        "members are stopped with the server, never kept; one handed out is kept like any kernel."))
    pool_fill_delay: float = setting(1.0, "Seconds the pool waits after handing out a kernel before it starts "
                                          "the replacement (one at a time, and never while a kernel is being "
                                          "started on demand), so refills leave the CPU to users' starts.")

    def __post_init__(self) -> None:
        if self.shutdown_wait_time < 0:
            raise ValueError(f"'shutdown_wait_time' must be >= 0, got {self.shutdown_wait_time}")
        if self.shutdown not in ("request", "terminate"):
            raise ValueError(f"'shutdown' must be \"request\" or \"terminate\", got {self.shutdown!r}")
        if self.restart_check_interval <= 0:
            raise ValueError(f"'restart_check_interval' must be > 0, got {self.restart_check_interval}")
        if self.restart_limit < 0:
            raise ValueError(f"'restart_limit' must be >= 0, got {self.restart_limit}")
        for name, size in self.pool.items():
            if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= 64:
                raise ValueError(f"'pool' wants a count of 0..64 kernels per kernelspec, got {name} = {size!r}")
        if self.pool_fill_delay < 0:
            raise ValueError(f"'pool_fill_delay' must be >= 0, got {self.pool_fill_delay}")
