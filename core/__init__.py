"""Himalia: a Jupyter server as a plugin-first microkernel.

This module is the public API for plugins: the hookimpl marker, config helpers, records, service
Protocols, app keys and error types. Plugins import from here (or `himalia.testing` in tests), never
from another plugin.
"""

from __future__ import annotations

import pluggy

from ._version import __version__
from .activity import isoformat, utcnow
from .config import Config, ConfigSection, setting
from .errors import (
    ApiError,
    ConfigError,
    StartupError,
    BadGateway,
    BadRequest,
    Conflict,
    Forbidden,
    GatewayTimeout,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    check_strings,
    read_json,
)
from . import wire
from .guards import sandbox
from .hooks import Hooks
from .keys import ACTIVITY, CONFIG, HOOKS, IDENTITY, PLUGINS, RESTART_WEBSOCKETS, SERVICES, WEBSOCKETS
from .openapi import AUTH_ERRORS, error_response, json_response
from .records import CliCommand, CliOption, Middleware, Route
from .statedir import KeptKernel, KeptKernels, StateDir, default_state_dir, state_dir_of
from .urls import url_path
from .services import (
    Authenticated,
    ChannelsClosed,
    ContentsCapabilities,
    ContentsManager,
    Cookie,
    Credentials,
    EventBus,
    Identity,
    IdentityProvider,
    KernelChannels,
    KernelManager,
    KernelMessage,
    KernelNotReady,
    KernelRelay,
    LocalFiles,
    Model,
    NotebookTrust,
    PagedContents,
    PathResolving,
    Provider,
    Requirement,
    Service,
    Services,
    SessionRecord,
    SessionStore,
    StreamedContent,
    StreamingContents,
    TerminalManager,
    contents_capabilities,
)

hookimpl = pluggy.HookimplMarker("himalia")
"""Marker for hook implementations: `@hookimpl def himalia_routes(config): ...`."""

__all__ = [
    "ACTIVITY", "AUTH_ERRORS", "ApiError", "Authenticated", "BadGateway", "BadRequest", "CONFIG",
    "ChannelsClosed", "CliCommand", "CliOption", "Config", "ConfigError", "ConfigSection", "Conflict",
    "ContentsManager", "Cookie", "Credentials", "EventBus", "Forbidden", "GatewayTimeout", "HOOKS", "Hooks",
    "IDENTITY", "Identity", "IdentityProvider", "KernelChannels", "KernelManager", "KernelMessage", "KernelNotReady",
    "KernelRelay", "Middleware", "Model", "NotFound", "PLUGINS", "PayloadTooLarge", "Provider", "RESTART_WEBSOCKETS",
    "Requirement", "Route", "SERVICES", "Service", "Services", "SessionRecord", "SessionStore", "StartupError",
    "TerminalManager", "Unauthorized", "WEBSOCKETS", "__version__", "check_strings", "error_response", "hookimpl",
    "isoformat", "json_response", "read_json", "sandbox", "setting", "url_path", "utcnow", "wire",
    # contents capabilities
    "ContentsCapabilities", "LocalFiles", "NotebookTrust", "PagedContents", "PathResolving", "StreamedContent",
    "StreamingContents", "contents_capabilities",
    # the state dir (kept kernels)
    "KeptKernel", "KeptKernels", "StateDir", "default_state_dir", "state_dir_of",
]
