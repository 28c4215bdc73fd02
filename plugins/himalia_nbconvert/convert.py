"""One export, run in a worker thread: notebook JSON in, the response's bytes, type and file name out.

As jupyter_server does: the exporter's output is served as is, unless the exporter extracted files
(`resources["outputs"]`, e.g. images of a markdown or LaTeX export): then the output and those files
are zipped together and served as `<name>.zip`.
"""

from __future__ import annotations

import io
import os
import sys
import zipfile
from dataclasses import dataclass
from datetime import datetime
from typing import Any

DATE_FORMAT = "%B %d, %Y" if sys.platform == "win32" else "%B %-d, %Y"


class BadNotebook(ValueError):
    """The notebook given to convert is not a valid notebook (the message says why)."""


class ConversionFailed(RuntimeError):
    """The exporter failed on this notebook."""


@dataclass(frozen=True)
class Export:
    body: bytes
    content_type: str
    filename: str
    zipped: bool


def export(format: str, content: Any, name: str, *, last_modified: datetime | None = None,
           sanitize_html: bool | None = None, validate: bool = False) -> Export:
    import nbformat
    from jupyter_core.paths import jupyter_config_dir
    from nbconvert.exporters.base import get_exporter

    if not isinstance(content, dict):
        raise BadNotebook(f"the notebook must be a JSON object, got {type(content).__name__}")
    try:
        nb = nbformat.from_dict(content)
        if validate:
            nbformat.validate(nb)
    except nbformat.ValidationError as e:
        raise BadNotebook(f"not a valid notebook: {str(e).splitlines()[0]}") from None
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
        raise BadNotebook(f"not a valid notebook: {type(e).__name__}: {e}") from None

    exporter = get_exporter(format)()
    if sanitize_html is not None and hasattr(exporter, "sanitize_html"):
        exporter.sanitize_html = sanitize_html
    stem = os.path.splitext(name)[0] or "notebook"
    metadata: dict[str, Any] = {"name": stem}
    if last_modified is not None:
        metadata["modified_date"] = last_modified.strftime(DATE_FORMAT)
    try:
        output, resources = exporter.from_notebook_node(
            nb, resources={"metadata": metadata, "config_dir": jupyter_config_dir()})
    except Exception as e:
        raise ConversionFailed(f"{type(e).__name__}: {e}") from e

    filename = stem + resources.get("output_extension", "")
    body = output if isinstance(output, bytes) else output.encode("utf-8", "surrogateescape")
    extracted = resources.get("outputs") or {}
    if extracted:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, mode="w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(filename, body)
            for path, data in extracted.items():
                z.writestr(os.path.basename(path), data)
        return Export(buffer.getvalue(), "application/zip", stem + ".zip", zipped=True)
    mimetype = exporter.output_mimetype or "text/plain"
    content_type = mimetype if isinstance(output, bytes) else f"{mimetype}; charset=utf-8"
    return Export(body, content_type, filename, zipped=False)
