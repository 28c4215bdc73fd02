"""HTTP access to the gateway's REST API, turning every failure into a clear `ApiError`.

Unreachable → 502, too slow → 504, the gateway's own 5xx → 502 naming its message, its 4xx passed on
with its message (except a refused token, which is our configuration's fault: 502). Idempotent
requests are retried briefly on connection errors, as jupyter_server's gateway client does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from himalia import ApiError, BadGateway, GatewayTimeout

from .config import GatewayConfig
from .health import Health

log = logging.getLogger("himalia.gateway")

RETRIED_METHODS = {"GET", "DELETE"}
RETRIES = 2
RETRY_BACKOFF = 0.1


def quoted(value: str) -> str:
    return quote(value, safe="")


class GatewayClient:
    """One `aiohttp.ClientSession` to the gateway; an async context manager."""

    def __init__(self, config: GatewayConfig, health: Health | None = None):
        self.config = config
        self.health = health or Health(config.url)
        self._session: aiohttp.ClientSession | None = None
        self.ssl: ssl.SSLContext | bool = True

    async def __aenter__(self) -> GatewayClient:
        self.ssl = await asyncio.to_thread(ssl_context, self.config)
        # no session-wide total: each request passes its own, and websocket handshakes are bounded by
        # ws_connect_timeout (a request_timeout shorter than the gateway's handshake must not cut them)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout)
        self._session = aiohttp.ClientSession(headers=self.config.auth_headers, timeout=timeout,
                                              connector=aiohttp.TCPConnector(ssl=self.ssl))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("GatewayClient used outside its context")
        return self._session

    def url(self, path: str) -> str:
        return self.config.url + path

    def ws_url(self, path: str) -> str:
        return self.config.ws_url + path

    async def request(self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None,
                      timeout: float | None = None) -> tuple[int, bytes, str]:
        """Send one request (bounded by `timeout`, else request_timeout); (status, body, content type) of a
        2xx answer, else an ApiError."""
        what = f"{method} {path}"
        total = timeout or self.config.request_timeout
        bound = aiohttp.ClientTimeout(total=total, sock_connect=self.config.connect_timeout)
        attempt = 0
        while True:
            try:
                async with self.session.request(method, self.url(path), json=body, params=params,
                                                timeout=bound) as resp:
                    data = await resp.read()
                    status, ctype = resp.status, resp.content_type
                break
            except aiohttp.ConnectionTimeoutError:
                message = (f"the gateway at {self.config.url} did not accept a connection ({what}) within "
                           f"{self.config.connect_timeout:g}s")
                self.health.failed(message)
                raise GatewayTimeout(message, "gateway timeout") from None
            except asyncio.TimeoutError:
                message = f"the gateway at {self.config.url} did not answer {what} within {total:g}s"
                self.health.failed(message, reachable=True)
                raise GatewayTimeout(message, "gateway timeout") from None
            except aiohttp.ClientSSLError as e:
                message = (f"TLS with the gateway at {self.config.url} failed ({what}): {describe(e)}; check "
                           "[plugins.gateway] ca_certs, validate_cert, client_cert and client_key")
                self.health.failed(message)
                raise BadGateway(message, "gateway tls error") from None
            except (aiohttp.ClientConnectionError, OSError) as e:
                if method in RETRIED_METHODS and attempt < RETRIES:
                    await asyncio.sleep(RETRY_BACKOFF * 2 ** attempt)  # backoff between retries, not a sync wait
                    attempt += 1
                    continue
                message = f"the gateway at {self.config.url} is unreachable ({what}): {describe(e)}"
                self.health.failed(message)
                raise BadGateway(message, "gateway unreachable") from None
        if status < 400:
            self.health.succeeded()
            return status, data, ctype
        raise self._error(what, status, data)

    async def request_json(self, method: str, path: str, *, body: Any = None,
                           params: dict[str, str] | None = None, timeout: float | None = None) -> Any:
        _, data, _ = await self.request(method, path, body=body, params=params, timeout=timeout)
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise BadGateway(f"the gateway at {self.config.url} answered {method} {path} with a body that is "
                             "not JSON", "bad gateway response") from None

    def _error(self, what: str, status: int, data: bytes) -> UpstreamError:
        remote_message, remote_reason = remote_error(data)
        detail = remote_message or remote_reason or f"HTTP {status}"
        if status == 401:  # our configuration's fault, not the client's: a 401 would make it log in again
            message = (f"the gateway at {self.config.url} refused our credentials ({what}: {detail}); "
                       "check [plugins.gateway] auth_token")
            self.health.failed(message, reachable=True)
            return UpstreamBadGateway(message, "gateway unauthorized", upstream_status=status)
        if status >= 500:
            message = f"the gateway at {self.config.url} failed {what} with HTTP {status}: {detail}"
            self.health.failed(message, reachable=True)
            return UpstreamBadGateway(message, "gateway error", upstream_status=status)
        self.health.succeeded()
        return UpstreamError(f"gateway: {detail}", remote_reason or "gateway error", status=status,
                             upstream_status=status)


class UpstreamError(ApiError):
    """The gateway answered with an error; `upstream_status` is the status it answered."""

    def __init__(self, message: str, reason: str, *, upstream_status: int, status: int | None = None):
        super().__init__(message, reason, status=status)
        self.upstream_status = upstream_status


class UpstreamBadGateway(UpstreamError, BadGateway):
    """The gateway's answer is ours to fix or its own failure (401, 5xx): 502 to the client."""


def remote_error(data: bytes) -> tuple[str, str]:
    """The (message, reason) of a jupyter_server-style JSON error body, or its text."""
    try:
        body = json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace").strip()[:500], ""
    if not isinstance(body, dict):
        return str(body)[:500], ""
    return str(body.get("message") or ""), str(body.get("reason") or "")


def describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if type(e).__name__ in text else f"{type(e).__name__}: {text}"


def ssl_context(config: GatewayConfig) -> ssl.SSLContext | bool:
    """The TLS settings for the gateway (blocking: reads certificate files; run in a thread)."""
    if not config.url.startswith("https") and not config.ws_url.startswith("wss"):
        return True
    try:
        ctx = ssl.create_default_context(cafile=config.ca_certs or None)
        if not config.validate_cert:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if config.client_cert:
            ctx.load_cert_chain(config.client_cert, config.client_key or None)
    except (OSError, ssl.SSLError) as e:
        raise RuntimeError(f"[plugins.gateway] cannot load the TLS files (ca_certs, client_cert, client_key): "
                           f"{e}") from None
    return ctx
