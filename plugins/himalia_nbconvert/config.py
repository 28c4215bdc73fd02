"""The `[plugins.nbconvert]` table."""

from __future__ import annotations

from dataclasses import dataclass

from himalia import setting


@dataclass(frozen=True)
class NbconvertConfig:
    workers: int = setting(2, "Conversions run at once, each in its own worker thread (a big export never "
                              "holds up other requests, nor takes every thread the server has).")

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"'workers' must be >= 1, got {self.workers}")
