"""The TOML config: strict validation with one-line errors, relative paths, overrides, dumping."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from himalia import ConfigSection, setting
from himalia.config import ConfigError, tomllib, RawConfig, apply_overrides, dump, parse_override, read_config, validate


@dataclass(frozen=True)
class SessionsLike:
    database: str = setting("", "Where the sessions live.", path=True)
    retries: int = setting(3, "How often to retry.")
    ratio: float = setting(0.5, "A number.")
    tags: list[str] = setting(help="Tags.", default_factory=list)
    secret_key: str = setting("", "A secret.", secret=True)


SECTIONS = [ConfigSection("sessions", SessionsLike)]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "himalia.toml"
    p.write_text(text)
    return p


def load(tmp_path: Path, text: str, sections=SECTIONS):
    return validate(read_config(str(write(tmp_path, text))), sections)


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = validate(read_config(None), SECTIONS)
    assert config.server.ip == "127.0.0.1"
    assert config.server.port == 8888
    assert config.server.root_dir == str(tmp_path.resolve())
    assert config.section("sessions").retries == 3


def test_himalia_toml_in_the_working_directory_is_read(tmp_path, monkeypatch):
    write(tmp_path, "[server]\nport = 9999\n")
    monkeypatch.chdir(tmp_path)
    assert validate(read_config(None), SECTIONS).server.port == 9999


def test_wrong_type_names_file_table_key_type_and_value(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, "[plugins.sessions]\ndatabase = 5\n")
    assert str(e.value) == f"{tmp_path / 'himalia.toml'}: [plugins.sessions] 'database' expects a string, got int: 5"


@pytest.mark.parametrize("text, expected", [
    ("[server]\nport = '80'\n", "[server] 'port' expects an integer, got string: '80'"),
    ("[server]\nallow_unauthenticated_access = 1\n",
     "[server] 'allow_unauthenticated_access' expects a boolean, got int: 1"),
    ("[plugins.sessions]\ntags = [1]\n", "[plugins.sessions] 'tags' expects a list of strings, got list: [1]"),
    ("[plugins.sessions]\nratio = 'x'\n", "[plugins.sessions] 'ratio' expects a number, got string: 'x'"),
    ("[server]\nprot = 1\n", "[server] unknown key 'prot'; known keys: ip, port,"),
    ("[plugins.sessoins]\n", "unknown table [plugins.sessoins]; declared sections: sessions"),
    ("[servers]\n", "unknown table [servers]; expected [server] or [plugins.<name>]"),
    ("plugins = 3\n", "[plugins] must be a table, got int"),
    ("[plugins]\ndisable = 'x'\n", "[plugins] 'disable' expects a list of strings, got string: 'x'"),
    ("[server\n", "not valid TOML"),
])
def test_each_config_error_class(tmp_path, text, expected):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "himalia.toml"))
    assert expected in message


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: config file not found"):
        read_config(str(tmp_path / "nope.toml"))


def test_int_is_accepted_for_a_float(tmp_path):
    assert load(tmp_path, "[plugins.sessions]\nratio = 2\n").section("sessions").ratio == 2.0


def test_relative_paths_resolve_against_the_config_file(tmp_path, monkeypatch):
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    monkeypatch.chdir(tmp_path)
    p = conf_dir / "himalia.toml"
    p.write_text('[server]\nroot_dir = "nb"\n[plugins.sessions]\ndatabase = "s.db"\n')
    config = validate(read_config(str(p)), SECTIONS)
    assert config.server.root_dir == str((conf_dir / "nb").resolve())
    assert config.section("sessions").database == str((conf_dir / "s.db").resolve())


def test_tables_of_installed_but_disabled_plugins_are_accepted(tmp_path):
    config = validate(read_config(str(write(tmp_path, "[plugins]\ndisable = ['gateway']\n"
                                                      "[plugins.gateway]\nurl = 'http://x'\n"))), SECTIONS)
    assert config.disabled == ("gateway",)
    assert "gateway" not in config.plugins


@pytest.mark.parametrize("text, parts, value", [
    ("server.port=9000", ["server", "port"], 9000),
    ("plugins.sessions.database=s.db", ["plugins", "sessions", "database"], "s.db"),
    ("plugins.sessions.tags=['a', 'b']", ["plugins", "sessions", "tags"], ["a", "b"]),
    ("server.allow_unauthenticated_access=true", ["server", "allow_unauthenticated_access"], True),
    ('server.ip="::1"', ["server", "ip"], "::1"),
])
def test_set_overrides_parse_toml_values(text, parts, value):
    got_parts, override = parse_override(text)
    assert (got_parts, override.value) == (parts, value)


def test_set_override_needs_a_section_and_key():
    with pytest.raises(ConfigError, match="expected SECTION.KEY=VALUE"):
        parse_override("port=1")


def test_overrides_are_validated_like_the_file(tmp_path):
    raw = RawConfig({}, None)
    apply_overrides(raw, {("server", "port"): "eighty"})
    with pytest.raises(ConfigError, match="'port' expects an integer, got string: 'eighty'"):
        validate(raw, SECTIONS)


def test_dump_redacts_secrets_and_round_trips(tmp_path):
    config = load(tmp_path, "[plugins.sessions]\nsecret_key = 'hunter2'\ntags = ['a']\n")
    text = dump(config)
    assert "hunter2" not in text
    assert 'secret_key = "<redacted>"' in text
    reread = validate(RawConfig(tomllib.loads(text), tmp_path / "himalia.toml"), SECTIONS)
    assert reread.section("sessions").tags == ["a"]
    assert reread.server == config.server


@dataclass(frozen=True)
class GatewayLike:
    url: str = setting("", "Where the gateway is.")
    headers: dict[str, str] = setting(default_factory=dict, help="Extra headers.", secret=True)
    mirrors: list[str] = setting(default_factory=list, help="More URLs.")


def test_dump_redacts_secret_table_values_and_credentials_in_urls(tmp_path):
    config = load(tmp_path, "[plugins.gw]\nurl = 'https://ada:pw-123@gw.example:8888/base'\n"
                            "headers = { Authorization = 'Bearer abc-456', X-Team = 'team-789' }\n"
                            "mirrors = ['http://tok-000@m.example/', 'http://m2.example/']\n",
                  sections=[ConfigSection("gw", GatewayLike)])
    text = dump(config)
    for secret in ("pw-123", "abc-456", "team-789", "tok-000"):
        assert secret not in text
    assert 'url = "https://ada:<redacted>@gw.example:8888/base"' in text
    assert 'headers = { "Authorization" = "<redacted>", "X-Team" = "<redacted>" }' in text
    assert 'mirrors = ["http://<redacted>@m.example/", "http://m2.example/"]' in text
    sections = [ConfigSection("gw", GatewayLike)]
    reread = validate(RawConfig(tomllib.loads(text), tmp_path / "himalia.toml"), sections)
    assert sorted(reread.section("gw").headers) == ["Authorization", "X-Team"]


def test_section_with_its_schema_is_typed_and_checked():
    """`config.section("auth", AuthConfig)` is an AuthConfig to a type checker (overloads), and a
    wrong schema is caught at run time rather than surfacing as an AttributeError later."""
    from himalia.app import load
    from himalia_auth.config import AuthConfig

    config, _ = load(config_data={"plugins": {"auth": {"token": "t"}}})
    assert config.section("auth", AuthConfig).token == "t"
    with pytest.raises(TypeError, match=r"\[plugins.auth\] holds AuthConfig, not ServerConfig"):
        from himalia.config import ServerConfig

        config.section("auth", ServerConfig)
