"""Which nbconvert export formats work on this machine.

nbconvert lists every installed exporter, including those whose tools are missing (pandoc for LaTeX,
PDF and reST; xelatex; Playwright; Qt). Each is tried once on a small notebook (a markdown cell and a
code cell with output), in a worker thread, the first time the formats are needed; the ones that fail
are left out of `GET /api/nbconvert` and answer 404 saying why, instead of a 500 on every export.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("himalia.nbconvert")


@dataclass
class Formats:
    """name → output mimetype of the formats that work; name → why, for those that do not."""

    available: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


def probe_notebook() -> Any:
    import nbformat

    v4 = nbformat.v4
    return v4.new_notebook(
        cells=[v4.new_markdown_cell("# Probe\n\n*text*"),
               v4.new_code_cell("print(1)", execution_count=1,
                                outputs=[v4.new_output("stream", name="stdout", text="1\n")])],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                  "language_info": {"name": "python", "mimetype": "text/x-python", "file_extension": ".py"}})


class FormatFinder:
    """Finds the working formats once (thread-safe; the first caller probes, the others wait)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._formats: Formats | None = None

    def get(self) -> Formats:
        with self._lock:
            if self._formats is None:
                self._formats = self._probe()
            return self._formats

    @staticmethod
    def _probe() -> Formats:
        formats = Formats()
        try:
            from nbconvert.exporters.base import get_export_names, get_exporter
        except ImportError as e:
            log.warning("notebook export is unavailable: %s (pip install 'himalia[nbconvert]')", e)
            return formats
        nb = probe_notebook()
        for name in get_export_names():
            try:
                exporter_class = get_exporter(name)
                exporter_class().from_notebook_node(nb, resources={"metadata": {"name": "probe"}})
            except Exception as e:  # any failure on a plain notebook means the format cannot work here
                formats.unavailable[name] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                log.info("nbconvert format %s is unavailable: %s", name, formats.unavailable[name])
                continue
            formats.available[name] = exporter_class.output_mimetype
        return formats
