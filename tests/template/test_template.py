"""plugin-template/: rendered with a real `copier copy` and `himalia new-plugin`, pip-installed (editable) into a
fresh virtual environment the way an author does it, found by that environment's `himalia plugins`, served by its
`himalia serve`, and its own tests run green there."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import copier
import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from himalia import __version__
from himalia.cli import main
from himalia.template import template_dir
from himalia.testing import serve_process

TIMEOUT = 120
REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "plugin-template"
COPIER = [sys.executable, "-m", "copier"]  # copier's own command line, as `copier copy` users run it


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


class Venv:
    """A virtual environment of the test run's own: `python` runs in it, `env` is it activated.

    Himalia is not installed in it but seen through its site packages, so it has no `bin/himalia` script:
    `venv.run("-m", "himalia.cli", ...)` is its `himalia ...`.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.project: Path | None = None  # the rendered plugin's checkout, `pip install -e`d into it
        bindir = root / ("Scripts" if os.name == "nt" else "bin")
        self.python = bindir / ("python.exe" if os.name == "nt" else "python")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        self.env = {**env, "VIRTUAL_ENV": str(root), "PATH": str(bindir) + os.pathsep + env.get("PATH", "")}

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        return run([str(self.python), *args], env=self.env, **kwargs)


@pytest.fixture(scope="module")
def venv(rendered: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A new venv with the rendered plugin `pip install -e`d into it, as its author would, from a copy of the
    rendered project (the author's checkout; `rendered` stays pristine).

    Himalia and its dependencies come from this test run's environment, so nothing is downloaded:
    `--system-site-packages` exposes the base interpreter's packages, and when this run is itself in a venv
    (the usual case: a venv made from a venv sees the base interpreter, not the outer venv) a .pth file adds
    the outer venv's site-packages, with its own .pth files (the editable himalia install's among them).
    """
    venv = Venv(tmp_path_factory.mktemp("venv") / "env")
    result = run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv.root)])
    assert result.returncode == 0, result.stdout + result.stderr
    purelib = venv.run("-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
    assert purelib.returncode == 0, purelib.stderr
    if sys.prefix != sys.base_prefix:
        outer = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
        lines = "".join(f"import site; site.addsitedir({path!r})\n" for path in outer)
        (Path(purelib.stdout.strip()) / "_himalia_test_outer_site.pth").write_text(lines)
    project = tmp_path_factory.mktemp("author") / "himalia-hello"
    shutil.copytree(rendered, project)
    # pip comes from the outer environment too (`--without-pip` saves seconds); it installs into the running
    # interpreter's prefix, the new venv
    result = venv.run("-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index",
                      "--disable-pip-version-check", "-q", "-e", str(project), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    venv.project = project
    return venv


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


def render(out: Path, **answers: str) -> Path:
    """The template rendered in process through copier's public API."""
    copier.run_copy(str(TEMPLATE), str(out), data=answers, defaults=True, quiet=True, unsafe=False)
    return out


QUOTED = {
    "description": 'Counts "words", \\N{not an escape}, C:\\temp\\ and ends in a quote: "',
    "author_name": 'Ada "Countess" Lovelace \\ Byron\\',
    "author_email": 'ada"\\@example.org',
}


def test_answers_with_quotes_and_backslashes_render_valid_python_and_toml(tmp_path: Path):
    out = render(tmp_path / "p", plugin_name="word_count", **QUOTED)
    for path in out.rglob("*.py"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an invalid escape sequence is only a warning, for now
            compile(path.read_text(), str(path), "exec")
    project = tomllib.loads((out / "pyproject.toml").read_text())["project"]
    assert project["description"] == QUOTED["description"]
    assert project["authors"] == [{"name": QUOTED["author_name"], "email": QUOTED["author_email"]}]
    assert project["entry-points"]["himalia"] == {"word_count": "himalia_word_count"}
    init = ast.parse((out / "himalia_word_count" / "__init__.py").read_text())
    assert ast.get_docstring(init) == f"Himalia plugin `word_count`: {QUOTED['description']}"
    calls = [n for n in ast.walk(init) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "ConfigSection"]
    assert ast.literal_eval(calls[0].args[2]) == QUOTED["description"]
    assert "class WordCountConfig" in (out / "himalia_word_count" / "config.py").read_text()


def test_answers_without_an_author_leave_authors_out(tmp_path: Path):
    out = render(tmp_path / "p", plugin_name="hello", author_email="ada@example.org")
    assert tomllib.loads((out / "pyproject.toml").read_text())["project"]["authors"] == [{"email": "ada@example.org"}]
    out = render(tmp_path / "q", plugin_name="hello")
    assert "authors" not in tomllib.loads((out / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("question", ["description", "author_name", "author_email"])
def test_copier_refuses_a_line_break_in_an_answer(question: str, tmp_path: Path):
    with pytest.raises(ValueError, match="one line, without control characters"):
        render(tmp_path / "p", plugin_name="hello", **{question: "two\nlines"})


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


@pytest.mark.parametrize("name", ["auth", "contents"])
def test_new_plugin_refuses_the_name_of_an_installed_plugin(name: str, tmp_path: Path):
    # installed, `himalia_<name>` would shadow himalia's own plugin of that name (or be shadowed by it)
    result = run([sys.executable, "-m", "himalia.cli", "new-plugin", name, str(tmp_path / "p")], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (f"himalia: plugin name {name!r} is taken: plugin {name!r} (himalia {__version__}) "
                             "is installed; choose another name\n")
    assert not (tmp_path / "p").exists()


def test_new_plugin_refuses_a_name_whose_module_is_importable(tmp_path: Path):
    site = tmp_path / "site"
    (site / "himalia_taken_name").mkdir(parents=True)
    (site / "himalia_taken_name" / "__init__.py").write_text("")
    result = run([sys.executable, "-m", "himalia.cli", "new-plugin", "taken-name", str(tmp_path / "p")],
                 env=env_with(site), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("himalia: plugin name 'taken-name' is taken: a module himalia_taken_name is "
                                    f"already importable ({site / 'himalia_taken_name' / '__init__.py'})")
    assert not (tmp_path / "p").exists()


def test_new_plugin_refuses_a_name_the_core_owns(tmp_path: Path):
    result = run([sys.executable, "-m", "himalia.cli", "new-plugin", "disable", str(tmp_path / "p")], cwd=tmp_path)
    assert (result.returncode, result.stderr.count("\n")) == (2, 1)
    assert "plugin name 'disable' is reserved: [plugins] disable is a core setting" in result.stderr
    assert not (tmp_path / "p").exists()


def test_new_plugin_never_overwrites(tmp_path: Path, capsys):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "mine.txt").write_text("keep")
    assert main(["new-plugin", "hello", str(tmp_path / "p")]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["mine.txt"]


def test_venv_s_himalia_plugins_finds_the_installed_plugin(venv: Venv):
    result = venv.run("-m", "himalia.cli", "plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["hello"]["distribution"] == "himalia-hello"
    assert rows["hello"]["error"] is None
    assert {"himalia_config_sections", "himalia_routes", "himalia_openapi"} <= set(rows["hello"]["hooks"])
    assert {"auth", "contents"} <= set(rows)  # himalia's own, through the outer environment
    text = venv.run("-m", "himalia.cli", "plugins").stdout
    assert "hello  (himalia-hello 0.1.0)  loaded" in text
    without = run([sys.executable, "-m", "himalia.cli", "plugins", "--json"])  # this test run's environment
    assert "hello" not in {r["name"] for r in json.loads(without.stdout)}


def test_venv_s_himalia_serve_answers_with_the_greeting_from_the_config_file(venv: Venv, tmp_path: Path):
    config = tmp_path / "himalia.toml"
    config.write_text('[plugins.hello]\ngreeting = "Hi from TOML"\n')
    with serve_process("--config", str(config), "--root-dir", str(tmp_path), env=venv.env,
                       python=venv.python, timeout=TIMEOUT) as server:
        assert any(line.strip().startswith("plugins:") and "hello" in line for line in server.output)
        status, body = get(server.url_for("/api/hello/hello"), server.auth_headers)
        assert (status, json.loads(body)) == (200, {"plugin": "hello", "message": "Hi from TOML"})
        status, _ = get(server.url_for("/api/hello/hello"))
        assert status == 401
        status, spec = get(server.url_for("/api/spec.yaml"), server.auth_headers)
        assert "/api/hello/hello" in json.loads(spec)["paths"]
    assert server.process.returncode == 0


def test_venv_s_himalia_serve_refuses_a_wrong_config_type(venv: Venv, tmp_path: Path):
    config = tmp_path / "himalia.toml"
    config.write_text("[plugins.hello]\ngreeting = 5\n")
    result = venv.run("-m", "himalia.cli", "serve", "--port", "0", "--config", str(config))
    assert result.returncode == 2
    assert f"himalia: {config}: [plugins.hello] 'greeting' expects a string, got int: 5" in result.stderr


def test_rendered_plugin_tests_pass_in_the_venv(venv: Venv):
    result = venv.run("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=venv.project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout


def test_ci_workflow_installs_himalia_from_git_before_the_plugin(rendered: Path):
    """Himalia is not on PyPI: `pip install -e '.[test]'` can only satisfy `himalia>=...` with an installed one."""
    workflow = yaml.safe_load((rendered / ".github" / "workflows" / "test.yml").read_text())
    url = workflow["env"]["HIMALIA_GIT"]
    assert url.startswith("https://")
    commands = [step["run"] for step in workflow["jobs"]["test"]["steps"] if "run" in step]
    assert commands == ['pip install "himalia @ git+$HIMALIA_GIT"', "pip install -e '.[test]'", "pytest"]
    assert f'pip install "himalia @ git+{url}"' in (rendered / "README.md").read_text()


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
