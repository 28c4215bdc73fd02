"""Notebook bytes ⇄ notebook content, with nbformat's own rules but none of its repeated work.

For nbformat 4 files this parses the JSON once, rejoins lines and validates once (nbformat.reads
validates, converts and copies); older formats go through `nbformat.reads` for the upgrade. Writing
validates once, then strips transient fields and splits lines in place (nbformat.writes deep-copies
first), producing the bytes nbformat.write would. nbformat is imported lazily: it costs ~1 s.
Trust (nbformat's notary, shared with jupyter_server) is checked on read and signed on save.
"""

from __future__ import annotations

import json
import logging
from json.encoder import encode_basestring as _encode_string
import threading
import warnings
from dataclasses import dataclass
from typing import Any

from himalia import BadRequest

log = logging.getLogger("himalia.contents")



def too_deep(api_path: str) -> BadRequest:
    return BadRequest(f"Unreadable Notebook: {api_path} is nested too deeply to be read", "unreadable notebook")


class Notebooks:
    """Reads and writes notebook content; blocking, so called from the service's worker thread."""

    def __init__(self, trust: bool):
        self.trust = trust
        self._local = threading.local()

    def notary(self) -> Any:
        """This thread's notary: its sqlite connection may only be used by the thread that opened it."""
        notary = getattr(self._local, "notary", None)
        if notary is None:
            from nbformat.sign import NotebookNotary

            notary = self._local.notary = NotebookNotary()
        return notary

    def read(self, raw: bytes, api_path: str, known: Known | None = None) -> tuple[Any, str | None]:
        """The notebook (a dict) and a validation message when it does not match the schema.

        `known` is what a save of exactly these bytes found (validation message, signed): when given,
        the schema check is skipped, and the signature check too if the save signed the notebook.
        """
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as e:
            raise BadRequest(f"Unreadable Notebook: {api_path} {e}", "unreadable notebook") from None
        except RecursionError:  # `[[[[...` deeper than the parser goes: jupyter_server answers 400 too
            raise too_deep(api_path) from None
        if not isinstance(data, dict):
            raise BadRequest(f"Unreadable Notebook: {api_path} is JSON but not a notebook (a JSON object)",
                             "unreadable notebook")
        if data.get("nbformat") == 4 and isinstance(data.get("cells"), list):
            nb = data
            rejoin_lines(nb)
        else:
            import nbformat

            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
            except RecursionError:
                raise too_deep(api_path) from None
            except Exception as e:
                raise BadRequest(f"Unreadable Notebook: {api_path} {type(e).__name__}: {e}",
                                 "unreadable notebook") from None
        message = known.message if known is not None else self.validate(nb)
        if self.trust:
            try:
                notary = self.notary()
                node = _shallow_node(nb)
                trusted = True if known is not None and known.signed else notary.check_signature(node)
                notary.mark_cells(node, trusted)
            except Exception:  # a malformed notebook cannot be trusted, but can still be shown
                log.warning("could not check the signature of %s", api_path, exc_info=True)
        return nb, message

    def trust_content(self, nb: dict[str, Any]) -> None:
        """Sign `nb` as trusted, as a user choosing to trust it in JupyterLab does."""
        notary = self.notary()
        node = _shallow_node(nb)
        notary.mark_cells(node, True)
        if notary.check_cells(node):
            notary.sign(node)

    @staticmethod
    def validate(nb: Any) -> str | None:
        from nbformat import ValidationError, validate

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                validate(nb)
        except ValidationError as e:
            instance = json.dumps(e.instance, indent=1, default=lambda obj: "<UNKNOWN>")
            return f"Notebook validation failed: {e}:\n{instance}"
        except Exception as e:  # schema-breaking shapes nbformat cannot even walk
            return f"Notebook validation failed: {type(e).__name__}: {e}"
        return None

    def dumps(self, content: Any, api_path: str) -> tuple[bytes, Known]:
        """The bytes to store for notebook `content`, and what was found checking it.

        Mutates `content` (the request's own model). Raises BadRequest when it is not a notebook at all.
        """
        if not isinstance(content, dict):
            raise BadRequest(f"cannot save {api_path!r}: notebook content must be a JSON object, got "
                             f"{type(content).__name__}", "bad model")
        cells = content.get("cells")
        if content.get("nbformat") != 4 or not isinstance(cells, list) or not isinstance(content.get("metadata"), dict):
            raise BadRequest(f"cannot save {api_path!r}: notebook content needs 'nbformat': 4, a 'cells' "
                             f"list and a 'metadata' object", "bad model")
        for i, cell in enumerate(cells):
            if not isinstance(cell, dict) or not isinstance(cell.get("metadata", {}), dict):
                raise BadRequest(f"cannot save {api_path!r}: malformed notebook: cell {i} is not an object "
                                 "with a metadata object", "bad model")
        signed = False
        if self.trust:
            try:
                notary = self.notary()
                node = _shallow_node(content)
                if notary.check_cells(node):  # also drops the cells' "trusted" flags
                    notary.sign(node)
                    signed = True
            except Exception:
                log.warning("could not sign %s", api_path, exc_info=True)
        message = self.validate(content)
        strip_transient(content)
        split_lines(content)
        try:
            text = dumps_indented(content)
        except (TypeError, ValueError) as e:
            raise BadRequest(f"cannot save {api_path!r}: malformed notebook: {e}", "bad model") from None
        return (text + "\n").encode("utf-8", "surrogatepass"), Known(message, signed)


def dumps_indented(obj: Any) -> str:
    """`json.dumps(obj, sort_keys=True, indent=1, separators=(",", ": "), ensure_ascii=False)`, the
    layout nbformat writes, ~30% faster: the stdlib's indenting encoder is its slow pure-Python one."""
    out: list[str] = []
    _dump(obj, out, "\n")
    return "".join(out)


def _dump(obj: Any, out: list[str], newline: str) -> None:
    kind = type(obj)
    if kind is str:
        out.append(_encode_string(obj))
    elif kind is dict:
        if not obj:
            out.append("{}")
            return
        inner = newline + " "
        separator = "{" + inner
        for key in sorted(obj):
            if type(key) is not str:
                raise TypeError(f"notebook keys must be strings, got {key!r}")
            out.append(separator + _encode_string(key) + ": ")
            _dump(obj[key], out, inner)
            separator = "," + inner
        out.append(newline + "}")
    elif kind is list:
        if not obj:
            out.append("[]")
            return
        inner = newline + " "
        if all(type(value) is str for value in obj):  # lines of a source or an output: most of the bytes
            out.append("[" + inner + ("," + inner).join(map(_encode_string, obj)) + newline + "]")
            return
        separator = "[" + inner
        for value in obj:
            out.append(separator)
            _dump(value, out, inner)
            separator = "," + inner
        out.append(newline + "]")
    elif obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    else:  # numbers, and whatever else json itself accepts or refuses
        out.append(json.dumps(obj, ensure_ascii=False))


@dataclass(frozen=True)
class Known:
    """What checking a notebook's content found: its validation message (None: valid), and whether it was signed."""

    message: str | None
    signed: bool


def _shallow_node(nb: dict[str, Any]) -> Any:
    """nbformat's notary reads `nb.nbformat`; the rest it reads by key, so a top-level node is enough."""
    from nbformat import NotebookNode

    node = NotebookNode()
    dict.update(node, nb)
    return node


# nbformat 4's on-disk convention (nbformat.v4.rwbase), on plain dicts and in place, tolerant of
# malformed cells (the schema check reports those): multi-line strings are stored as lists of lines.

_SPLIT_MIMES = ("application/javascript", "image/svg+xml")


def _is_json_mime(mime: str) -> bool:
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


def _bundles(cell: dict[str, Any]):
    """The mime bundles of a cell (attachments, rich outputs) and its stream outputs."""
    attachments = cell.get("attachments")
    if isinstance(attachments, dict):
        for bundle in attachments.values():
            if isinstance(bundle, dict):
                yield bundle, None
    if cell.get("cell_type") == "code" and isinstance(cell.get("outputs"), list):
        for output in cell["outputs"]:
            if not isinstance(output, dict):
                continue
            kind = output.get("output_type")
            if kind in ("execute_result", "display_data"):
                if isinstance(output.get("data"), dict):
                    yield output["data"], None
            elif kind:
                yield None, output


def rejoin_lines(nb: dict[str, Any]) -> None:
    for cell in nb["cells"]:
        if not isinstance(cell, dict):
            continue
        if isinstance(cell.get("source"), list):
            cell["source"] = "".join(cell["source"])
        for bundle, output in _bundles(cell):
            if bundle is not None:
                for key, value in bundle.items():
                    if isinstance(value, list) and not _is_json_mime(key) and all(isinstance(v, str) for v in value):
                        bundle[key] = "".join(value)
            elif isinstance(output.get("text"), list):
                output["text"] = "".join(output["text"])


def split_lines(nb: dict[str, Any]) -> None:
    for cell in nb["cells"]:
        if isinstance(cell.get("source"), str):
            cell["source"] = cell["source"].splitlines(True)
        for bundle, output in _bundles(cell):
            if bundle is not None:
                for key, value in bundle.items():
                    if isinstance(value, str) and (key.startswith("text/") or key in _SPLIT_MIMES):
                        bundle[key] = value.splitlines(True)
            elif output.get("output_type") == "stream" and isinstance(output.get("text"), str):
                output["text"] = output["text"].splitlines(True)


def strip_transient(nb: dict[str, Any]) -> None:
    for key in ("orig_nbformat", "orig_nbformat_minor", "signature"):
        nb["metadata"].pop(key, None)
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("trusted", None)
