"""The services plugins provide to each other, as `typing.Protocol`s, and the records they exchange.

Plugins never import each other: a handler reaches a service through `request.app[SERVICES]`
(see `himalia.keys`). Service methods take domain arguments (API paths, models, ids), never a
`web.Request`, so a storage backend or a remote kernel provider never has to know about HTTP.
Errors are raised as `himalia.errors.ApiError` subclasses (NotFound, BadRequest, ...).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Generic, Literal, Protocol, TypeVar, overload, runtime_checkable

from .errors import ApiError

if TYPE_CHECKING:
    from aiohttp import web

    from .config import Config

T = TypeVar("T")

Model = dict[str, Any]
"""A JSON-able model, shaped as jupyter_server's REST API shapes it."""


# --- providers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """A service a plugin (or a provider) cannot work without, and the plugin that provides it.

    `role` is a `Services` attribute ("kernels", "contents", ...); `provided_by` names the plugin that
    provides it by default, for the start-up error when nothing does: `plugin 'sessions' needs the kernel
    service, which plugin 'kernels' provides; it is disabled`.
    """

    role: str
    provided_by: str


@dataclass(frozen=True)
class Provider(Generic[T]):
    """A named way to build one service, yielded by a `himalia_*_providers` hook.

    `factory(app)` returns an async context manager: entered at server start-up (after the config
    is validated and `app[SERVICES]` exists), it yields the service; exited at shutdown, it releases
    everything the service holds (files, connections, kernels).

    `preferred(config)`, when given and true, makes this provider the default for its role if the
    config does not name one (the gateway's kernel provider uses it when a gateway url is set).

    `requires` lists the services the provider needs when it is the chosen one (a kernel provider
    needs the kernel service that serves its kernels); checked at start-up.
    """

    name: str
    factory: Callable[[web.Application], AbstractAsyncContextManager[T]]
    description: str = ""
    preferred: Callable[[Config], bool] | None = None
    requires: tuple[Requirement, ...] = ()


@dataclass(frozen=True)
class Service(Generic[T]):
    """A service a plugin builds on top of the chosen providers, yielded by `himalia_services`.

    `factory(app)` is entered at start-up after every provider and after the services it `requires`,
    and before any plugin resource, so every resource sees it whatever the plugins' names; it yields
    the object stored as `app[SERVICES].<role>` and is exited in reverse order at shutdown.
    (The kernels plugin's kernel service, `role="kernels"`, is one: it serves the chosen kernel
    provider's kernels with live models, the websocket relay, culling and the kernel events.)

    `stop(value)`, when given, is the service's part of the server's shutdown phase: awaited at
    shutdown (after the core closed the websockets) before any plugin resource or service exits, in
    reverse start order, so that what it ends (kernels, terminals) is ended, and its events fired,
    while every observer still runs. An exception is logged, naming the plugin. The factory's exit
    still follows later, so it must cope with `stop` having run (or not: a start-up that failed half
    way runs no shutdown phase).
    """

    role: str
    factory: Callable[[web.Application], AbstractAsyncContextManager[T]]
    description: str = ""
    requires: tuple[Requirement, ...] = ()
    stop: Callable[[T], Awaitable[None]] | None = None


# --- contents -----------------------------------------------------------------------------------


@runtime_checkable
class ContentsManager(Protocol):
    """Files and notebooks under one root, addressed by API paths ("dir/nb.ipynb", "" is the root).

    Models are jupyter_server's contents models (name, path, type, format, mimetype, content,
    created, last_modified, size, writable, hash, hash_algorithm). Paths outside the root and unknown
    paths raise NotFound/Forbidden; bad models raise BadRequest.

    The root is the server's `[server] root_dir` for a provider that serves a directory (the one root
    local kernels start under too); `kernel_path` answers relative to it.

    Hidden files are the provider's policy: which names are hidden and whether they are served (the
    filesystem provider hides names starting with "." unless `[plugins.contents] allow_hidden`). A
    provider that hides a path refuses it itself: NotFound when reading (its existence is not
    revealed), BadRequest when writing, including a `path` named inside a model given to `save`. The
    routes apply no hidden rule of their own.

    What a provider does beyond these methods (paging, notebook trust, streaming, ...) or lacks
    (writes, checkpoints) it declares in a `capabilities` attribute: see `ContentsCapabilities`.
    """

    async def get(
        self,
        path: str,
        *,
        content: bool = True,
        type: str | None = None,
        format: str | None = None,
        hash: bool = False,
    ) -> Model: ...

    async def save(self, path: str, model: Model) -> Model:
        """Write `model` at `path` (a `chunk` key in the model continues a chunked upload)."""
        ...

    async def new_untitled(self, path: str = "", *, type: str = "", ext: str = "") -> Model: ...

    async def copy(self, from_path: str, to_dir: str = "") -> Model: ...

    async def rename(self, old_path: str, new_path: str) -> Model: ...

    async def delete(self, path: str) -> None: ...

    async def exists(self, path: str) -> bool: ...

    async def kernel_path(self, path: str) -> str:
        """The API directory a kernel for the document at `path` should run in."""
        ...

    async def create_checkpoint(self, path: str) -> Model: ...

    async def list_checkpoints(self, path: str) -> list[Model]: ...

    async def restore_checkpoint(self, path: str, checkpoint_id: str) -> None: ...

    async def delete_checkpoint(self, path: str, checkpoint_id: str) -> None: ...


@dataclass(frozen=True)
class ContentsCapabilities:
    """What a contents provider does beyond the `ContentsManager` methods, or lacks, declared as a
    `capabilities` attribute of the provider (a class attribute, or set in `__init__`):

        class S3Contents:
            capabilities = ContentsCapabilities(paging=True)

    The contents routes read the declaration (through `contents_capabilities`) and never probe the
    provider: a flag set promises the method its docstring names, with that signature. A route that needs
    a capability the provider does not declare answers 501 Not Implemented, naming the capability (the
    server cannot do it for any path; the request itself was fine). A provider without the attribute has
    the defaults: writable, with checkpoints, no extras. The conformance kit (`himalia.testing.ContentsKit`)
    uses the same names for what a provider lacks (`read_only`, `checkpoints`).
    """

    read_only: bool = False
    """Every write (save, new_untitled, copy, rename, delete, creating, restoring or deleting a checkpoint)
    is refused: the routes answer 403 before calling the provider, and the provider itself raises
    Forbidden for a direct call. Its models say `"writable": false`."""
    checkpoints: bool = True
    """The four checkpoint methods work. False: the checkpoint routes answer 501 without calling them."""
    paging: bool = False
    """`get` takes `limit: int | None` and `offset: int` (see `PagedContents`): a directory's `content` is
    at most `limit` children after skipping `offset`, in listing order (`?limit=&offset=`, a Himalia
    extension). False: a request with either argument answers 501."""
    trust: bool = False
    """`trust_notebook(path)` signs a notebook as trusted (see `NotebookTrust`). False:
    `POST /api/contents/{path}/trust` answers 501."""
    streaming: bool = False
    """`open_content(...)` returns a file's model with its content left to be streamed (see
    `StreamingContents`); a fast path for large files: False, and `get` answers every read."""
    local_files: bool = False
    """`open_local_file(path)` opens the file on this machine for `/files/` to send from disk (see
    `LocalFiles`); False, and `/files/` sends what `get(path, type="file")` answers."""
    resolve_path: bool = False
    """`resolve_path(path)` maps an API path or an absolute filesystem path under the root to an API path
    (see `PathResolving`); False, and `/api/resolvePath` resolves API paths with `exists` only."""


def contents_capabilities(contents: object) -> ContentsCapabilities:
    """The capabilities `contents` declares (its `capabilities` attribute), or the defaults when it
    declares none; a `capabilities` that is not a `ContentsCapabilities` is a TypeError naming the class."""
    declared = getattr(contents, "capabilities", None)
    if declared is None:
        return ContentsCapabilities()
    if not isinstance(declared, ContentsCapabilities):
        raise TypeError(f"{type(contents).__name__}.capabilities must be a himalia.ContentsCapabilities, "
                        f"got {type(declared).__name__}")
    return declared


class PagedContents(Protocol):
    """`ContentsCapabilities.paging`: `get` with `limit` and `offset` for directory listings."""

    async def get(self, path: str, *, content: bool = True, type: str | None = None, format: str | None = None,
                  hash: bool = False, limit: int | None = None, offset: int = 0) -> Model: ...


class NotebookTrust(Protocol):
    """`ContentsCapabilities.trust`."""

    async def trust_notebook(self, path: str) -> None:
        """Sign the notebook at `path` as trusted, so its outputs render in full."""
        ...


class StreamedContent(Protocol):
    """A file's model whose content is still to be read, from `StreamingContents.open_content`."""

    model: Model
    """The model with every key but `content` (`format` says text or base64)."""

    def next_piece(self) -> bytes | None:
        """The next piece of the content as it goes inside the JSON string (escaped, ASCII; base64 as
        `base64.encodebytes` lays it out), or None at the end. Blocking: called in a worker thread. An
        exception cuts the response short (its status and head are sent already)."""
        ...

    def close(self) -> None:
        """Release what it holds; called once, after the last piece or an error."""
        ...


class StreamingContents(Protocol):
    """`ContentsCapabilities.streaming`."""

    async def open_content(self, path: str, *, type: str | None = None, format: str | None = None,
                           hash: bool = False) -> StreamedContent | None:
        """The file at `path` ready to be streamed, or None when `get` should answer instead (a directory,
        a notebook, anything the provider prefers to send whole)."""
        ...


class LocalFiles(Protocol):
    """`ContentsCapabilities.local_files`."""

    async def open_local_file(self, path: str) -> tuple[BinaryIO, str]:
        """The regular file at `path`, opened (and checked to be inside the root), and a filesystem path
        naming that same open file while it stays open. The caller closes it."""
        ...


class PathResolving(Protocol):
    """`ContentsCapabilities.resolve_path`."""

    async def resolve_path(self, path: str) -> str | None:
        """The API path of `path` (an API path, or an absolute filesystem path under the root) if it
        exists, else None."""
        ...


# --- kernels ------------------------------------------------------------------------------------


@dataclass(slots=True)
class KernelMessage:
    """One Jupyter message as it travels between a client and a kernel.

    The four dict parts stay serialized JSON (`bytes`) so a relay can pass them through untouched;
    `header_dict` parses the header once, when routing needs it. `buffers` are raw binary buffers.
    """

    channel: str
    header: bytes
    parent_header: bytes
    metadata: bytes
    content: bytes
    buffers: list[bytes] = field(default_factory=list)
    _header: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def header_dict(self) -> dict[str, Any]:
        if self._header is None:
            self._header = json.loads(self.header)
        return self._header

    @property
    def msg_type(self) -> str:
        return self.header_dict.get("msg_type", "")


class ChannelsClosed(Exception):
    """Raised by `KernelChannels.recv` once the kernel's channels are closed for good."""


class KernelNotReady(ApiError):
    """A kernel that was started or restarted did not come up: it died first (`why` is the reason,
    "died: exit code 3", "died: signal 9 (SIGKILL)"), or did not answer within the timeout. Nothing of
    a kernel that failed to start stays running. 503: the server's failure, not the client's."""

    status = 503
    default_reason = "kernel failed to start"

    def __init__(self, message: str, reason: str | None = None, *, why: str = "", status: int | None = None):
        super().__init__(message, reason, status=status)
        self.why = why

    @classmethod
    def died(cls, kernel_name: str, why: str, *, restart: bool = False) -> KernelNotReady:
        """"kernel 'x' died at start: exit code 3" for a reason like "died: exit code 3"."""
        when = "while restarting" if restart else "at start"
        if why == "died" or why.startswith("died:"):
            detail = why.removeprefix("died").lstrip(": ")
            message = f"kernel '{kernel_name}' died {when}" + (f": {detail}" if detail else "")
        else:
            message = f"kernel '{kernel_name}' stopped before it answered: {why}"
        return cls(message, "kernel failed to restart" if restart else None, why=why)

    @classmethod
    def silent(cls, kernel_name: str, timeout: float, *, restart: bool = False) -> KernelNotReady:
        what = "restarted" if restart else "started"
        return cls(f"kernel '{kernel_name}' {what} but did not answer within {timeout:g}s",
                   "kernel failed to restart" if restart else None, why="did not answer")


class KernelChannels(Protocol):
    """A live connection to one kernel's shell, control, stdin and iopub channels.

    Opened by `KernelManager.open_channels`; one per relay, shared by every client of the kernel.
    `send` signs and routes a client's message to its channel; `recv` yields the next message from
    any channel (iopub included). Both raise ChannelsClosed after `close()` or when the kernel is gone.

    Contract with the relay (the kernels plugin's hub, which serves every provider):
    - `open_channels` returns once iopub is flowing (a message sent right after is not lost), and the
      channels survive restarts (reconnecting inside if the kernel's ports moved).
    - Replies, stdin requests and iopub keep the kernel's `parent_header`, so the relay can route a
      reply to the client whose request it answers (by parent msg_id, else parent session).
    - States only the manager knows arrive as iopub `status` messages it makes itself:
      `{"execution_state": "restarting" | "dead", "reason": "died: signal 9 (SIGKILL)"}` when the
      kernel died (restarting) or cannot be brought back (dead), as jupyter_server tells clients.
    - The relay calls `recv` in one loop, continuously, and `send` from each client's handler.
    - Optionally, `recv_ready() -> bool` says whether `recv` would return without waiting. With it the relay
      writes what it queued for its clients the moment nothing more is ready (a lone message leaves in
      the same callback it arrived in); without it, at the event loop's next turn.
    """

    async def send(self, msg: KernelMessage) -> None: ...

    async def recv(self) -> KernelMessage: ...

    async def close(self) -> None: ...


@runtime_checkable
class KernelManager(Protocol):
    """Starts, tracks and stops kernels, wherever they run (local processes, a remote gateway).

    Kernel models are jupyter_server's: id, name, last_activity (ISO 8601), execution_state,
    connections, and `reason` when the kernel died or restarted (exit code or signal).
    Unknown ids raise NotFound; an unknown kernel name raises NotFound naming the installed ones.
    """

    async def list_kernelspecs(self) -> Model:
        """`{"default": name, "kernelspecs": {name: {"name", "spec", "resources"}}}`.

        `resources` maps a resource key to a file name served by `get_kernelspec_resource`
        (`{"logo-64x64": "logo-64x64.png", "kernel.js": "kernel.js"}`); the routes turn names into
        URLs on this server. A value containing "/" is taken as a URL already.
        """
        ...

    async def get_kernelspec(self, name: str) -> Model: ...

    async def get_kernelspec_resource(self, name: str, resource: str) -> tuple[bytes, str]:
        """The bytes and content type of a kernelspec file (logo-64x64.png, kernel.js)."""
        ...

    async def start_kernel(
        self, name: str | None = None, *, path: str | None = None, env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Model:
        """Start a kernel of spec `name` (None: the default) in API directory `path`; its model, once
        the kernel has answered (a reply to a kernel_info_request, or a status of its own on iopub).

        Readiness is part of the contract: a kernel that dies before it answers, or does not answer
        within `timeout` seconds (None: 60), raises `KernelNotReady` naming why (exit code, signal,
        timeout), and nothing of it stays running. Cancelling the call leaves nothing running either.
        A provider may keep the channels it used to see the answer for the next `open_channels`
        call, so a start costs one channel set (one upstream websocket for a remote provider).
        """
        ...

    async def list_kernels(self) -> list[Model]: ...

    async def get_kernel(self, kernel_id: str) -> Model: ...

    async def shutdown_kernel(self, kernel_id: str, *, now: bool = False) -> None: ...

    async def interrupt_kernel(self, kernel_id: str) -> None: ...

    async def restart_kernel(self, kernel_id: str, *, timeout: float | None = None) -> Model:
        """Restart and return once the kernel answers again (its open channels keep working);
        `KernelNotReady` when it dies instead or stays silent for `timeout` seconds (None: 60)."""
        ...

    async def open_channels(self, kernel_id: str) -> KernelChannels:
        """A new KernelChannels to the kernel (see its contract); NotFound for unknown ids."""
        ...


class KernelRelay(Protocol):
    """The websocket relay of the kernel service (`app[SERVICES].kernel_relay`, from the kernels
    plugin): one `KernelChannels` per kernel shared by every websocket client of it, with replay
    buffers for disconnected client sessions. Its own role, so nothing has to unwrap the kernel
    service to find it."""

    def connections(self, kernel_id: str) -> int:
        """Websocket clients attached to `kernel_id` now (0 for an unknown or idle kernel)."""
        ...


# --- sessions -----------------------------------------------------------------------------------


@dataclass
class SessionRecord:
    """One row of the session store: which document (path, name, type) uses which kernel.

    `name` is None when the client gave none (jupyter_server then answers `"name": null`).
    """

    id: str
    path: str
    name: str | None
    type: str
    kernel_id: str


@runtime_checkable
class SessionStore(Protocol):
    """Where session records live. Small on purpose, so another database can back it.

    The store keeps rows only: it never talks to kernels. The sessions plugin decides when a row is
    stale (its kernel is gone) and removes it. Methods may be called concurrently from one event
    loop; each must be atomic on its own.
    """

    async def add(self, record: SessionRecord) -> None:
        """Insert `record`; raises ValueError if a record with its id exists."""
        ...

    async def get(self, session_id: str) -> SessionRecord | None: ...

    async def find(self, *, path: str | None = None, kernel_id: str | None = None) -> list[SessionRecord]:
        """Records matching every given field (all records when none is given), oldest first."""
        ...

    async def update(self, record: SessionRecord) -> bool:
        """Replace the record with `record.id`; False when there is none."""
        ...

    async def remove(self, session_id: str) -> bool:
        """Delete the record; False when there was none (so only one caller reports a deletion)."""
        ...

    async def list(self) -> list[SessionRecord]:
        """Every record, oldest first."""
        ...


# --- identity -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """What a request presents to prove who sent it; no `web.Request` so providers stay HTTP-free."""

    method: str
    path: str
    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    query: Mapping[str, str]
    is_websocket: bool
    secure: bool = False


@dataclass(frozen=True)
class Identity:
    """Who is making a request; jupyter_server's identity model."""

    username: str
    name: str = ""
    display_name: str = ""
    initials: str | None = None
    avatar_url: str | None = None
    color: str | None = None

    def model(self) -> Model:
        return {
            "username": self.username,
            "name": self.name or self.username,
            "display_name": self.display_name or self.name or self.username,
            "initials": self.initials,
            "avatar_url": self.avatar_url,
            "color": self.color,
        }


@dataclass(frozen=True)
class Cookie:
    """A cookie an identity provider wants set on the response (path is the server's base_url)."""

    name: str
    value: str
    httponly: bool = True
    max_age: int | None = None


@dataclass
class Authenticated:
    """A successful authentication, with cookies the response should set (e.g. after ?token=)."""

    identity: Identity
    set_cookies: list[Cookie] = field(default_factory=list)


@runtime_checkable
class IdentityProvider(Protocol):
    """Decides who a request comes from. Raises Unauthorized (401) or Forbidden (403)."""

    token: str | None
    """The token a client logs in with, for the start-up URL and the server-info file; None if none."""

    async def authenticate(self, credentials: Credentials) -> Authenticated: ...


# --- terminals and events (optional services a plugin may provide) ------------------------------


@runtime_checkable
class TerminalManager(Protocol):
    """Shells in pseudo-terminals on the server's machine, named, as jupyter_server_terminals serves them.

    Models are `{"name": str, "last_activity": ISO 8601}`. Unknown names raise NotFound; a `cwd`
    outside the server's root, or an existing name, raise BadRequest / Conflict. Set in
    `Services.terminals` by the plugin that runs terminals while the server runs; None when terminals
    are off, so a page (JupyterLab's `terminalsAvailable`) can tell.
    """

    async def create(self, *, name: str | None = None, cwd: str = "") -> Model:
        """Start a shell in API directory `cwd` ("" is the root) under `name` (None: the next free number)."""
        ...

    async def list(self) -> list[Model]: ...

    async def get(self, name: str) -> Model: ...

    async def delete(self, name: str) -> None:
        """End the terminal: every process of its session is signalled, and it is forgotten."""
        ...


@runtime_checkable
class EventBus(Protocol):
    """Structured server events (jupyter_events' `EventLogger` satisfies this Protocol).

    `emit` validates `data` against the registered schema `schema_id` and hands it to every listener
    (the `/api/events/subscribe` websockets); it must be called on the event loop's thread. Schemas are
    registered with the `himalia_event_schemas` hook. Set in `Services.events` by the events plugin.
    """

    def emit(self, *, schema_id: str, data: Model) -> Model | None: ...


# --- the holder ---------------------------------------------------------------------------------


@dataclass
class Services:
    """The chosen providers' services and the services plugins build on them, filled in at start-up
    (before any plugin resource starts); reached through `app[SERVICES]`.

    `kernel_provider` is the chosen kernel provider (local processes, a gateway, a third party's);
    `kernels` is the kernel service every other plugin uses: the same Protocol, serving the
    provider's kernels with live models, the websocket relay, culling and the kernel events (the
    kernels plugin provides it). No plugin replaces another's service.
    """

    contents: ContentsManager | None = None
    session_store: SessionStore | None = None
    kernels: KernelManager | None = None
    kernel_provider: KernelManager | None = None
    kernel_relay: KernelRelay | None = None
    identity: IdentityProvider | None = None
    terminals: TerminalManager | None = None
    """Not a provider role: set by the terminals plugin while it runs (None when terminals are off)."""
    events: EventBus | None = None
    """Not a provider role: set by the events plugin while it runs."""

    @overload
    def require(self, role: Literal["contents"]) -> ContentsManager: ...

    @overload
    def require(self, role: Literal["session_store"]) -> SessionStore: ...

    @overload
    def require(self, role: Literal["kernels"]) -> KernelManager: ...

    @overload
    def require(self, role: Literal["identity"]) -> IdentityProvider: ...

    def require(self, role: str) -> Any:
        """The service in `role`, typed as its Protocol; a 503 naming the role when none is running."""
        from .errors import ApiError

        service = getattr(self, role)
        if service is None:
            raise ApiError(f"no {role} service is configured on this server", "service unavailable", status=503)
        return service


AppResource = Callable[["web.Application"], AsyncIterator[None]]
"""A lifecycle resource: an async generator function for aiohttp's `cleanup_ctx`."""
