"""The server's event bus (the `events` service, `app[SERVICES].events`): jupyter_events' `EventLogger`,
with every schema plugins give through `himalia_event_schemas`, built the first time something needs it.

Importing jupyter_events (jsonschema and its format checkers) takes a second or more, so it is not
done at start-up: the logger is built in a worker thread when the first subscriber connects or the
first client event is posted. Until then `emit` does nothing, which is exactly what jupyter_events'
own `emit` does when no one listens.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from himalia import CONFIG, HOOKS, PLUGINS, ApiError, Model

from .observe import SaveObserver

log = logging.getLogger("himalia.events")


class EventsUnavailable(ApiError):
    status = 503
    default_reason = "events unavailable"


class LazyEventBus:
    """Implements `himalia.EventBus`; `logger()` gives the jupyter_events EventLogger, building it once."""

    def __init__(self, schemas: list[tuple[str, Any]]):
        self._schemas = schemas
        self._logger: Any = None
        self._building: asyncio.Future[Any] | None = None

    def emit(self, *, schema_id: str, data: Model, timestamp_override: Any = None) -> Model | None:
        if self._logger is None:
            return None  # no subscriber has ever connected: no one can be listening
        return self._logger.emit(schema_id=schema_id, data=data, timestamp_override=timestamp_override)

    async def logger(self) -> Any:
        if self._logger is None:
            if self._building is None:
                self._building = asyncio.ensure_future(asyncio.to_thread(self._build))
            self._logger = await asyncio.shield(self._building)
        return self._logger

    def _build(self) -> Any:
        try:
            from jupyter_events import EventLogger
        except ImportError as e:
            raise EventsUnavailable(f"events are unavailable: {e} (pip install 'himalia[events]')") from None
        logger = EventLogger()
        for plugin, schema in self._schemas:
            try:
                logger.register_event_schema(schema)
            except Exception as e:
                what = schema.get("$id", "a schema") if isinstance(schema, dict) else str(schema)
                log.error("plugin '%s' gave an event schema that does not register (%s), left out: %s: %s",
                          plugin, what, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        return logger


@asynccontextmanager
async def event_bus(app: web.Application) -> AsyncIterator[LazyEventBus]:
    """The `events` service (`app[SERVICES].events`): the bus with every plugin's schemas; while it runs,
    saves are observed on this app's plugin manager (`himalia_contents_post_save` does not say which app
    saved, so the observer is one object per app, registered here)."""
    bus = LazyEventBus([(a.plugin, a.item) for a in app[HOOKS].event_schemas(app[CONFIG])])
    observer = SaveObserver(app)
    pm = app[PLUGINS].pm
    name = f"events.saves.{id(observer):x}"  # unique even if two apps shared a plugin manager
    pm.register(observer, name=name)
    try:
        yield bus
    finally:
        pm.unregister(name=name)
