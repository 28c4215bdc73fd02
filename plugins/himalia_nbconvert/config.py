"""The `[plugins.nbconvert]` table."""

from __future__ import annotations

from dataclasses import dataclass

from himalia import setting


@dataclass(frozen=True)
class NbconvertConfig:
    workers: int = setting(2, "Conversions run at once, each in its own worker thread (a big export never "
                              "holds up other requests, nor takes every thread the server has).")
    csp_sandbox: bool = setting(True, "Serve exports with `Content-Security-Policy: sandbox allow-scripts`, so "
                                      "scripts in an exported notebook run in an opaque origin and cannot "
                                      "reach the server with the user's cookie (jupyter_server's default too).")

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"'workers' must be >= 1, got {self.workers}")
