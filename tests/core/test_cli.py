"""`himalia` as users run it: a real subprocess serving, listed, stopped; plugins and config commands."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


HIMALIA = [sys.executable, "-m", "himalia.cli"]
DEADLINE = 60


def env_with(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def run(*args: str, env=None, cwd=None, timeout=DEADLINE) -> subprocess.CompletedProcess:
    return subprocess.run([*HIMALIA, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


class Served:
    def __init__(self, proc: subprocess.Popen, url: str, token: str):
        self.proc, self.url, self.token = proc, url, token

    def get(self, path: str, token: str | None = None):
        req = urllib.request.Request(self.url.rstrip("/") + path,
                                     headers={"Authorization": f"token {token or self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())


def start_serve(*args: str, env=None, cwd=None) -> Served:
    proc = subprocess.Popen([*HIMALIA, "serve", "--port", "0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    deadline = time.monotonic() + DEADLINE
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()  # the process prints the URL line once it listens
        if not line:
            break
        lines.append(line)
        if "?token=" in line:
            url, _, token = line.strip().partition("?token=")
            return Served(proc, url, token)
    proc.kill()
    raise AssertionError(f"himalia serve did not print its URL: {''.join(lines)} {proc.stderr.read()}")


def stop(served: Served) -> int:
    served.proc.send_signal(signal.SIGTERM)
    try:
        return served.proc.wait(timeout=DEADLINE)
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait()


@pytest.fixture
def runtime(tmp_path):
    return tmp_path / "runtime"


def test_version_loads_no_plugin(tmp_path, dist_writer):
    site = dist_writer(tmp_path / "site", "himalia-broken", "1.0", {"broken": "raise SystemExit('imported!')"})
    r = run("--version", env=env_with(PYTHONPATH=str(site)))
    assert r.returncode == 0 and r.stdout.strip().startswith("himalia 0.")


def test_serve_answers_is_listed_and_exits_cleanly_on_sigterm(tmp_path, runtime):
    root = tmp_path / "root"
    root.mkdir()
    env = env_with(JUPYTER_RUNTIME_DIR=str(runtime))
    served = start_serve("--root-dir", str(root), "--token", "tok-123", env=env)
    try:
        assert served.token == "tok-123"
        status, body = served.get("/api/status")
        assert status == 200 and body["kernels"] == 0
        listed = run("list", "--json", env=env)
        infos = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [i["pid"] for i in infos] == [served.proc.pid]
        assert infos[0]["root_dir"] == str(root) and infos[0]["url"] == served.url
        info_file = runtime / f"himalia-{served.proc.pid}.json"
        assert stat.S_IMODE(info_file.stat().st_mode) == 0o600
    finally:
        code = stop(served)
    assert code == 0
    assert not (runtime / f"himalia-{served.proc.pid}.json").exists()
    assert "Himalia shutting down" in served.proc.stdout.read()


def test_stop_command_stops_the_server(tmp_path, runtime):
    env = env_with(JUPYTER_RUNTIME_DIR=str(runtime))
    served = start_serve("--root-dir", str(tmp_path), env=env)
    try:
        port = served.url.rsplit(":", 1)[1].strip("/")
        r = run("stop", port, env=env)
        assert r.returncode == 0 and f"pid {served.proc.pid}" in r.stdout
        assert served.proc.wait(timeout=DEADLINE) == 0
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait()


def test_stop_asks_over_the_api_and_the_server_exits_cleanly(tmp_path, runtime):
    """`himalia stop` posts /api/shutdown with the token; the server exits 0 having run its clean-up."""
    env = env_with(JUPYTER_RUNTIME_DIR=str(runtime))
    served = start_serve("--root-dir", str(tmp_path), env=env)
    try:
        info = json.loads((runtime / f"himalia-{served.proc.pid}.json").read_text())
        assert isinstance(info["start_time"], int)
        port = served.url.rsplit(":", 1)[1].strip("/")
        r = run("stop", port, env=env)
        assert r.returncode == 0, r.stderr
        assert "SIGTERM" not in r.stderr  # it was asked, not signalled
        assert served.proc.wait(timeout=DEADLINE) == 0
        assert "Himalia shutting down" in served.proc.stdout.read()
        assert not (runtime / f"himalia-{served.proc.pid}.json").exists()
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait()


def test_stop_falls_back_to_sigterm_for_a_verified_server_that_refuses_the_api(tmp_path, runtime):
    """The token in the file no longer works (say it was edited): the pid is verified, then signalled."""
    env = env_with(JUPYTER_RUNTIME_DIR=str(runtime))
    served = start_serve("--root-dir", str(tmp_path), env=env)
    try:
        info_file = runtime / f"himalia-{served.proc.pid}.json"
        info = json.loads(info_file.read_text())
        info_file.write_text(json.dumps({**info, "token": "not-the-token"}))
        r = run("stop", env=env)
        assert r.returncode == 0, r.stderr
        assert "HTTP 401" in r.stderr and "sending SIGTERM" in r.stderr
        assert served.proc.wait(timeout=DEADLINE) == 0
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait()


def test_api_shutdown_needs_the_token(tmp_path, runtime):
    import urllib.error

    env = env_with(JUPYTER_RUNTIME_DIR=str(runtime))
    served = start_serve("--root-dir", str(tmp_path), env=env)
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(served.url + "api/shutdown", method="POST"), timeout=10)
        assert refused.value.code == 401
        assert served.get("/api/status")[0] == 200
    finally:
        stop(served)


@pytest.mark.parametrize("recorded", ["another start time", "no start time"])
def test_stop_never_signals_a_process_that_is_not_the_server(tmp_path, runtime, recorded):
    """The server died by SIGKILL (its info file stayed) and the pid went to an unrelated process."""
    runtime.mkdir()
    bystander = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        info = {"pid": bystander.pid, "port": 1, "url": "http://127.0.0.1:1/", "token": "t", "root_dir": "/"}
        if recorded == "another start time":
            from himalia import serverinfo

            info["start_time"] = serverinfo.start_time(bystander.pid) - 1
        planted = runtime / f"himalia-{bystander.pid}.json"
        planted.write_text(json.dumps(info))
        r = run("stop", env=env_with(JUPYTER_RUNTIME_DIR=str(runtime)))
        assert r.returncode == 2 and "no running Himalia server" in r.stderr
        assert bystander.poll() is None, "himalia stop killed an unrelated process"
        assert not planted.exists(), "the stale file should have been pruned"
    finally:
        bystander.kill()
        bystander.wait()


def test_stale_server_info_files_are_pruned(tmp_path, runtime):
    runtime.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = runtime / f"himalia-{dead.pid}.json"
    stale.write_text(json.dumps({"pid": dead.pid, "url": "http://127.0.0.1:1/", "root_dir": "/"}))
    r = run("list", env=env_with(JUPYTER_RUNTIME_DIR=str(runtime)))
    assert "no running Himalia servers" in r.stdout
    assert not stale.exists()


def test_broken_plugin_refuses_to_start_with_one_line_and_is_listed(tmp_path, dist_writer):
    site = dist_writer(tmp_path / "site", "himalia-broken", "0.9", {"broken": "import no_such_module_xyz"})
    env = env_with(PYTHONPATH=str(site))
    r = run("serve", "--port", "0", "--root-dir", str(tmp_path), env=env)
    assert r.returncode == 2
    err = r.stderr.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("himalia: plugin 'broken' (himalia-broken 0.9) failed to import")
    assert err.endswith("disable it with --disable broken")
    listing = run("plugins", env=env)
    assert listing.returncode == 0
    assert "broken  (himalia-broken 0.9)  ERROR" in listing.stdout
    assert "No module named 'no_such_module_xyz'" in listing.stdout
    rows = {row["name"]: row for row in json.loads(run("plugins", "--json", env=env).stdout)}
    assert rows["auth"]["active"] == ["identity:token"] and rows["broken"]["error"]
    # and the hint works
    served = start_serve("--root-dir", str(tmp_path), "--disable", "broken",
                         env=env_with(PYTHONPATH=str(site), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt")))
    try:
        assert served.get("/api/status")[0] == 200
    finally:
        assert stop(served) == 0


def test_config_errors_exit_2_with_the_file_named(tmp_path):
    conf = tmp_path / "himalia.toml"
    conf.write_text("[server]\nport = 'high'\n")
    r = run("serve", "--config", str(conf))
    assert r.returncode == 2
    assert r.stderr.strip() == f"himalia: {conf}: [server] 'port' expects an integer, got string: 'high'"


def test_config_command_prints_effective_toml_with_secrets_redacted(tmp_path):
    conf = tmp_path / "himalia.toml"
    conf.write_text('[server]\nroot_dir = "nb"\n[plugins.auth]\ntoken = "hunter2"\n')
    r = run("config", "--config", str(conf), "--set", "server.port=9123")
    assert r.returncode == 0, r.stderr
    assert "hunter2" not in r.stdout
    assert 'token = "<redacted>"' in r.stdout
    assert "port = 9123" in r.stdout
    assert f'root_dir = "{(tmp_path / "nb").resolve()}"' in r.stdout


def test_app_factory_for_aiohttp_web(tmp_path):
    from himalia.app import init

    app = init(["--root-dir", str(tmp_path), "--token", "abc"])
    from himalia import CONFIG

    assert app[CONFIG].server.root_dir == str(tmp_path)
    assert app[CONFIG].section("auth").token == "abc"


def test_python_m_aiohttp_web_serves_the_app(tmp_path):
    """`python -m aiohttp.web -H 127.0.0.1 -P PORT himalia.app:init ARGS...`, as a real process."""
    import socket
    import urllib.error

    from himalia.testing import stop_process

    with socket.socket() as s:  # a free port (aiohttp.web cannot report the one it bound)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "aiohttp.web", "-H", "127.0.0.1", "-P", str(port),
                                "himalia.app:init", "--root-dir", str(tmp_path), "--token", "abc"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/status",
                                             headers={"Authorization": "token abc"})
            try:
                with urllib.request.urlopen(request, timeout=5) as r:
                    status = json.load(r)
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, process.stdout.read().decode(errors="replace")
                assert time.monotonic() < deadline, "python -m aiohttp.web did not answer within 60 s"
                time.sleep(0.1)  # polling a port that is not open yet: there is no event to wait on
        assert "started" in status and "kernels" in status
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5)
        assert refused.value.code == 401
        shutdown = urllib.request.Request(f"http://127.0.0.1:{port}/api/shutdown", method="POST",
                                          headers={"Authorization": "token abc"})
        with urllib.request.urlopen(shutdown, timeout=10) as r:
            assert r.status == 200
        assert process.wait(timeout=60) == 0  # POST /api/shutdown stops this start-up path too
    finally:
        stop_process(process)
        process.stdout.close()


BROKEN = "raise SystemExit('imported although disabled')"

ALT_AUTH = """
    from contextlib import asynccontextmanager
    from himalia import Provider, hookimpl

    @asynccontextmanager
    async def factory(app):
        yield None

    @hookimpl
    def himalia_identity_providers():
        return [Provider("alt", factory)]
"""


def test_set_plugins_disable_blocks_a_broken_plugin_before_it_is_imported(tmp_path, plugin_site, capsys):
    from himalia.cli import main

    plugin_site("himalia-broken", {"broken": BROKEN})
    assert main(["config", "--root-dir", str(tmp_path), "--set", 'plugins.disable=["broken"]']) == 0
    captured = capsys.readouterr()
    assert 'disable = ["broken"]' in captured.out, captured.err
    assert main(["plugins", "--json", "--set", 'plugins.disable=["broken"]']) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["broken"]["disabled"] and rows["broken"]["error"] is None


def test_plugins_command_applies_set_and_server_flags(tmp_path, plugin_site, capsys):
    from himalia.cli import main

    plugin_site("himalia-alt", {"alt": ALT_AUTH})
    assert main(["plugins", "--json", "--root-dir", str(tmp_path), "--port", "9999",
                 "--set", "server.identity_provider=alt"]) == 0
    captured = capsys.readouterr()
    rows = {row["name"]: row for row in json.loads(captured.out)}
    assert rows["alt"]["active"] == ["identity:alt"], captured.err
    assert rows["auth"]["active"] == [] and rows["auth"]["providers"] == ["identity:token"]


# --- discoverable settings and flags --------------------------------------------------------------

LIMITED = """
from dataclasses import dataclass

from himalia import CliOption, ConfigSection, hookimpl, setting


@dataclass(frozen=True)
class LimitedConfig:
    limit: int = setting(10, "Most items answered at once.")
    label: str = setting("none", "A name shown to users.")
    tags: list[str] = setting(default_factory=lambda: ["a"], help="Tags to apply.")


@hookimpl
def himalia_config_sections():
    return [ConfigSection("limited", LimitedConfig, "An example section")]


@hookimpl
def himalia_cli_options():
    return [CliOption("--limited-label", "plugins.limited.label", "The label, from the command line.")]
"""


def test_config_describe_lists_every_key_with_type_default_and_help(tmp_path, plugin_site, capsys, monkeypatch):
    from himalia.cli import main

    monkeypatch.chdir(tmp_path)
    plugin_site("himalia-limited", {"limited": LIMITED})
    assert main(["config", "--describe"]) == 0
    out = capsys.readouterr().out
    assert "[plugins.limited]  # An example section\n" in out
    assert "limit = 10    # an integer\n    Most items answered at once.\n" in out
    assert 'tags = ["a"]    # a list of strings\n    Tags to apply.\n' in out
    assert 'port = 8888    # an integer\n    Port to listen on; 0 picks a free one.\n' in out
    assert 'token = ""    # a string, secret\n' in out  # from the auth plugin
    assert main(["config", "--describe", "--json"]) == 0
    keys = {(k["table"], k["key"]): k for k in json.loads(capsys.readouterr().out)}
    assert keys["plugins.limited", "limit"] == {"table": "plugins.limited", "key": "limit", "type": "an integer",
                                                "default": 10, "help": "Most items answered at once.",
                                                "secret": False, "path": False}
    assert keys["server", "root_dir"]["path"] is True


def test_serve_help_lists_the_flags_plugins_add(tmp_path, plugin_site, capsys):
    from himalia.cli import main

    plugin_site("himalia-limited", {"limited": LIMITED})
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "flags added by plugins:" in out
    assert "--limited-label" in out and "The label, from the command line." in out
    assert "--token" in out  # the auth plugin's
    assert "--port" in out  # the core's
    assert main(["serve", "--disable", "limited", "--help"]) == 0
    assert "--limited-label" not in capsys.readouterr().out


def test_a_bad_set_value_is_a_command_line_error_naming_the_flag(tmp_path, plugin_site, capsys, monkeypatch):
    from himalia.cli import main

    (tmp_path / "himalia.toml").write_text("[plugins.limited]\nlimit = 3\n")
    monkeypatch.chdir(tmp_path)
    plugin_site("himalia-limited", {"limited": LIMITED})
    assert main(["config", "--set", "plugins.limited.limit=many"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("himalia: --set plugins.limited.limit=many: [plugins.limited] 'limit' expects an "
                          "integer, got string: 'many'"), err
    assert "himalia.toml" not in err
    assert main(["config", "--set", "plugins.limited.tags=x,y"]) == 2
    assert 'e.g. ["text", "text"]' in capsys.readouterr().err
    assert main(["config", "--set", "plugins.limited.nope=1"]) == 2
    assert capsys.readouterr().err.startswith("himalia: --set plugins.limited.nope=1: [plugins.limited] unknown key")
    # the file's own errors still name the file
    (tmp_path / "himalia.toml").write_text("[plugins.limited]\nlimit = 'x'\n")
    assert main(["config"]) == 2
    assert capsys.readouterr().err.startswith(f"himalia: {tmp_path / 'himalia.toml'}: [plugins.limited] 'limit'")


def test_set_takes_a_string_key_s_value_as_typed(tmp_path, plugin_site, capsys, monkeypatch):
    from himalia.cli import main

    monkeypatch.chdir(tmp_path)
    plugin_site("himalia-limited", {"limited": LIMITED})
    for typed, value in [("123", "123"), ("true", "true"), ("1.5", "1.5"), ('"quoted"', "quoted"), ("a b", "a b")]:
        assert main(["config", "--set", f"plugins.limited.label={typed}"]) == 0, capsys.readouterr().err
        assert f'label = "{value}"\n' in capsys.readouterr().out
    assert main(["config", "--set", "plugins.limited.limit=123"]) == 0
    assert "limit = 123\n" in capsys.readouterr().out
    assert main(["config", "--limited-label", "42"]) == 0
    assert 'label = "42"\n' in capsys.readouterr().out
def test_a_plugin_command_runs_through_himalia_cli_commands(tmp_path, capsys):
    """`himalia kernels ...` is the kernels plugin's `himalia_cli_commands`; the common options work
    wherever they stand; an unknown command names the ones there are."""
    from himalia.cli import main

    state = tmp_path / "state"
    assert main(["kernels", "list", "--set", f"server.state_dir={json.dumps(str(state))}"]) == 0
    assert f"no kernels recorded in {state}\n" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["no-such-command"])
    assert "unknown command 'no-such-command'; commands: serve" in capsys.readouterr().err
