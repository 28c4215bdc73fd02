"""plugin-template/: rendered with a real `copier copy` and `himalia new-plugin`, pip-installed (--target, so its
entry point stays out of this test run), found by `himalia plugins`, served by a real `himalia serve`, and its
own tests run green."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from himalia.cli import main
from himalia.template import template_dir
from himalia.testing import serve_process

TIMEOUT = 120
REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "plugin-template"
COPIER = [sys.executable, "-c", "import sys; from copier._cli import CopierApp; sys.exit(CopierApp.run())"]


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("timeout", TIMEOUT)
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs)


def env_with(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site)}


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    # no proxy: the request must go straight to 127.0.0.1
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=TIMEOUT) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template rendered by copier's own command line, with the defaults."""
    out = tmp_path_factory.mktemp("render") / "himalia-hello"
    result = run([*COPIER, "copy", "--defaults", "--quiet", "-d", "plugin_name=hello", str(TEMPLATE), str(out)])
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def site(rendered: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rendered plugin, pip-installed into a directory of its own."""
    build = tmp_path_factory.mktemp("build") / "himalia-hello"
    shutil.copytree(rendered, build)  # pip builds in the tree; keep `rendered` pristine
    target = tmp_path_factory.mktemp("site")
    result = run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                  "--disable-pip-version-check", "-q", "--target", str(target), str(build)], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return target


def test_new_plugin_uses_this_checkout_s_template():
    # the source tree itself (editable install) or its copy in the installed package
    assert tree(template_dir()) == tree(TEMPLATE)


def test_rendered_project_has_the_entry_point_and_package(rendered: Path):
    pyproject = tomllib.loads((rendered / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "himalia-hello"
    assert pyproject["project"]["entry-points"]["himalia"] == {"hello": "himalia_hello"}
    assert {"__init__.py", "config.py", "handlers.py"} <= {p.name for p in (rendered / "himalia_hello").iterdir()}
    assert (rendered / "tests" / "test_himalia_hello.py").is_file()
    assert "pytest" in (rendered / ".github" / "workflows" / "test.yml").read_text()
    assert "[plugins.hello]" in (rendered / "README.md").read_text()


def test_rendered_code_imports_only_the_public_api(rendered: Path):
    for path in rendered.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.startswith("himalia"):
                allowed = {"himalia", "himalia_hello"} | ({"himalia.testing"} if "tests" in path.parts else set())
                assert node.module in allowed, f"{path.name} imports {node.module}"


def test_answers_reach_the_project(tmp_path: Path):
    out = tmp_path / "p"
    result = run([*COPIER, "copy", "--defaults", "--quiet", "-d", "plugin_name=word_count",
                  "-d", 'description=Counts "words"', "-d", "author_name=Ada Lovelace",
                  "-d", "author_email=ada@example.org", str(TEMPLATE), str(out)])
    assert result.returncode == 0, result.stderr
    project = tomllib.loads((out / "pyproject.toml").read_text())["project"]
    assert project["description"] == 'Counts "words"'
    assert project["authors"] == [{"name": "Ada Lovelace", "email": "ada@example.org"}]
    assert project["entry-points"]["himalia"] == {"word_count": "himalia_word_count"}
    assert "class WordCountConfig" in (out / "himalia_word_count" / "config.py").read_text()


def test_copier_refuses_a_bad_plugin_name(tmp_path: Path):
    result = run([*COPIER, "copy", "--defaults", "--quiet", "-d", "plugin_name=Hello World",
                  str(TEMPLATE), str(tmp_path / "p")])
    assert result.returncode != 0
    assert "lowercase letters" in result.stderr


def test_new_plugin_renders_what_copier_copy_renders(rendered: Path, tmp_path: Path):
    result = run([sys.executable, "-m", "himalia.cli", "new-plugin", "hello"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "created himalia-hello" in result.stdout
    assert tree(tmp_path / "himalia-hello") == tree(rendered)


def test_new_plugin_without_copier_says_what_to_install(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "copier", None)  # `import copier` now fails as when it is not installed
    assert main(["new-plugin", "hello", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("himalia: new-plugin needs copier: pip install copier")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("name", ["Hello", "1st", "a b", "../x", ""])
def test_new_plugin_refuses_a_bad_name(name: str, tmp_path: Path, capsys):
    assert main(["new-plugin", name, str(tmp_path / "p")]) == 2
    assert "use lowercase letters" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_new_plugin_never_overwrites(tmp_path: Path, capsys):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "mine.txt").write_text("keep")
    assert main(["new-plugin", "hello", str(tmp_path / "p")]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["mine.txt"]


def test_himalia_plugins_finds_the_installed_plugin(site: Path):
    result = run([sys.executable, "-m", "himalia.cli", "plugins", "--json"], env=env_with(site))
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["hello"]["distribution"] == "himalia-hello"
    assert rows["hello"]["error"] is None
    assert {"himalia_config_sections", "himalia_routes", "himalia_openapi"} <= set(rows["hello"]["hooks"])
    text = run([sys.executable, "-m", "himalia.cli", "plugins"], env=env_with(site)).stdout
    assert "hello  (himalia-hello 0.1.0)  loaded" in text
    without = run([sys.executable, "-m", "himalia.cli", "plugins", "--json"])
    assert "hello" not in {r["name"] for r in json.loads(without.stdout)}


def test_served_plugin_answers_with_the_greeting_from_the_config_file(site: Path, tmp_path: Path):
    config = tmp_path / "himalia.toml"
    config.write_text('[plugins.hello]\ngreeting = "Hi from TOML"\n')
    with serve_process("--config", str(config), "--root-dir", str(tmp_path), env=env_with(site)) as server:
        assert any(line.strip().startswith("plugins:") and "hello" in line for line in server.output)
        status, body = get(server.url_for("/api/hello/hello"), server.auth_headers)
        assert (status, json.loads(body)) == (200, {"plugin": "hello", "message": "Hi from TOML"})
        status, _ = get(server.url_for("/api/hello/hello"))
        assert status == 401
        status, spec = get(server.url_for("/api/spec.yaml"), server.auth_headers)
        assert "/api/hello/hello" in json.loads(spec)["paths"]
    assert server.process.returncode == 0


def test_served_plugin_refuses_a_wrong_config_type(site: Path, tmp_path: Path):
    config = tmp_path / "himalia.toml"
    config.write_text("[plugins.hello]\ngreeting = 5\n")
    result = run([sys.executable, "-m", "himalia.cli", "serve", "--port", "0", "--config", str(config)],
                 env=env_with(site))
    assert result.returncode == 2
    assert f"himalia: {config}: [plugins.hello] 'greeting' expects a string, got int: 5" in result.stderr


def test_rendered_plugin_tests_pass(rendered: Path, site: Path, tmp_path: Path):
    project = tmp_path / "himalia-hello"
    shutil.copytree(rendered, project)
    result = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project, env=env_with(site))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout


def test_template_ships_in_the_himalia_wheel(rendered: Path, tmp_path: Path):
    """Users install a wheel, not the source checkout: `new-plugin` must find the template in it."""
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    for name in ("core", "plugins", "plugin-template"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    target = tmp_path / "site"
    result = run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                  "--disable-pip-version-check", "-q", "--target", str(target), str(source)], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    shipped = target / "himalia" / "plugin_template"
    assert (shipped / "project" / ".github" / "workflows" / "test.yml").is_file()
    result = run([sys.executable, "-m", "himalia.cli", "new-plugin", "hello", str(tmp_path / "out")],
                 env=env_with(target), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "out") == tree(rendered)
    found = run([sys.executable, "-c", "from himalia.template import template_dir; print(template_dir())"],
                env=env_with(target), cwd=tmp_path)
    assert found.stdout.strip() == str(shipped)
