"""Every hook a Himalia plugin can implement, grouped by when it is called.

Hooks are synchronous: async work lives in the objects they return (services, handlers, async
context managers). An `async def` implementation is refused at start-up, naming the plugin.
Collect-all hooks are called once per plugin in plugin-name order (never registration order);
each implementation returns a list (or None). The core calls hooks only through `himalia.hooks.Hooks`,
which calls each implementation itself, so pluggy's `tryfirst`, `trylast`, `wrapper` and `hookwrapper`
have no meaning here: a plugin using them is refused at load, naming the plugin and the hook.
"""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from aiohttp import web

    from .config import Config, ConfigSection
    from .records import CliCommand, CliOption, Middleware, Route
    from .statedir import KeptKernels
    from .services import (
        AppResource,
        ContentsManager,
        IdentityProvider,
        KernelManager,
        Model,
        Provider,
        Requirement,
        Service,
        SessionStore,
    )

hookspec = pluggy.HookspecMarker("himalia")


# --- configuration (before the app exists) ------------------------------------------------------


@hookspec
def himalia_config_sections() -> list[ConfigSection]:
    """Declare the `[plugins.<name>]` tables this plugin reads.

    Called once at start-up, before the config file is validated. Collect-all.
    Returns a list of `ConfigSection(name, schema)`; `schema` is a frozen dataclass whose fields
    (made with `himalia.setting`) give the keys, types, defaults and help. The validated instance
    is then `config.section(name)`. Two plugins declaring one name is a start-up error.

    Example::

        @dataclass(frozen=True)
        class HelloConfig:
            greeting: str = setting("hello", "What to say.")

        @hookimpl
        def himalia_config_sections():
            return [ConfigSection("hello", HelloConfig)]

    .. versionadded:: 0.1
    """


@hookspec
def himalia_cli_options() -> list[CliOption]:
    """Add `himalia serve` flags that set config keys (`--gateway-url` → plugins.gateway.url).

    Called once when the command line is parsed, after plugins are loaded. Collect-all.
    Returns a list of `CliOption(flag, key, help)`. A flag already taken is a start-up error.

    Example::

        @hookimpl
        def himalia_cli_options():
            return [CliOption("--hello-greeting", "plugins.hello.greeting", "What to say.")]

    .. versionadded:: 0.1
    """


@hookspec
def himalia_server_defaults() -> dict[str, Any]:
    """Propose `[server]` values for when neither the config file nor a flag sets them: the
    `jupyterhub` plugin, started by a hub's spawner, proposes the address and prefix the hub gave.

    Called once at start-up, after plugins are loaded and before the config is validated.
    Collect-all; returns a dict of `[server]` keys (empty when it has nothing to say). The values are
    validated like the file's. Two plugins proposing different values for one key is a start-up error
    naming both.

    Example::

        @hookimpl
        def himalia_server_defaults():
            return {"port": 9999} if os.environ.get("MY_PLATFORM") else {}

    .. versionadded:: 0.2
    """


@hookspec
def himalia_cli_commands() -> list[CliCommand]:
    """Add `himalia NAME ...` commands that work with no server running (`himalia kernels list`).

    Called once when `himalia` is run with a command that is not built in, after plugins are loaded
    and the config validated. Collect-all. Returns `CliCommand(name, help, add_arguments, run)`
    records; a name that is built in or taken by another plugin is an error.

    Example::

        @hookimpl
        def himalia_cli_commands():
            return [CliCommand("hello", "say hello", lambda p: p.add_argument("who"),
                               lambda ns, config: print("hello", ns.who) or 0)]

    .. versionadded:: 0.1
    """


@hookspec
def himalia_kept_kernels(config: Config) -> list[KeptKernels]:
    """Contribute a provider's kernels recorded in the state dir to `himalia kernels list|stop`, which
    works with no server running (keep mode leaves kernels running between servers).

    Called once when `himalia kernels` runs, with the validated config. Collect-all. Returns a list
    of `KeptKernels` (see `himalia.statedir`): `provider`, `list()` of `KeptKernel(id, name, where,
    state)` and `stop(ids)` → {id: None, or a one-line error when it could not be stopped (its record
    is kept)}. The command holds the state dir's lock around `stop`.

    Example::

        @hookimpl
        def himalia_kept_kernels(config):
            return [MyKept(state_dir_of(config))]  # provider = "mine"; list(); stop(ids)

    .. versionadded:: 0.3
    """


# --- providers (one service per role, chosen by name in [server]) -------------------------------


@hookspec
def himalia_contents_providers() -> list[Provider[ContentsManager]]:
    """Offer ways to build the contents manager.

    Called once at start-up. Collect-all. Returns `Provider(name, factory)` records;
    `[server] contents_provider` (default `filesystem`) picks one. Unknown or duplicate names are
    start-up errors listing the installed providers. `factory(app)` is an async context manager
    yielding a `ContentsManager`, entered at start-up and exited at shutdown.

    Example::

        @hookimpl
        def himalia_contents_providers():
            return [Provider("memory", memory_contents)]

    .. versionadded:: 0.1
    """


@hookspec
def himalia_session_store_providers() -> list[Provider[SessionStore]]:
    """Offer ways to build the session store.

    Called once at start-up. Collect-all. `[server] session_store` (default `sqlite`) picks one.
    `factory(app)` is an async context manager yielding a `SessionStore`.

    Example::

        @hookimpl
        def himalia_session_store_providers():
            return [Provider("redis", redis_store)]

    .. versionadded:: 0.1
    """


@hookspec
def himalia_kernel_providers() -> list[Provider[KernelManager]]:
    """Offer ways to run kernels (local processes, a remote gateway, a cluster).

    Called once at start-up. Collect-all. `[server] kernel_provider` picks one; when it is empty,
    the one provider whose `preferred(config)` is true (the gateway, when its url is set), else
    `local`. `factory(app)` is an async context manager yielding a `KernelManager` (stored as
    `app[SERVICES].kernel_provider`); leaving it shuts every kernel it started down. A provider
    implements the provider contract only, readiness included (see `KernelManager.start_kernel`):
    the kernels plugin's kernel service (`app[SERVICES].kernels`) serves its kernels with the routes,
    the websocket relay, culling and the events, so it should require that service.

    Example::

        @hookimpl
        def himalia_kernel_providers():
            return [Provider("local", local_kernels, requires=(Requirement("kernels", provided_by="kernels"),))]

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 the chosen provider is `kernel_provider`; `Provider.requires`.
    """


@hookspec
def himalia_identity_providers() -> list[Provider[IdentityProvider]]:
    """Offer ways to authenticate requests.

    Called once at start-up. Collect-all. `[server] identity_provider` (default `token`) picks one.
    With none installed the server refuses to start unless `[server] allow_unauthenticated_access`
    is true, so disabling the auth plugin never silently opens the server.

    Example::

        @hookimpl
        def himalia_identity_providers():
            return [Provider("token", token_identity)]

    .. versionadded:: 0.1
    """


@hookspec
def himalia_services(config: Config) -> list[Service[Any]]:
    """Offer services built on top of the chosen providers, each under its own `Services` role.

    Called once while the app is built. Collect-all. Each `Service(role, factory, requires=...)` is
    entered at start-up after every provider and after the services it requires, before any plugin
    resource (so a resource sees every service, whatever the plugins' names), and exited in reverse
    at shutdown. A role is filled once: two plugins offering one role, or a service for a provider's
    role, is a start-up error naming both plugins. A service that runs things observers hear about
    (kernels, terminals) ends them in its `stop`, the shutdown phase, which runs before any plugin
    resource exits (see `Service.stop` and `himalia_resources`).

    Example::

        @hookimpl
        def himalia_services(config):
            return [Service("kernels", kernel_service, requires=(Requirement("kernel_provider", "local"),))]

    .. versionadded:: 0.2
    """


@hookspec
def himalia_requirements(config: Config) -> list[Requirement]:
    """Declare the services this plugin cannot work without.

    Called once while the app is built. Collect-all. A `Requirement(role, provided_by)` whose role
    no enabled plugin fills is a one-line start-up error naming both plugins: `plugin 'sessions'
    needs the kernel service, which plugin 'kernels' provides; it is disabled`. Providers declare
    theirs on the `Provider` record (checked only for the chosen provider).

    Example::

        @hookimpl
        def himalia_requirements(config):
            return [Requirement("kernels", provided_by="kernels")]

    .. versionadded:: 0.2
    """


# --- the web application (while the app is built, before it is frozen) ---------------------------


@hookspec
def himalia_routes(config: Config) -> list[Route]:
    """Register HTTP and websocket routes.

    Called once while the app is built. Collect-all. Returns `Route(method, path, handler)`
    records; paths are relative to base_url. Every route requires authentication unless it says
    `auth=False`. Two plugins registering one method and path is a start-up error naming both.

    Example::

        @hookimpl
        def himalia_routes(config):
            return [Route("GET", "/api/hello", hello)]

    .. versionadded:: 0.1
    """


@hookspec
def himalia_middlewares(config: Config) -> list[Middleware]:
    """Add aiohttp middlewares around the handlers.

    Called once while the app is built. Collect-all. `Middleware(func, order)`: order < 0 runs
    before authentication (after the core's Host and Origin checks), order >= 0 on authenticated
    requests only; lower is outermost.

    Example::

        @hookimpl
        def himalia_middlewares(config):
            return [Middleware(request_timer, order=-10)]

    .. versionadded:: 0.1
    """


@hookspec
def himalia_resources(config: Config) -> list[AppResource]:
    """Lifecycle resources: async generator functions wired into aiohttp's `cleanup_ctx`.

    Called once while the app is built. Collect-all. Each function takes the app; code before its
    `yield` runs at start-up (after the providers' services exist), code after it at shutdown, in
    reverse order. Background tasks are started and cancelled here. An exception before `yield`
    stops start-up with one line naming the plugin and the resource.

    Shutdown order (the same whatever the plugins' names): websockets are closed; then the shutdown
    phase stops every kernel and terminal (each service's `Service.stop`), so `himalia_kernel_stopped`
    (reason "shutdown") has fired for every kernel before any resource's code after `yield` runs;
    then resources exit, then services, then providers.

    Example::

        @hookimpl
        def himalia_resources(config):
            async def ticker(app):
                task = asyncio.create_task(tick())
                yield
                task.cancel()
            return [ticker]

    .. versionadded:: 0.1
    """


@hookspec
def himalia_openapi(config: Config) -> dict[str, Any]:
    """Describe this plugin's routes for `GET /api/spec.yaml` (OpenAPI 3.0 fragments).

    Called once per app, on the first `GET /api/spec.yaml` (the document is then cached). Collect-all.
    Returns a dict with `paths` and optionally `components` (`{"schemas": {...}}`); paths are relative
    to base_url.

    Example::

        @hookimpl
        def himalia_openapi(config):
            return {"paths": {"/api/hello": {"get": {"responses": {"200": {"description": "hi"}}}}}}

    .. versionadded:: 0.1
    """


@hookspec
def himalia_status(app: web.Application) -> dict[str, Any]:
    """Add fields to `GET /api/status` (the gateway adds its reachability).

    Called on every status request: keep it cheap and synchronous (read state that a background
    resource keeps current). Collect-all; the dicts are merged in plugin-name order.

    Example::

        @hookimpl
        def himalia_status(app):
            return {"gateway": {"url": url, "reachable": True}}

    .. versionadded:: 0.1
    """


@hookspec
def himalia_event_schemas(config: Config) -> list[dict[str, Any] | str | PathLike[str]]:
    """Register the schemas of structured events this plugin emits, or lets clients emit with
    `POST /api/events` (jupyter_events schemas: `$id`, `version`, `properties`).

    Called once at start-up by the events plugin, which registers each schema with jupyter_events'
    `EventLogger.register_event_schema` when the logger is first needed (jupyter_events is slow to
    import, so that is the first subscriber or client event, not start-up). Collect-all. Returns
    schemas as dicts, or paths of JSON or YAML schema files. A schema that does not register (invalid,
    or an `$id` taken) is logged as an error naming the plugin and left out. Emit with
    `app[SERVICES].events.emit(schema_id=..., data=...)`, on the event loop; `/api/events/subscribe`
    streams every emitted event.

    Example::

        HELLO = {"$id": "https://example.org/hello/v1", "version": "1", "type": "object",
                 "properties": {"greeting": {"type": "string"}}, "required": ["greeting"]}

        @hookimpl
        def himalia_event_schemas(config):
            return [HELLO]

    .. versionadded:: 0.1
    """


@hookspec
def himalia_default_urls(config: Config) -> list[str]:
    """Offer a page for the server's root: `GET {base_url}` redirects to the first one offered.

    Called once while the app is built. Collect-all, in plugin-name order; the first path wins.
    Paths are relative to base_url ("/lab"). With none offered the root answers a JSON note that
    the server runs and where the API is. The query string (a `?token=` login) is dropped from the
    redirect, since the login cookie is already set by then.

    Example::

        @hookimpl
        def himalia_default_urls(config):
            return ["/lab"]

    .. versionadded:: 0.2
    """


@hookspec
def himalia_page_config(app: web.Application) -> dict[str, Any]:
    """Add keys to the page config that web UIs read from their HTML page (JupyterLab's
    `jupyter-config-data`): `{"terminalsAvailable": True}` from a terminals plugin, hub keys, ...

    Called by a plugin that renders such pages (the `lab` plugin), each time it renders one; keep it
    cheap and synchronous. Collect-all; the dicts are merged in plugin-name order.

    Example::

        @hookimpl
        def himalia_page_config(app):
            return {"terminalsAvailable": True}

    .. versionadded:: 0.2
    """


@hookspec
def himalia_plugin_notes(config: Config | None) -> list[str]:
    """Say something a person should know about this plugin in `himalia plugins` ("serves nothing:
    pip install 'himalia[lab]'"), or nothing.

    Called once by `himalia plugins`; `config` is None when the config file does not validate.
    Collect-all; each string is printed under the plugin (and listed as `notes` in `--json`).

    Example::

        @hookimpl
        def himalia_plugin_notes(config):
            return [] if importlib.util.find_spec("jinja2") else ["pip install jinja2 to enable"]

    .. versionadded:: 0.2
    """


# --- events (while serving) ---------------------------------------------------------------------


@hookspec
def himalia_kernel_started(kernel_id: str, name: str, app: web.Application) -> None:
    """Notification: kernel `kernel_id` of spec `name` has started and answered, on server `app`.

    Called once per kernel start (not restarts: see `himalia_kernel_restarting`; but a dead kernel
    that a client restarts starts again), by the kernel service, in plugin-name order.
    The return value is ignored. An exception from an implementation is logged and does not affect
    the kernel. A kernel that dies before it answers never started: no event is sent for it.
    `app` is the server the kernel belongs to (one process may run several): implementations may
    leave it out of their signature.

    Example::

        @hookimpl
        def himalia_kernel_started(kernel_id, name, app):
            log.info("kernel %s (%s) started", kernel_id, name)

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 the `app` argument.
    """


@hookspec
def himalia_kernel_restarting(kernel_id: str, reason: str, app: web.Application) -> None:
    """Notification: kernel `kernel_id` of server `app` is being restarted; `reason` says why.

    Called by the kernel service, on the event loop, once per restart, in plugin-name order:
    after a death under autorestart (`[plugins.local] autorestart`, on by default), with the death's
    reason, `"died: signal 9 (SIGKILL)"`, `"died: exit code 1"` (`"died: signal N"` for a signal
    with no name, `"died"` when how it ended is not known: an adopted kernel, a remote one); for a
    restart a client asked for (`POST /api/kernels/{id}/restart`), with `"restart requested"`.
    `himalia_kernel_restarted` follows once the kernel answers again, or `himalia_kernel_dead` when
    it cannot be brought back (the restarter gave up). The return value is ignored; exceptions are
    logged. `app` may be left out of the signature.

    Example::

        @hookimpl
        def himalia_kernel_restarting(kernel_id, reason, app):
            if reason.startswith("died"):
                log.warning("kernel %s %s; restarting", kernel_id, reason)

    .. versionadded:: 0.2
    """


@hookspec
def himalia_kernel_restarted(kernel_id: str, reason: str, app: web.Application) -> None:
    """Notification: kernel `kernel_id` of server `app` answers again after a restart; `reason` is
    the one its `himalia_kernel_restarting` gave ("died: signal 9 (SIGKILL)", "restart requested").

    Called once per restart that succeeded, by the kernel service, on the event loop. The kernel's
    state (variables, imports) is gone. The return value is ignored; exceptions are logged. `app` may
    be left out of the signature.

    Example::

        @hookimpl
        def himalia_kernel_restarted(kernel_id, reason, app):
            log.info("kernel %s is back after: %s", kernel_id, reason)

    .. versionadded:: 0.2
    """


@hookspec
def himalia_kernel_dead(kernel_id: str, reason: str, app: web.Application) -> None:
    """Notification: kernel `kernel_id` of server `app` died and will not be restarted: autorestart is
    off, or gave up after `restart_limit` restarts, or a restart failed. `reason` is the death's
    (`"died: signal 9 (SIGKILL)"`, `"died: exit code 1"`, `"died"`) or `"restart failed: ..."`.

    Called once per death, by the kernel service, on the event loop; `himalia_kernel_stopped` follows
    at once with the same reason. The kernel's model stays (state "dead") until it is deleted, which
    fires no second stop; a client's restart brings it back, announced by `himalia_kernel_started`.
    The return value is ignored; exceptions are logged. `app` may be left out of the signature.

    Example::

        @hookimpl
        def himalia_kernel_dead(kernel_id, reason, app):
            alerts.append(f"kernel {kernel_id} is dead: {reason}")

    .. versionadded:: 0.2
    """


@hookspec
def himalia_kernel_stopped(kernel_id: str, reason: str, app: web.Application) -> None:
    """Notification: kernel `kernel_id` of server `app` is gone; `reason` says why:

    - `"deleted"`: a client or a plugin shut it down (`DELETE /api/kernels/{id}`, the deletion of its
      session, `shutdown_kernel` on the kernel service);
    - `"shutdown"`: the server is shutting down; this is called for every kernel before any plugin
      resource exits (the shutdown phase, see `himalia_resources`), so an observer whose resource
      holds a log file sees every stop;
    - `"culled"`: idle longer than `[plugins.kernels] cull_idle_timeout`;
    - `"died: signal 9 (SIGKILL)"`, `"died: exit code 1"`, `"died: signal N"`, `"died"`,
      `"restart failed: ..."`: it died for good, right after `himalia_kernel_dead` with the same reason;
    - when a server in keep mode (`[plugins.kernels] persist`) starts, kernels a previous server left
      that cannot be adopted: `"died while the server was down"`, `"was dead when the server stopped"`,
      `"the server stopped while it was starting"`, `"could not be adopted: ..."`.

    Called once per kernel, by the kernel service, on the event loop. The return value is ignored;
    exceptions are logged. `app` may be left out of the signature.

    Example::

        @hookimpl
        def himalia_kernel_stopped(kernel_id, reason, app):
            if reason.startswith("died"):
                alerts.append(f"kernel {kernel_id} {reason}")

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 the `app` argument; `"deleted"` for a stop a client asked for (was
       `"shutdown"`), which now means the server's shutdown only.
    """


@hookspec
def himalia_session_created(session: Model, app: web.Application) -> None:
    """Notification: a session was created on server `app`; `session` is its REST model.

    Called once per created session, by the sessions plugin. The return value is ignored;
    exceptions are logged. `app` may be left out of the signature.

    Example::

        @hookimpl
        def himalia_session_created(session, app):
            log.info("session %s opened %s", session["id"], session["path"])

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 the `app` argument.
    """


@hookspec
def himalia_session_deleted(session_id: str, app: web.Application) -> None:
    """Notification: session `session_id` of server `app` was deleted (by a client, or cleaned up
    after its kernel died).

    Called once per deleted session. The return value is ignored; exceptions are logged. `app` may be
    left out of the signature.

    Example::

        @hookimpl
        def himalia_session_deleted(session_id, app):
            open_sessions.discard(session_id)

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 the `app` argument.
    """


@hookspec
def himalia_contents_pre_save(path: str, model: Model) -> None:
    """Act on a model before it is written; mutate `model` in place to rewrite what is saved
    (strip outputs, say), as jupyter_server's `pre_save_hook` does.

    Called on every save (each chunk of a chunked upload counts once, on the last), by the contents
    service, in plugin-name order, once the path has passed the root and hidden-file checks (`path` is
    the normalised API path). The filesystem provider calls it in its worker thread, not on the event
    loop: blocking work is fine; use `loop.call_soon_threadsafe` to reach asyncio objects. The return
    value is ignored. An exception aborts the save with
    an error naming the plugin; the file on disk is unchanged.

    Example::

        @hookimpl
        def himalia_contents_pre_save(path, model):
            if model["type"] == "notebook":
                for cell in model["content"]["cells"]:
                    cell.pop("outputs", None) if cell["cell_type"] != "code" else cell.update(outputs=[])

    .. versionadded:: 0.1
    """


@hookspec
def himalia_contents_post_save(path: str, model: Model) -> None:
    """Notification: `path` was saved; `model` is the saved model without content.

    Called after every successful save, by the contents service (the filesystem provider calls it in
    its worker thread, as the pre-save hook). The return value is ignored; exceptions are logged (the
    save has already happened).

    Example::

        exports = queue.Queue()  # thread-safe: this hook may run outside the event loop

        @hookimpl
        def himalia_contents_post_save(path, model):
            if path.endswith(".ipynb"):
                exports.put_nowait(path)

    .. versionadded:: 0.1
    """
