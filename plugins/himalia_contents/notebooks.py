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
import threading
import warnings
from typing import Any

from himalia import BadRequest

log = logging.getLogger("himalia.contents")



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

    def read(self, raw: bytes, api_path: str) -> tuple[Any, str | None]:
        """The notebook (a dict) and a validation message when it does not match the schema."""
        import nbformat
        from nbformat.v4.rwbase import rejoin_lines

        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as e:
            raise BadRequest(f"Unreadable Notebook: {api_path} {e}", "unreadable notebook") from None
        if not isinstance(data, dict):
            raise BadRequest(f"Unreadable Notebook: {api_path} is JSON but not a notebook (a JSON object)",
                             "unreadable notebook")
        if data.get("nbformat") == 4:
            nb = nbformat.from_dict(data)
            rejoin_lines(nb)
        else:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
            except Exception as e:
                raise BadRequest(f"Unreadable Notebook: {api_path} {type(e).__name__}: {e}",
                                 "unreadable notebook") from None
        message = self.validate(nb)
        if self.trust:
            try:
                notary = self.notary()
                notary.mark_cells(nb, notary.check_signature(nb))
            except Exception:  # a malformed notebook cannot be trusted, but can still be shown
                log.warning("could not check the signature of %s", api_path, exc_info=True)
        return nb, message

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

    def dumps(self, content: Any, api_path: str) -> tuple[bytes, str | None]:
        """The bytes to store for notebook `content`, and its validation message.

        Mutates `content` (the request's own model). Raises BadRequest when it is not a notebook at all.
        """
        import nbformat
        from nbformat.v4.rwbase import split_lines, strip_transient

        if not isinstance(content, dict):
            raise BadRequest(f"cannot save {api_path!r}: notebook content must be a JSON object, got "
                             f"{type(content).__name__}", "bad model")
        major = content.get("nbformat")
        if major != 4 or not isinstance(content.get("cells"), list) or not isinstance(content.get("metadata"), dict):
            raise BadRequest(f"cannot save {api_path!r}: notebook content needs 'nbformat': 4, a 'cells' "
                             f"list and a 'metadata' object", "bad model")
        nb = nbformat.from_dict(content)
        if self.trust:
            try:
                notary = self.notary()
                if notary.check_cells(nb):
                    notary.sign(nb)
            except Exception:
                log.warning("could not sign %s", api_path, exc_info=True)
        message = self.validate(nb)
        try:
            strip_transient(nb)
            split_lines(nb)
            text = json.dumps(nb, sort_keys=True, indent=1, separators=(",", ": "), ensure_ascii=False)
        except (AttributeError, TypeError, ValueError) as e:
            raise BadRequest(f"cannot save {api_path!r}: malformed notebook: {type(e).__name__}: {e}",
                             "bad model") from None
        if not text.endswith("\n"):
            text += "\n"
        return text.encode("utf-8", "surrogatepass"), message
