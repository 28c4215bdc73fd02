"""The `[plugins.gateway]` table, named after jupyter_server's `GatewayClient` options (snake_case)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from himalia import ConfigError, setting

URL_ENV = "JUPYTER_GATEWAY_URL"
LAUNCH_TIMEOUT_ENV = "KERNEL_LAUNCH_TIMEOUT"
LAUNCH_TIMEOUT_PAD = 2.0
"""Seconds a kernel start request to the gateway is given beyond the KERNEL_LAUNCH_TIMEOUT it carries,
so the gateway gives up (and says why) before we do."""
TOKEN_ENV = "JUPYTER_GATEWAY_AUTH_TOKEN"  # noqa: S105 - the name of a variable, not a secret


MOVED = {"kernel_info_timeout": "[plugins.gateway] 'ws_connect_timeout' (it only ever bounded the "
                                 "websocket's opening)"}


@dataclass(frozen=True)
class GatewayConfig:
    url: str = setting("", "Base URL of the Jupyter Kernel Gateway or Enterprise Gateway (http[s]://host:port/"
                           "base). When set, kernels and kernelspecs come from it. Empty: $JUPYTER_GATEWAY_URL "
                           "if set, else local kernels serve.")
    ws_url: str = setting("", "Websocket base URL of the gateway; empty: `url` with ws in place of http.")
    auth_token: str = setting("", "Token sent to the gateway. Empty: $JUPYTER_GATEWAY_AUTH_TOKEN if set.",
                              secret=True)
    auth_scheme: str = setting("token", "Prefix of the token in the auth header ('token', 'Bearer'); empty "
                                        "sends the bare token.")
    auth_header_key: str = setting("Authorization", "Name of the header that carries the token.")
    headers: dict[str, str] = setting(default_factory=dict, help="Extra HTTP headers sent with every request "
                                                                 "and websocket handshake to the gateway.",
                                      secret=True)  # often credentials (Authorization, cookies)
    connect_timeout: float = setting(40.0, "Seconds allowed to connect to the gateway.")
    request_timeout: float = setting(42.0, "Seconds allowed for a whole request to the gateway. Kernel starts "
                                           "and restarts get at least launch_timeout + 2.")
    launch_timeout: float = setting(0.0, "Seconds a gateway may take to launch a kernel: sent as "
                                         "KERNEL_LAUNCH_TIMEOUT with every start (Enterprise Gateway gives up "
                                         "after it), and our own wait for a start or restart is 2 s longer. "
                                         "0: $KERNEL_LAUNCH_TIMEOUT if set, else request_timeout - 2 (as "
                                         "jupyter_server's gateway client).")
    validate_cert: bool = setting(True, "Verify the gateway's TLS certificate.")
    client_cert: str = setting("", "Client certificate file (PEM) for mutual TLS.", path=True)
    client_key: str = setting("", "Private key file of the client certificate.", path=True)
    ca_certs: str = setting("", "CA bundle used to verify the gateway; empty: the system's.", path=True)
    retry_interval: float = setting(1.0, "Seconds before the first attempt to reconnect a dropped kernel "
                                         "websocket; doubled after each failed attempt.")
    retry_interval_max: float = setting(30.0, "Longest wait between websocket reconnection attempts.")
    retry_max: int = setting(5, "Reconnection attempts before a dropped kernel websocket is given up.")
    allowed_envs: list[str] = setting(default_factory=list, help="Names of this server's environment variables "
                                                                 "passed to remote kernels (KERNEL_* always are).")
    ws_connect_timeout: float = setting(60.0, "Seconds allowed to open a kernel's websocket on the gateway. "
                                              "(How long a new kernel gets to answer is [plugins.kernels] "
                                              "kernel_info_timeout, for every provider.)")
    ping_interval: float = setting(30.0, "Seconds between keepalive pings on each upstream kernel websocket, "
                                         "and between checks that its kernel still exists; 0 turns both off.")
    probe_interval: float = setting(30.0, "Seconds between reachability checks shown in /api/status.")


    def __post_init__(self) -> None:
        for name in ("connect_timeout", "request_timeout", "retry_interval", "retry_interval_max",
                     "ws_connect_timeout", "probe_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"'{name}' must be > 0, got {getattr(self, name)}")
        for name in ("retry_max", "ping_interval", "launch_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"'{name}' must be >= 0, got {getattr(self, name)}")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"'url' must start with http:// or https://, got {self.url!r}")
        if self.ws_url and not self.ws_url.startswith(("ws://", "wss://")):
            raise ValueError(f"'ws_url' must start with ws:// or wss://, got {self.ws_url!r}")

    def effective(self) -> GatewayConfig:
        """The settings in force: the environment fills `url` and `auth_token` when the file leaves them empty."""
        url = (self.url or os.environ.get(URL_ENV, "")).rstrip("/")
        ws_url = (self.ws_url or ("ws" + url[4:] if url else "")).rstrip("/")
        token = self.auth_token or os.environ.get(TOKEN_ENV, "")
        launch = self.launch_timeout
        if not launch and os.environ.get(LAUNCH_TIMEOUT_ENV):
            try:
                launch = float(os.environ[LAUNCH_TIMEOUT_ENV])
            except ValueError:
                raise ConfigError(f"${LAUNCH_TIMEOUT_ENV} must be a number of seconds, got "
                                 f"{os.environ[LAUNCH_TIMEOUT_ENV]!r}") from None
        if launch <= 0:
            launch = max(1.0, self.request_timeout - LAUNCH_TIMEOUT_PAD)
        return replace(self, url=url, ws_url=ws_url, auth_token=token, launch_timeout=launch)

    @property
    def start_timeout(self) -> float:
        """Our bound on a kernel start or restart request (of an `effective()` config): a margin past the
        launch timeout the gateway was sent, never less than request_timeout."""
        return max(self.request_timeout, self.launch_timeout + LAUNCH_TIMEOUT_PAD)

    @property
    def auth_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.auth_token and self.auth_header_key not in headers:
            value = f"{self.auth_scheme} {self.auth_token}" if self.auth_scheme else self.auth_token
            headers[self.auth_header_key] = value
        return headers
