"""plugin-template/: rendered with a real `copier copy` and `himalia new-plugin`, one project per kind, each
pip-installed (editable) into one fresh virtual environment the way an author does it, found by that environment's
`himalia plugins`, served by its `himalia serve`, and its own tests (with the kind's conformance kit) run green
there."""

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


KINDS = {  # kind → the plugin name the tests render it as
    "route": "hello",
    "contents": "readonly-files",
    "session-store": "dict-store",
    "identity": "shared-secret",
    "kernels": "remote-kernels",
    "observer": "event-log",
}


@pytest.fixture(scope="module")
def rendered_kinds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every kind rendered by copier's own command line, with the defaults."""
    out = {}
    for kind, name in KINDS.items():
        target = tmp_path_factory.mktemp("render") / f"himalia-{name}"
        result = run([*COPIER, "copy", "--defaults", "--quiet", "-d", f"plugin_name={name}", "-d", f"kind={kind}",
                      str(TEMPLATE), str(target)])
        assert result.returncode == 0, result.stderr
        out[kind] = target
    return out


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
        self.projects: dict[str, Path] = {}  # kind → the rendered plugin's checkout, `pip install -e`d into it
        bindir = root / ("Scripts" if os.name == "nt" else "bin")
        self.python = bindir / ("python.exe" if os.name == "nt" else "python")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        self.env = {**env, "VIRTUAL_ENV": str(root), "PATH": str(bindir) + os.pathsep + env.get("PATH", "")}

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        return run([str(self.python), *args], env=self.env, **kwargs)


@pytest.fixture(scope="module")
def venv(rendered_kinds: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A new venv with a plugin of every kind `pip install -e`d into it (one pip run: installs are the slow
    part), as its author would, from copies of the rendered projects (the authors' checkouts).

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
    authors = tmp_path_factory.mktemp("author")
    for kind, source in rendered_kinds.items():
        venv.projects[kind] = authors / source.name
        shutil.copytree(source, venv.projects[kind])
    # pip comes from the outer environment too (`--without-pip` saves seconds); it installs into the running
    # interpreter's prefix, the new venv
    editables = [arg for project in venv.projects.values() for arg in ("-e", str(project))]
    result = venv.run("-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index",
                      "--disable-pip-version-check", "-q", *editables, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return venv


def test_new_plugin_uses_this_checkout_s_template():
    # the source tree itself (editable install) or its copy in the installed package
    assert tree(template_dir()) == tree(TEMPLATE)


def test_rendered_project_has_the_entry_point_and_package(rendered: Path):
    pyproject = tomllib.loads((rendered / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "himalia-hello"
    assert pyproject["project"]["entry-points"]["himalia"] == {"hello": "himalia_hello"}
    assert "pytest" in (rendered / ".github" / "workflows" / "test.yml").read_text()


FILES = {  # kind → the package's modules and the tests, and nothing else
    "route": ({"__init__.py", "handlers.py"}, {"test_plugin.py", "test_routes.py"}),
    "contents": ({"__init__.py", "config.py", "contents.py"}, {"test_plugin.py", "test_contents.py"}),
    "session-store": ({"__init__.py", "store.py"}, {"test_plugin.py", "test_store.py"}),
    "identity": ({"__init__.py", "config.py", "identity.py"}, {"test_plugin.py", "test_identity.py"}),
    "kernels": ({"__init__.py", "kernels.py"}, {"test_plugin.py", "test_kernels.py"}),
    "observer": ({"__init__.py"}, {"test_plugin.py", "test_observer.py"}),
}
KITS = {"contents": "ContentsKit", "session-store": "SessionStoreKit", "identity": "IdentityKit"}


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_renders_only_what_it_needs(kind: str, rendered_kinds: dict[str, Path]):
    project = rendered_kinds[kind]
    module = "himalia_" + KINDS[kind].replace("-", "_")
    modules, tests = FILES[kind]
    assert {p.name for p in (project / module).iterdir()} == modules
    assert {p.name for p in (project / "tests").iterdir()} == tests
    assert {p.name for p in project.iterdir()} == {".github", ".gitignore", "README.md", "pyproject.toml", module,
                                                   "tests"}
    text = "\n".join(p.read_text() for p in project.rglob("*") if p.is_file())
    for leftover in ("greeting", "Hello from", "/api/hello/hello", "github.com/himalia", "TODO"):
        assert leftover not in text, f"{kind}: {leftover!r} rendered"
    if kind in KITS:
        kit_test = next(p for p in (project / "tests").iterdir() if p.name != "test_plugin.py")
        assert f"class Test" in kit_test.read_text() and f"({KITS[kind]}):" in kit_test.read_text()
    assert "[project.urls]" not in (project / "pyproject.toml").read_text()  # no repository URL given


def test_a_repository_url_goes_into_the_metadata_and_readme(tmp_path: Path):
    out = render(tmp_path / "p", plugin_name="hello", repository_url="https://git.example.org/ada/hello")
    pyproject = tomllib.loads((out / "pyproject.toml").read_text())
    assert pyproject["project"]["urls"] == {"Repository": "https://git.example.org/ada/hello"}
    assert "https://git.example.org/ada/hello" in (out / "README.md").read_text()
    with pytest.raises(ValueError, match="an http\\(s\\) URL, or empty"):
        render(tmp_path / "q", plugin_name="hello", repository_url='https://x" injected = "y')


@pytest.mark.parametrize("kind", KINDS)
def test_rendered_code_imports_only_the_public_api(kind: str, rendered_kinds: dict[str, Path]):
    module = "himalia_" + KINDS[kind].replace("-", "_")
    for path in rendered_kinds[kind].rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.startswith("himalia"):
                allowed = {"himalia", module} | ({"himalia.testing"} if "tests" in path.parts else set())
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
    out = render(tmp_path / "p", plugin_name="word_count", kind="identity", **QUOTED)
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


def test_new_plugin_kind_and_repository_url_render_what_copier_renders(rendered_kinds: dict[str, Path],
                                                                      tmp_path: Path):
    result = run([sys.executable, "-m", "himalia.cli", "new-plugin", "dict-store", "--kind", "session-store"],
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "created himalia-dict-store: a Himalia plugin 'dict-store' of kind session-store" in result.stdout
    assert tree(tmp_path / "himalia-dict-store") == tree(rendered_kinds["session-store"])
    result = run([sys.executable, "-m", "himalia.cli", "new-plugin", "x", str(tmp_path / "x"),
                  "--repository-url", "https://git.example.org/x"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'Repository = "https://git.example.org/x"' in (tmp_path / "x" / "pyproject.toml").read_text()
    result = run([sys.executable, "-m", "himalia.cli", "new-plugin", "y", str(tmp_path / "y"),
                  "--repository-url", "ftp://nope"], cwd=tmp_path)
    assert (result.returncode, result.stderr.count("\n")) == (2, 1)
    assert "'repository_url': an http(s) URL, or empty" in result.stderr
    assert not (tmp_path / "y").exists()
    result = run([sys.executable, "-m", "himalia.cli", "new-plugin", "z", "--kind", "widget"], cwd=tmp_path)
    assert result.returncode == 2 and "invalid choice: 'widget'" in result.stderr


def test_new_plugin_without_copier_says_what_to_install(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "copier", None)  # `import copier` now fails as when it is not installed
    assert main(["new-plugin", "hello", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err == "himalia: new-plugin needs copier: pip install 'himalia[template]'\n"
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


def test_venv_s_himalia_plugins_finds_the_installed_plugins(venv: Venv):
    result = venv.run("-m", "himalia.cli", "plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    hooks = {"hello": {"himalia_routes", "himalia_openapi"},
             "readonly-files": {"himalia_config_sections", "himalia_contents_providers"},
             "dict-store": {"himalia_session_store_providers"},
             "shared-secret": {"himalia_config_sections", "himalia_identity_providers"},
             "remote-kernels": {"himalia_kernel_providers"},
             "event-log": {"himalia_resources", "himalia_kernel_started", "himalia_kernel_restarting",
                           "himalia_kernel_restarted", "himalia_kernel_dead", "himalia_kernel_stopped",
                           "himalia_session_created", "himalia_session_deleted"}}
    for name, expected in hooks.items():
        assert rows[name]["distribution"] == f"himalia-{name}"
        assert rows[name]["error"] is None, rows[name]["error"]
        assert set(rows[name]["hooks"]) == expected, name
    assert {"auth", "contents"} <= set(rows)  # himalia's own, through the outer environment
    text = venv.run("-m", "himalia.cli", "plugins").stdout
    assert "hello  (himalia-hello 0.1.0)  loaded" in text
    without = run([sys.executable, "-m", "himalia.cli", "plugins", "--json"])  # this test run's environment
    assert "hello" not in {r["name"] for r in json.loads(without.stdout)}


def test_venv_s_himalia_serve_uses_the_plugins_from_the_config_file(venv: Venv, tmp_path: Path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "notes.txt").write_text("read me")
    config = tmp_path / "himalia.toml"
    config.write_text('[server]\ncontents_provider = "readonly-files"\n\n'
                      '[plugins.readonly-files]\nroot = "shared"\n')
    with serve_process("--config", str(config), "--root-dir", str(tmp_path), env=venv.env,
                       python=venv.python, timeout=TIMEOUT) as server:
        assert any(line.strip().startswith("plugins:") and "hello" in line for line in server.output)
        status, body = get(server.url_for("/api/hello"), server.auth_headers)
        assert (status, json.loads(body)) == (200, {"name": "hello", "version": "0.1.0"})
        status, _ = get(server.url_for("/api/hello"))
        assert status == 401
        status, body = get(server.url_for("/api/contents/notes.txt"), server.auth_headers)
        assert (status, json.loads(body)["content"], json.loads(body)["writable"]) == (200, "read me", False)
    assert server.process.returncode == 0


def test_venv_s_himalia_config_describes_the_plugins_settings(venv: Venv, tmp_path: Path):
    result = venv.run("-m", "himalia.cli", "config", "--describe", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[plugins.shared-secret]" in result.stdout
    assert 'secret = ""    # a string, secret\n' in result.stdout
    config = tmp_path / "himalia.toml"
    config.write_text("[plugins.shared-secret]\nsecret = 5\n")
    result = venv.run("-m", "himalia.cli", "serve", "--port", "0", "--config", str(config))
    assert result.returncode == 2
    assert f"himalia: {config}: [plugins.shared-secret] 'secret' expects a string, got int: 5" in result.stderr


def pytest_summary(output: str) -> dict[str, int]:
    """`== 19 passed, 16 skipped in 3.2s ==` → {"passed": 19, "skipped": 16}."""
    last = output.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|skipped|failed|errors?)", last)}


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind != "contents"])  # contents: the test below
def test_rendered_plugin_tests_pass_in_the_venv(kind: str, venv: Venv):
    result = venv.run("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=venv.projects[kind], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = pytest_summary(result.stdout)
    assert summary.get("passed", 0) >= 2 and "failed" not in summary, result.stdout


def test_read_only_contents_plugin_passes_the_kit_except_the_writes_it_declares(venv: Venv):
    """issue 21's Must show: a read-only contents provider written from the template (kind contents) passes
    the contents conformance kit in its own test run; the write cases are skipped because it declares
    `read_only = True`, and the kit checks its writes are refused instead."""
    result = venv.run("-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider", cwd=venv.projects["contents"],
                      timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    outcomes = dict(re.findall(r"::TestContents::(test_\w+) (PASSED|SKIPPED)", result.stdout))
    from himalia.testing import ContentsKit

    cases = {name for name in dir(ContentsKit) if name.startswith("test_")}
    assert set(outcomes) == cases  # every case of the kit ran or was skipped, none failed
    for case in ("test_notebook_as_type_file_is_its_json_text", "test_hash_only_when_asked",
                 "test_read_only_provider_refuses_writes_with_an_api_error", "test_wrong_type_is_a_400",
                 "test_writable_says_whether_writes_are_accepted"):
        assert outcomes[case] == "PASSED", case
    for case in ("test_save_text_answers_the_model_without_content", "test_rename_moves_and_refuses_to_overwrite",
                 "test_checkpoint_create_list_restore_delete"):
        assert outcomes[case] == "SKIPPED", case
    assert "TestContents declares read_only = True" in result.stdout
    assert "failed" not in pytest_summary(result.stdout)


def test_observer_plugin_sees_every_kernel_transition_in_order(venv: Venv):
    """issue 21's Must show: an observer written from the template (kind observer) sees, in its own test
    run with real kernels, a death under autorestart (restarting, restarted, with the death's reason), a
    death with autorestart off (dead, stopped), a delete, and the stop at shutdown before its resource
    closes, in order."""
    result = venv.run("-m", "pytest", "-v", "-p", "no:cacheprovider", "tests/test_observer.py",
                      cwd=venv.projects["observer"], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    outcomes = dict(re.findall(r"::(test_\w+) (PASSED|FAILED|SKIPPED)", result.stdout))
    assert outcomes == {"test_a_death_under_autorestart_and_the_shutdown_are_seen_in_order": "PASSED",
                        "test_a_death_with_autorestart_off_is_dead_and_a_delete_is_deleted": "PASSED"}


def test_ci_workflow_installs_himalia_from_the_given_source_before_the_plugin(rendered: Path, tmp_path: Path):
    """Until Himalia is on a package index, `pip install -e '.[test]'` can only satisfy `himalia>=...` with an
    installed one: the template asks where from, and names no placeholder when not told."""
    workflow = yaml.safe_load((rendered / ".github" / "workflows" / "test.yml").read_text())
    assert "env" not in workflow
    commands = [step["run"] for step in workflow["jobs"]["test"]["steps"] if "run" in step]
    assert commands == ["pip install -e '.[test]'", "pytest"]
    source = "himalia @ git+https://git.example.org/fork/himalia@v0.1"
    out = render(tmp_path / "p", plugin_name="hello", himalia_source=source)
    workflow = yaml.safe_load((out / ".github" / "workflows" / "test.yml").read_text())
    assert workflow["env"] == {"HIMALIA": source}
    commands = [step["run"] for step in workflow["jobs"]["test"]["steps"] if "run" in step]
    assert commands == ['pip install "$HIMALIA"', "pip install -e '.[test]'", "pytest"]
    assert workflow["jobs"]["test"]["steps"][1]["with"]["python-version"] == "${{ matrix.python-version }}"
    assert f'pip install "{source}"' in (out / "README.md").read_text()


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
    assert (target / "himalia" / "kits" / "contents.py").is_file()  # the kits the rendered tests import
    shipped = target / "himalia" / "plugin_template"
    assert (shipped / "project" / ".github" / "workflows" / "test.yml.jinja").is_file()
    result = run([sys.executable, "-m", "himalia.cli", "new-plugin", "hello", str(tmp_path / "out")],
                 env=env_with(target), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "out") == tree(rendered)
    found = run([sys.executable, "-c", "from himalia.template import template_dir; print(template_dir())"],
                env=env_with(target), cwd=tmp_path)
    assert found.stdout.strip() == str(shipped)
