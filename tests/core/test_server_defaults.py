"""`himalia_server_defaults`: plugins propose `[server]` values that apply only where neither the
config file nor a flag set the key."""

from __future__ import annotations

import pytest

from himalia import hookimpl
from himalia.app import load
from himalia.errors import PluginError


def proposing(values):
    class Plugin:
        @hookimpl
        def himalia_server_defaults(self):
            return values

    return Plugin()


def test_a_proposed_value_applies_when_nothing_sets_the_key(tmp_path):
    config, _ = load(config_data={"server": {"root_dir": str(tmp_path)}}, entry_points=False,
                     extra_plugins={"p": proposing({"port": 9123, "base_url": "/user/ada/"})})
    assert config.server.port == 9123 and config.server.base_url == "/user/ada/"


def test_the_file_and_flags_win_over_a_proposed_value(tmp_path):
    config, _ = load(config_data={"server": {"root_dir": str(tmp_path), "port": 7000}}, entry_points=False,
                     overrides={("server", "base_url"): "/mine/"},
                     extra_plugins={"p": proposing({"port": 9123, "base_url": "/user/ada/"})})
    assert config.server.port == 7000 and config.server.base_url == "/mine/"


def test_a_proposed_value_is_validated_like_the_files(tmp_path):
    from himalia.errors import ConfigError

    with pytest.raises(ConfigError, match="'port' expects an integer"):
        load(config_data={}, entry_points=False, extra_plugins={"p": proposing({"port": "high"})})


def test_two_plugins_proposing_different_values_is_an_error_naming_both(tmp_path):
    with pytest.raises(PluginError, match="plugins 'a' and 'b' propose different \\[server\\] port"):
        load(config_data={}, entry_points=False,
             extra_plugins={"a": proposing({"port": 1}), "b": proposing({"port": 2})})
