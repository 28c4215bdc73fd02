"""`ContentsKit`: the contents-provider contract, as the contents handlers rely on it.

Subclass it in your tests with a `contents` fixture yielding your `ContentsManager`:

    class TestMyContents(ContentsKit):
        @pytest.fixture
        async def contents(self, himalia_server):
            async with himalia_server(config={"server": {"contents_provider": "mine"}}) as server:
                yield server.app[SERVICES].contents

Every case starts from the tree in `seed_files` (API path → text, bytes, a notebook dict, or None
for a directory), written through `save` unless the class says `read_only = True`: then your
`contents` fixture must already present that tree (request the `seed_files` fixture; `write_tree`
puts it on disk), the write cases are skipped, and the kit checks writes are refused with an
ApiError and models say `"writable": false`. `checkpoints = False` skips the checkpoint cases.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ..errors import ApiError
from ..services import ContentsManager, Model

NOTEBOOK: dict[str, Any] = {
    "cells": [{"cell_type": "markdown", "id": "kit-cell", "metadata": {}, "source": "# The kit's notebook"}],
    "metadata": {},
    "nbformat": 4,
    "nbformat_minor": 5,
}
SEED: dict[str, Any] = {
    "kit": None,
    "kit/hello.txt": "hello, kit\n",
    "kit/data.bin": b"\x00\x01\xfe\xff",
    "kit/notebook.ipynb": NOTEBOOK,
    "kit/sub": None,
    "kit/sub/inner.txt": "inner\n",
}
MODEL_KEYS = {"name", "path", "type", "format", "mimetype", "content", "created", "last_modified", "size",
              "writable", "hash", "hash_algorithm"}


def write_tree(directory: str | Path, files: dict[str, Any]) -> None:
    """Put `files` (as `seed_files` gives them) on disk under `directory`, for read-only providers
    that serve a directory."""
    root = Path(directory)
    for path, content in files.items():
        target = root / path
        if content is None:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict):
            target.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")


def model_for(content: Any) -> Model:
    """The model `save` takes for one `seed_files` value."""
    if content is None:
        return {"type": "directory"}
    if isinstance(content, dict):  # a copy: a provider may change the model it is given
        return {"type": "notebook", "format": "json", "content": copy.deepcopy(content)}
    if isinstance(content, bytes):
        return {"type": "file", "format": "base64", "content": base64.b64encode(content).decode("ascii")}
    return {"type": "file", "format": "text", "content": content}


async def raises_api_error(call: Any, *statuses: int) -> ApiError:
    """Await `call`; it must raise a himalia.ApiError whose status is one of `statuses`."""
    with pytest.raises(ApiError) as info:
        await call
    assert info.value.status in statuses, f"expected status {statuses}, got {info.value.status}: {info.value}"
    return info.value


def names(model: Model) -> list[str]:
    return sorted(child["name"] for child in model["content"])


class ContentsKit:
    """The contents contract. Subclass with a `contents` fixture; see the module docstring."""

    read_only: ClassVar[bool] = False
    """The provider refuses every write: the write cases are skipped, refusals are checked."""
    checkpoints: ClassVar[bool] = True
    """The provider keeps checkpoints (create, list, restore, delete); False skips those cases."""

    # -- fixtures ----------------------------------------------------------------------------------

    @pytest.fixture
    def contents(self) -> ContentsManager:
        raise NotImplementedError("define a `contents` fixture yielding your ContentsManager")

    @pytest.fixture
    def seed_files(self) -> dict[str, Any]:
        """The tree every case starts from: API path → text, bytes, notebook dict, or None (a directory)."""
        return copy.deepcopy(SEED)

    @pytest.fixture
    async def cm(self, contents: ContentsManager, seed_files: dict[str, Any]) -> ContentsManager:
        """`contents`, holding `seed_files`."""
        if not self.read_only:
            for path, content in seed_files.items():
                await contents.save(path, model_for(content))
        return contents

    def needs_writes(self) -> None:
        if self.read_only:
            pytest.skip(f"{type(self).__name__} declares read_only = True")

    def needs_checkpoints(self) -> None:
        self.needs_writes()
        if not self.checkpoints:
            pytest.skip(f"{type(self).__name__} declares checkpoints = False")

    # -- reading -----------------------------------------------------------------------------------

    async def test_is_a_contents_manager(self, cm: ContentsManager) -> None:
        assert isinstance(cm, ContentsManager)

    async def test_directory_model_lists_its_children_without_their_content(self, cm: ContentsManager) -> None:
        model = await cm.get("kit")
        assert MODEL_KEYS <= set(model), f"missing keys: {MODEL_KEYS - set(model)}"
        assert (model["name"], model["path"], model["type"], model["format"]) == ("kit", "kit", "directory", "json")
        assert names(model) == ["data.bin", "hello.txt", "notebook.ipynb", "sub"]
        for child in model["content"]:
            assert MODEL_KEYS <= set(child), f"{child['path']}: missing keys {MODEL_KEYS - set(child)}"
            assert child["content"] is None and child["format"] is None, child["path"]
            assert child["path"] == f"kit/{child['name']}"
        kinds = {c["name"]: c["type"] for c in model["content"]}
        assert kinds == {"data.bin": "file", "hello.txt": "file", "notebook.ipynb": "notebook", "sub": "directory"}

    async def test_root_is_the_empty_path(self, cm: ContentsManager) -> None:
        model = await cm.get("")
        assert (model["path"], model["type"]) == ("", "directory")
        assert "kit" in names(model)

    async def test_text_file(self, cm: ContentsManager) -> None:
        model = await cm.get("kit/hello.txt")
        assert (model["name"], model["path"], model["type"]) == ("hello.txt", "kit/hello.txt", "file")
        assert (model["format"], model["content"]) == ("text", "hello, kit\n")
        assert model["mimetype"].startswith("text/")
        assert model["size"] == len(b"hello, kit\n")
        assert isinstance(model["writable"], bool)
        assert isinstance(model["last_modified"], str) and isinstance(model["created"], str)

    async def test_binary_file_is_base64(self, cm: ContentsManager) -> None:
        model = await cm.get("kit/data.bin")
        assert model["format"] == "base64"
        assert base64.b64decode(model["content"]) == b"\x00\x01\xfe\xff"
        assert model["size"] == 4

    async def test_format_base64_on_a_text_file(self, cm: ContentsManager) -> None:
        model = await cm.get("kit/hello.txt", format="base64")
        assert model["format"] == "base64"
        assert base64.b64decode(model["content"]) == b"hello, kit\n"

    async def test_format_text_on_a_binary_file_is_a_400(self, cm: ContentsManager) -> None:
        await raises_api_error(cm.get("kit/data.bin", format="text"), 400)

    async def test_notebook_model_holds_the_notebook(self, cm: ContentsManager) -> None:
        model = await cm.get("kit/notebook.ipynb")
        assert (model["type"], model["format"]) == ("notebook", "json")
        assert model["content"]["nbformat"] == 4
        assert [c["source"] for c in model["content"]["cells"]] == ["# The kit's notebook"]

    async def test_notebook_as_type_file_is_its_json_text(self, cm: ContentsManager) -> None:
        model = await cm.get("kit/notebook.ipynb", type="file")
        assert (model["type"], model["format"]) == ("file", "text")
        source = json.loads(model["content"])["cells"][0]["source"]  # a string, or nbformat's list of lines
        assert "".join(source) == "# The kit's notebook"

    async def test_content_false_leaves_content_and_format_out(self, cm: ContentsManager) -> None:
        for path in ("kit/hello.txt", "kit/notebook.ipynb", "kit"):
            model = await cm.get(path, content=False)
            assert model["content"] is None and model["format"] is None, path
            assert MODEL_KEYS <= set(model), path

    async def test_hash_only_when_asked(self, cm: ContentsManager) -> None:
        plain = await cm.get("kit/hello.txt")
        assert plain["hash"] is None and plain["hash_algorithm"] is None
        hashed = await cm.get("kit/hello.txt", hash=True)
        assert isinstance(hashed["hash"], str) and hashed["hash"]
        assert isinstance(hashed["hash_algorithm"], str) and hashed["hash_algorithm"]
        again = await cm.get("kit/hello.txt", hash=True, content=False)
        assert again["hash"] == hashed["hash"] and again["content"] is None
        other = await cm.get("kit/sub/inner.txt", hash=True)
        assert other["hash"] != hashed["hash"]

    async def test_unknown_path_is_a_404(self, cm: ContentsManager) -> None:
        await raises_api_error(cm.get("kit/nope.txt"), 404)
        await raises_api_error(cm.get("nowhere/at/all.ipynb"), 404)
        assert await cm.exists("kit/nope.txt") is False

    async def test_wrong_type_is_a_400(self, cm: ContentsManager) -> None:
        await raises_api_error(cm.get("kit/hello.txt", type="directory"), 400)
        await raises_api_error(cm.get("kit", type="file"), 400)
        await raises_api_error(cm.get("kit", type="notebook"), 400)

    async def test_exists(self, cm: ContentsManager) -> None:
        for path in ("", "kit", "kit/hello.txt", "kit/notebook.ipynb", "kit/sub/inner.txt"):
            assert await cm.exists(path) is True, path

    async def test_kernel_path_is_the_document_s_directory(self, cm: ContentsManager) -> None:
        assert await cm.kernel_path("kit/notebook.ipynb") == "kit"
        assert await cm.kernel_path("kit/sub/inner.txt") == "kit/sub"
        assert await cm.kernel_path("kit/sub") == "kit/sub"

    async def test_writable_says_whether_writes_are_accepted(self, cm: ContentsManager) -> None:
        for path in ("kit/hello.txt", "kit/notebook.ipynb"):
            assert (await cm.get(path, content=False))["writable"] is (not self.read_only), path

    async def test_read_only_provider_refuses_writes_with_an_api_error(self, cm: ContentsManager) -> None:
        if not self.read_only:
            pytest.skip("the provider is writable")
        before = await cm.get("kit/hello.txt")
        for call in (cm.save("kit/hello.txt", model_for("changed")), cm.save("kit/new.txt", model_for("new")),
                     cm.new_untitled("kit", type="file"), cm.copy("kit/hello.txt", "kit"),
                     cm.rename("kit/hello.txt", "kit/renamed.txt"), cm.delete("kit/hello.txt"),
                     cm.create_checkpoint("kit/hello.txt")):
            error = await raises_api_error(call, 403, 405)
            assert error.message
        assert (await cm.get("kit/hello.txt"))["content"] == before["content"]
        assert await cm.exists("kit/new.txt") is False

    # -- writing -----------------------------------------------------------------------------------

    async def test_save_text_answers_the_model_without_content(self, cm: ContentsManager) -> None:
        self.needs_writes()
        saved = await cm.save("kit/new.txt", model_for("new text"))
        assert (saved["path"], saved["name"], saved["type"]) == ("kit/new.txt", "new.txt", "file")
        assert saved["content"] is None
        assert saved["writable"] is True
        assert (await cm.get("kit/new.txt"))["content"] == "new text"

    async def test_save_replaces_a_file(self, cm: ContentsManager) -> None:
        self.needs_writes()
        await cm.save("kit/hello.txt", model_for("replaced"))
        assert (await cm.get("kit/hello.txt"))["content"] == "replaced"

    async def test_save_base64_and_notebook_round_trip(self, cm: ContentsManager) -> None:
        self.needs_writes()
        await cm.save("kit/copy.bin", model_for(b"\xff\x00"))
        assert base64.b64decode((await cm.get("kit/copy.bin"))["content"]) == b"\xff\x00"
        nb = {**copy.deepcopy(NOTEBOOK), "cells": [{**NOTEBOOK["cells"][0], "source": "changed"}]}
        saved = await cm.save("kit/notebook.ipynb", model_for(nb))
        assert saved["type"] == "notebook"
        assert (await cm.get("kit/notebook.ipynb"))["content"]["cells"][0]["source"] == "changed"

    async def test_save_a_directory(self, cm: ContentsManager) -> None:
        self.needs_writes()
        saved = await cm.save("kit/newdir", {"type": "directory"})
        assert saved["type"] == "directory"
        assert (await cm.get("kit/newdir"))["content"] == []

    async def test_save_changes_the_hash(self, cm: ContentsManager) -> None:
        self.needs_writes()
        before = (await cm.get("kit/hello.txt", hash=True))["hash"]
        await cm.save("kit/hello.txt", model_for("different"))
        assert (await cm.get("kit/hello.txt", hash=True))["hash"] != before

    async def test_save_chunks_are_appended_until_the_last(self, cm: ContentsManager) -> None:
        self.needs_writes()
        for n, part in ((1, "one "), (2, "two "), (-1, "three")):
            await cm.save("kit/chunked.txt", {**model_for(part), "chunk": n})
        assert (await cm.get("kit/chunked.txt"))["content"] == "one two three"

    async def test_bad_models_are_a_400(self, cm: ContentsManager) -> None:
        self.needs_writes()
        await raises_api_error(cm.save("kit/x.txt", {"content": "no type"}), 400)
        await raises_api_error(cm.save("kit/x.bin", {"type": "file", "format": "base64", "content": "@@@"}), 400)
        await raises_api_error(cm.save("kit/x.ipynb", {"type": "notebook", "format": "json", "content": 5}), 400)
        assert await cm.exists("kit/x.txt") is False

    async def test_save_into_a_missing_directory_is_refused(self, cm: ContentsManager) -> None:
        self.needs_writes()
        await raises_api_error(cm.save("kit/no/such/dir.txt", model_for("x")), 400, 404)

    async def test_new_untitled_names(self, cm: ContentsManager) -> None:
        self.needs_writes()
        first = await cm.new_untitled("kit/sub", type="notebook")
        second = await cm.new_untitled("kit/sub", type="notebook")
        assert (first["path"], second["path"]) == ("kit/sub/Untitled.ipynb", "kit/sub/Untitled1.ipynb")
        assert (await cm.get(first["path"]))["content"]["nbformat"] == 4
        folder = await cm.new_untitled("kit/sub", type="directory")
        assert (folder["name"], folder["type"]) == ("Untitled Folder", "directory")
        text = await cm.new_untitled("kit/sub", type="file", ext=".txt")
        assert (text["name"], text["type"]) == ("untitled.txt", "file")

    async def test_copy_adds_a_copy_suffix_where_the_name_is_taken(self, cm: ContentsManager) -> None:
        self.needs_writes()
        first = await cm.copy("kit/hello.txt", "kit")
        second = await cm.copy("kit/hello.txt", "kit")
        assert (first["path"], second["path"]) == ("kit/hello-Copy1.txt", "kit/hello-Copy2.txt")
        assert (await cm.get(first["path"]))["content"] == "hello, kit\n"
        elsewhere = await cm.copy("kit/hello.txt", "kit/sub")
        assert elsewhere["path"] in ("kit/sub/hello.txt", "kit/sub/hello-Copy1.txt")
        assert (await cm.get(elsewhere["path"]))["content"] == "hello, kit\n"
        nb = await cm.copy("kit/notebook.ipynb", "kit")
        assert (nb["path"], nb["type"]) == ("kit/notebook-Copy1.ipynb", "notebook")

    async def test_rename_moves_and_refuses_to_overwrite(self, cm: ContentsManager) -> None:
        self.needs_writes()
        renamed = await cm.rename("kit/hello.txt", "kit/sub/moved.txt")
        assert renamed["path"] == "kit/sub/moved.txt"
        assert await cm.exists("kit/hello.txt") is False
        assert (await cm.get("kit/sub/moved.txt"))["content"] == "hello, kit\n"
        await raises_api_error(cm.rename("kit/sub/moved.txt", "kit/sub/inner.txt"), 409)
        assert (await cm.get("kit/sub/inner.txt"))["content"] == "inner\n"
        await raises_api_error(cm.rename("kit/nope.txt", "kit/other.txt"), 404)

    async def test_rename_a_directory_moves_its_children(self, cm: ContentsManager) -> None:
        self.needs_writes()
        await cm.rename("kit/sub", "kit/moved")
        assert (await cm.get("kit/moved/inner.txt"))["content"] == "inner\n"
        assert await cm.exists("kit/sub/inner.txt") is False

    async def test_delete(self, cm: ContentsManager) -> None:
        self.needs_writes()
        await cm.delete("kit/hello.txt")
        assert await cm.exists("kit/hello.txt") is False
        await raises_api_error(cm.get("kit/hello.txt"), 404)
        await cm.save("kit/empty", {"type": "directory"})
        await cm.delete("kit/empty")
        assert await cm.exists("kit/empty") is False
        await raises_api_error(cm.delete("kit/hello.txt"), 404)

    # -- checkpoints -------------------------------------------------------------------------------

    async def test_checkpoint_create_list_restore_delete(self, cm: ContentsManager) -> None:
        self.needs_checkpoints()
        assert await cm.list_checkpoints("kit/hello.txt") == []
        checkpoint = await cm.create_checkpoint("kit/hello.txt")
        assert isinstance(checkpoint["id"], str) and isinstance(checkpoint["last_modified"], str)
        assert [c["id"] for c in await cm.list_checkpoints("kit/hello.txt")] == [checkpoint["id"]]
        await cm.save("kit/hello.txt", model_for("edited"))
        await cm.restore_checkpoint("kit/hello.txt", checkpoint["id"])
        assert (await cm.get("kit/hello.txt"))["content"] == "hello, kit\n"
        await cm.delete_checkpoint("kit/hello.txt", checkpoint["id"])
        assert await cm.list_checkpoints("kit/hello.txt") == []

    async def test_checkpoint_of_a_notebook_restores_the_notebook(self, cm: ContentsManager) -> None:
        self.needs_checkpoints()
        checkpoint = await cm.create_checkpoint("kit/notebook.ipynb")
        await cm.save("kit/notebook.ipynb", model_for({**NOTEBOOK, "cells": []}))
        await cm.restore_checkpoint("kit/notebook.ipynb", checkpoint["id"])
        model = await cm.get("kit/notebook.ipynb")
        assert (model["type"], len(model["content"]["cells"])) == ("notebook", 1)

    async def test_unknown_checkpoint_is_a_404(self, cm: ContentsManager) -> None:
        self.needs_checkpoints()
        await raises_api_error(cm.restore_checkpoint("kit/hello.txt", "no-such-checkpoint"), 404)
        await raises_api_error(cm.delete_checkpoint("kit/hello.txt", "no-such-checkpoint"), 404)
