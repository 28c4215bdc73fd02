"""Server-wide activity: when the server started and when an API request last arrived."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def isoformat(dt: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as jupyter_server writes timestamps."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Activity:
    started: datetime = field(default_factory=utcnow)
    last_activity: datetime = field(default_factory=utcnow)

    def touch(self) -> None:
        self.last_activity = utcnow()
