"""The conformance kits fail a provider that breaks the contract, naming the case; and pass one that keeps
it. Run in a pytester session against the memory contents example, instantiated directly (no server), and a
copy of it with one deliberate bug per case."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "memory_contents"

KIT_TESTS = '''
import json

import pytest

from himalia import Forbidden
from himalia.testing import ContentsKit, SessionStoreKit
from himalia_memory.contents import MemoryContents


class NotebookAsFileKeepsItsType(MemoryContents):
    async def get(self, path, *, content=True, type=None, format=None, hash=False):
        model = await super().get(path, content=content, type=None if type == "file" else type, format=format,
                                  hash=hash)
        return model


class WritesAreAKeyError(MemoryContents):
    async def rename(self, old_path, new_path):
        raise KeyError(old_path)


class TestGood(ContentsKit):
    @pytest.fixture
    def contents(self):
        return MemoryContents()


class TestNotebookAsFile(ContentsKit):
    @pytest.fixture
    def contents(self):
        return NotebookAsFileKeepsItsType()


class TestBadErrors(ContentsKit):
    @pytest.fixture
    def contents(self):
        return WritesAreAKeyError()


class TestNoCheckpoints(ContentsKit):
    checkpoints = False

    @pytest.fixture
    def contents(self):
        return MemoryContents()


class SharedRows:
    """A store whose records are the caller's own objects: a caller's edit changes the store."""

    def __init__(self):
        self.rows = {}

    async def add(self, record):
        if record.id in self.rows:
            raise ValueError(record.id)
        self.rows[record.id] = record

    async def get(self, session_id):
        return self.rows.get(session_id)

    async def find(self, *, path=None, kernel_id=None):
        return [r for r in self.rows.values()
                if (path is None or r.path == path) and (kernel_id is None or r.kernel_id == kernel_id)]

    async def update(self, record):
        if record.id not in self.rows:
            return False
        self.rows[record.id] = record
        return True

    async def remove(self, session_id):
        return self.rows.pop(session_id, None) is not None

    async def list(self):
        return list(self.rows.values())


class TestSharedRows(SessionStoreKit):
    @pytest.fixture
    def session_store(self):
        return SharedRows()
'''


@pytest.fixture
def outcomes(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_kits=KIT_TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rA")
    reports = result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
    out: dict[str, str] = {}
    for r in reports:
        if r.when == "call" or r.outcome != "passed":
            out[r.nodeid.split("::", 1)[1]] = r.outcome
    return out


def test_kits_pass_a_provider_that_keeps_the_contract_and_fail_one_that_does_not(outcomes: dict[str, str]):
    good = {k: v for k, v in outcomes.items() if k.startswith("TestGood::")}
    assert len(good) > 25 and set(good.values()) == {"passed", "skipped"}
    assert good["TestGood::test_read_only_provider_refuses_writes_with_an_api_error"] == "skipped"
    assert outcomes["TestNotebookAsFile::test_notebook_as_type_file_is_its_json_text"] == "failed"
    assert outcomes["TestNotebookAsFile::test_text_file"] == "passed"
    assert outcomes["TestBadErrors::test_rename_moves_and_refuses_to_overwrite"] == "failed"
    assert outcomes["TestBadErrors::test_delete"] == "passed"
    assert outcomes["TestNoCheckpoints::test_checkpoint_create_list_restore_delete"] == "skipped"
    assert outcomes["TestNoCheckpoints::test_save_replaces_a_file"] == "passed"
    assert outcomes["TestSharedRows::test_records_returned_are_copies"] == "failed"
    assert outcomes["TestSharedRows::test_list_and_find_are_oldest_first"] == "passed"
