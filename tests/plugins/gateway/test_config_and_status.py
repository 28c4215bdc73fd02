"""`[plugins.gateway]`: names, validation, secrets, the environment; and the reachability probe."""

from __future__ import annotations

import asyncio
import time

import pytest
from gateway_kit import TOKEN, WAIT

from himalia import ConfigError


def load(data: dict):
    from himalia.app import load as load_config

    config, _ = load_config(config_data=data)
    return config


def test_defaults_follow_jupyter_servers_gateway_client(monkeypatch):
    monkeypatch.delenv("JUPYTER_GATEWAY_URL", raising=False)
    gateway = load({}).section("gateway")
    assert (gateway.url, gateway.auth_scheme, gateway.connect_timeout, gateway.request_timeout) == ("", "token", 40.0, 42.0)
    assert (gateway.retry_interval, gateway.retry_interval_max, gateway.retry_max) == (1.0, 30.0, 5)
    assert gateway.validate_cert is True and gateway.allowed_envs == [] and gateway.headers == {}


def test_the_token_is_a_secret_and_the_url_is_checked():
    from himalia.config import dump

    config = load({"plugins": {"gateway": {"url": "https://eg.example.com:8888/base/", "auth_token": "s3cret"}}})
    text = dump(config)
    assert "s3cret" not in text and 'auth_token = "<redacted>"' in text
    effective = config.section("gateway").effective()
    assert effective.url == "https://eg.example.com:8888/base" and effective.ws_url == "wss://eg.example.com:8888/base"
    assert effective.auth_headers == {"Authorization": "token s3cret"}
    with pytest.raises(Exception, match=r"\[plugins.gateway\] 'retry_max' expects an integer"):
        load({"plugins": {"gateway": {"retry_max": "5"}}})
    with pytest.raises(Exception, match="'ws_url' must start with ws:// or wss://"):
        load({"plugins": {"gateway": {"url": "http://x", "ws_url": "http://x"}}})


def test_the_launch_timeout_and_the_wait_for_a_start_agree(monkeypatch):
    """KERNEL_LAUNCH_TIMEOUT (sent with every start) comes from the file, else the environment, else
    request_timeout - 2 (jupyter_server's rule); a start is given 2 s more, never less than request_timeout."""
    monkeypatch.delenv("KERNEL_LAUNCH_TIMEOUT", raising=False)

    def effective(**settings):
        return load({"plugins": {"gateway": settings}}).section("gateway").effective()

    assert (effective().launch_timeout, effective().start_timeout) == (40.0, 42.0)
    assert (effective(request_timeout=120).launch_timeout, effective(request_timeout=120).start_timeout) == (118.0, 120.0)
    assert (effective(launch_timeout=300).launch_timeout, effective(launch_timeout=300).start_timeout) == (300.0, 302.0)
    assert effective(launch_timeout=5, request_timeout=42).start_timeout == 42.0
    monkeypatch.setenv("KERNEL_LAUNCH_TIMEOUT", "600")  # as Enterprise Gateway's docs have operators set it
    assert (effective().launch_timeout, effective().start_timeout) == (600.0, 602.0)
    assert effective(launch_timeout=90).launch_timeout == 90.0  # the file wins
    monkeypatch.setenv("KERNEL_LAUNCH_TIMEOUT", "ten minutes")
    with pytest.raises(ConfigError, match=r"\$KERNEL_LAUNCH_TIMEOUT must be a number of seconds, got 'ten minutes'"):
        effective()
    with pytest.raises(Exception, match="'launch_timeout' must be >= 0"):
        load({"plugins": {"gateway": {"launch_timeout": -1}}})


def test_auth_scheme_header_key_and_extra_headers():
    from himalia_gateway.config import GatewayConfig

    assert GatewayConfig(auth_token="t", auth_scheme="Bearer").auth_headers == {"Authorization": "Bearer t"}
    assert GatewayConfig(auth_token="t", auth_scheme="").auth_headers == {"Authorization": "t"}
    assert GatewayConfig(auth_token="t", auth_header_key="X-Token", auth_scheme="",
                         headers={"X-Extra": "1"}).auth_headers == {"X-Extra": "1", "X-Token": "t"}


def test_url_and_token_from_the_environment(monkeypatch):
    monkeypatch.setenv("JUPYTER_GATEWAY_URL", "http://gw.example.com:9999")
    monkeypatch.setenv("JUPYTER_GATEWAY_AUTH_TOKEN", "from-env")
    effective = load({}).section("gateway").effective()
    assert effective.url == "http://gw.example.com:9999" and effective.auth_token == "from-env"
    effective = load({"plugins": {"gateway": {"auth_token": "from-file"}}}).section("gateway").effective()
    assert effective.auth_token == "from-file"


async def test_the_probe_notices_the_gateway_going_away(himalia_server, own_gateway):
    with own_gateway() as gw:
        config = {"plugins": {"gateway": {"url": gw.url, "auth_token": TOKEN, "probe_interval": 0.05}}}
        async with himalia_server(config=config) as server:
            async def gateway_status() -> dict:
                r = await server.get("/api/status")
                assert r.status == 200
                return (await r.json())["gateway"]

            async def until(reachable: bool) -> dict:
                deadline = time.monotonic() + WAIT
                while (status := await gateway_status())["reachable"] is not reachable:
                    assert time.monotonic() < deadline, status
                    await asyncio.sleep(0.02)  # bounded poll of what the probe found
                return status

            up = await until(True)
            assert up["version"] and up["error"] is None and up["checked"]
            await asyncio.to_thread(gw.stop)
            down = await until(False)  # no request of ours: the background probe found out
            assert f"the gateway at {gw.url} is unreachable (GET /api)" in down["error"]
