"""The table: each figure's median per server, the ratio Himalia/jupyter_server, jupyverse and the ratio
Himalia/jupyverse, the direct-ZMQ limit, the target."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Results = dict[str, dict[str, list[dict[str, Any]]]]  # variant → figure → one dict per round

JS = "jupyter_server"
TUNED = "jupyter_server_tuned"
EXT = "jupyter_server_ext"
JV = "jupyverse"

# figures jupyverse cannot run, and why (the table shows "–" and this as a note)
JUPYVERSE_SKIPS = {
    "lab_page": "jupyverse[noauth] serves no JupyterLab (the bench runs it with --disable lab)",
    "lab_settings": "jupyverse[noauth] serves no JupyterLab (the bench runs it with --disable lab)",
    "lab_launch": "jupyverse[noauth] serves no JupyterLab (the bench runs it with --disable lab)",
}

# what a reader must know to compare jupyverse's column (from fps_kernels/fps_noauth 0.11/0.10's code)
JUPYVERSE_NOTES = [
    "jupyverse runs `jupyverse[noauth]`: no token is checked on any request (Himalia and jupyter_server "
    "check one on every request and websocket), so its HTTP rows do a little less work per request.",
    "jupyverse has no `POST /api/kernels`: in execute, iopub, 8 kernels, fan-out and memory its kernels are "
    "started by `POST /api/sessions` (a session record more) and stopped by `DELETE /api/kernels/{id}`.",
    "jupyverse accepts both kernel websocket protocols (v1 and legacy JSON), so its websocket rows use the "
    "same protocol as the other servers (the \"ws protocol\" column).",
    "jupyverse has no iopub rate limit and no Nagle problem of tornado's: on the ↳ rows that vary only "
    "jupyter_server's settings its figure is the same measurement, shown as ″.",
    "jupyverse's notebook rows are not the same work: its PUT writes the body's JSON without validation, "
    "temp file or fsync, and its GET answers the notebook as a JSON string (`format` null, "
    "unvalidated) where the others validate it and answer an object.",
    "jupyverse stops a kernel by SIGTERM to its process (fps_kernel_subprocess), without interrupt or "
    "`shutdown_request`; Himalia and jupyter_server ask the kernel to shut down first.",
]


@dataclass(frozen=True)
class Row:
    figure: str  # the --only name that produces it
    label: str
    source: str  # figure key in the results (kernels8 also feeds the memory row)
    metric: str
    js: str  # which jupyter_server variant the ratio is taken against
    fmt: str
    ws: bool = False  # goes through a kernel websocket
    target: str = ""
    check: Callable[[float | None, float | None, dict[str, Any]], bool] | None = None
    direct: bool = False


def _le(limit: float) -> Callable[[float | None, float | None, dict[str, Any]], bool]:
    return lambda r, _d, _x: r is not None and r <= limit


def _ge(limit: float) -> Callable[[float | None, float | None, dict[str, Any]], bool]:
    return lambda r, _d, _x: r is not None and r >= limit


def _direct_le(limit: float) -> Callable[[float | None, float | None, dict[str, Any]], bool]:
    return lambda _r, d, _x: d is not None and d <= limit


def _iopub(r: float | None, _d: float | None, x: dict[str, Any]) -> bool:
    return r is not None and r >= 1.2 and x.get("all_lines") is True and x.get("idle") is True


ROWS = [
    Row("start", "cold start: spawn → first 200 on /api/status (s)", "start", "cold_s", JS, ".2f",
        target="≤ 0.25×", check=_le(0.25)),
    Row("start", "  same, js with this environment's extensions (jupyterlab, ...)", "start", "cold_s", EXT,
        ".2f"),
    Row("memory", "server RSS idle after start (MB)", "start", "rss_idle_mb", JS, ".0f",
        target="≤ 0.6×", check=_le(0.6)),
    Row("memory", "  same, js with this environment's extensions", "start", "rss_idle_mb", EXT, ".0f"),
    Row("memory", "server RSS with 8 kernels running (MB)", "kernels8", "rss_mb", JS, ".0f",
        target="≤ 0.6×", check=_le(0.6)),
    Row("status", "GET /api/status, requests/s, 16 connections", "status", "rps", JS, ".0f",
        target="≥ 3×", check=_ge(3)),
    Row("kernelspecs", "GET /api/kernelspecs, requests/s, 16 connections", "kernelspecs", "rps", JS, ".0f",
        target="≥ 3×", check=_ge(3)),
    Row("contents", "GET /api/contents of a 1 000-file dir, requests/s, 4 connections", "contents", "rps", JS,
        ".1f", target="≥ 10×", check=_ge(10)),
    Row("notebook", "save a 5 MB notebook (PUT, ms)", "notebook", "save_ms", JS, ".0f",
        target="≤ 0.5×", check=_le(0.5)),
    Row("notebook", "load a 5 MB notebook (GET, ms)", "notebook", "load_ms", JS, ".0f",
        target="≤ 0.5×", check=_le(0.5)),
    Row("session", "session create → kernel_info reply → delete (s)", "session", "s", JS, ".2f", ws=True,
        target="≤ 0.8×", check=_le(0.8), direct=True),
    Row("session", "  same, js with TCP_NODELAY + limits off", "session", "s", TUNED, ".2f", ws=True,
        direct=True),
    Row("execute", "execute `pass` round trip p50 (ms)", "execute", "p50_ms", JS, ".2f", ws=True,
        target="≤ 1.05× direct", check=_direct_le(1.05), direct=True),
    Row("execute", "  same, js with TCP_NODELAY forced", "execute", "p50_ms", TUNED, ".2f", ws=True, direct=True),
    Row("execute", "execute `pass` round trip p99 (ms)", "execute", "p99_ms", JS, ".2f", ws=True,
        target="≤ 1.3× direct", check=_direct_le(1.3), direct=True),
    Row("execute", "  same, js with TCP_NODELAY forced", "execute", "p99_ms", TUNED, ".2f", ws=True, direct=True),
    Row("iopub", "iopub: kernel prints 20 000 flushed lines, stdout messages/s (js default rate limits)", "iopub",
        "msgs_per_s", JS, ".0f", ws=True, direct=True),
    Row("iopub", "  same, js with rate limits off (+ TCP_NODELAY)", "iopub", "msgs_per_s", TUNED, ".0f",
        ws=True, target="≥ 1.2×, all lines, final idle", check=_iopub, direct=True),
    Row("iopub", "  lines delivered (js default rate limits)", "iopub", "lines", JS, ".0f", ws=True, direct=True),
    Row("iopub", "  lines delivered (js rate limits off)", "iopub", "lines", TUNED, ".0f", ws=True, direct=True),
    Row("iopub", "  server CPU per 1 000 messages (ms; js rate limits off)", "iopub", "server_cpu_ms_per_1k",
        TUNED, ".0f", ws=True),
    Row("iopub", "  client CPU per 1 000 messages (ms; js rate limits off)", "iopub", "client_cpu_ms_per_1k",
        TUNED, ".0f", ws=True, target="≤ 1×", check=_le(1.0), direct=True),
    Row("iopub", "  kernel CPU per 1 000 messages (ms; js rate limits off)", "iopub", "kernel_cpu_ms_per_1k",
        TUNED, ".0f", ws=True, direct=True),
    Row("kernels8", "8 kernels started at once until all answer kernel_info (s)", "kernels8", "s", JS, ".2f",
        ws=True, target="≤ 0.8×", check=_le(0.8), direct=True),
    Row("lab_page", "GET /lab (JupyterLab's page), requests/s, 16 connections; js = jupyter lab", "lab_page", "rps",
        EXT, ".0f", target="≥ 3×", check=_ge(3)),
    Row("lab_settings", "GET /lab/api/settings (every schema), requests/s, 4 connections; js = jupyter lab",
        "lab_settings", "rps", EXT, ".1f", target="≥ 3×", check=_ge(3)),
    Row("lab_launch", "spawn → JupyterLab launcher visible in headless Chromium (s); js = jupyter lab",
        "lab_launch", "launcher_s", EXT, ".2f", target="≤ 0.6×", check=_le(0.6)),
    Row("fanout", "100 websockets on one kernel, 1 000 lines: stdout messages/s delivered (js as shipped)", "fanout",
        "msgs_per_s", JS, ".0f", ws=True),
    Row("fanout", "  same, js with TCP_NODELAY + rate limits off", "fanout", "msgs_per_s", TUNED, ".0f", ws=True,
        target="≥ 2×", check=_ge(2)),
    Row("fanout", "  share of lines delivered (js as shipped)", "fanout", "share", JS, ".2f", ws=True),
    Row("fanout", "  share of lines delivered (js tuned)", "fanout", "share", TUNED, ".2f", ws=True),
    Row("fanout", "  server CPU per 1 000 messages delivered (ms; js tuned)", "fanout", "server_cpu_ms_per_1k",
        TUNED, ".1f", ws=True),
    Row("fanout", "  client CPU per 1 000 messages delivered (ms; js tuned)", "fanout", "client_cpu_ms_per_1k",
        TUNED, ".1f", ws=True),
]


def median_of(results: Results, variant: str, figure: str, metric: str) -> float | None:
    values = [r[metric] for r in results.get(variant, {}).get(figure, [])
              if "error" not in r and r.get(metric) is not None]
    return statistics.median(values) if values else None


def paired_ratio(results: Results, variant: str, js_variant: str, figure: str, metric: str) -> float | None:
    """Median over rounds of this round's Himalia value / this round's js value: A B A B pairs cancel drift."""
    a = results.get(variant, {}).get(figure, [])
    b = results.get(js_variant, {}).get(figure, [])
    ratios = [x[metric] / y[metric] for x, y in zip(a, b)
              if "error" not in x and "error" not in y and x.get(metric) is not None and y.get(metric)]
    return statistics.median(ratios) if ratios else None


def errors_of(results: Results, variant: str, figure: str) -> list[str]:
    return [r["error"] for r in results.get(variant, {}).get(figure, []) if "error" in r]


def build_rows(results: Results, selected: set[str], himalia_variants: list[str], protocol: str
               ) -> list[dict[str, Any]]:
    rows = []
    jv_seen: set[tuple[str, str]] = set()  # jupyverse's figure shows once per metric, ″ on the ↳ rows
    for row in ROWS:
        if row.figure not in selected:
            continue
        values = {v: median_of(results, v, row.source, row.metric) for v in himalia_variants}
        h = values.get("himalia")
        js = median_of(results, row.js, row.source, row.metric)
        direct = median_of(results, "direct", row.source, row.metric) if row.direct else None
        ratio = h / js if h is not None and js else None
        ratio_direct = h / direct if h is not None and direct else None
        extra: dict[str, Any] = {}
        if row.source == "iopub":
            runs = [r for r in results.get("himalia", {}).get("iopub", []) if "error" not in r]
            extra = {"all_lines": bool(runs) and all(r["lines"] == r["lines_sent"] for r in runs),
                     "idle": bool(runs) and all(r["idle"] for r in runs)}
        verdict = ""
        if row.check is not None:
            needed = ratio_direct if row.target.endswith("direct") else ratio
            verdict = "n/a" if needed is None else "met" if row.check(ratio, ratio_direct, extra) else "MISSED"
        errs = {v: errors_of(results, v, row.source) for v in [*himalia_variants, row.js, "direct"]}
        ratios = {v: (x / js if x is not None and js else None) for v, x in values.items()}
        paired = paired_ratio(results, "himalia", row.js, row.source, row.metric)
        jv = median_of(results, JV, row.source, row.metric)
        jv_key = (row.source, row.metric)
        jv_repeat = jv_key in jv_seen
        jv_seen.add(jv_key)
        jv_errors = errors_of(results, JV, row.source)
        if row.figure in JUPYVERSE_SKIPS and JV in results:
            jv_errors = [JUPYVERSE_SKIPS[row.figure]]
        if jv_errors:
            errs[JV] = jv_errors
        rows.append({
            "jupyverse": jv, "jupyverse_repeat": jv_repeat,
            "ratio_jupyverse": h / jv if h is not None and jv else None,
            "paired_ratio_jupyverse": paired_ratio(results, "himalia", JV, row.source, row.metric),
            "jupyverse_over_js": jv / js if jv is not None and js else None,
            "ratios": ratios,
            "figure": row.figure, "label": row.label, "metric": f"{row.source}.{row.metric}", "js_variant": row.js,
            "protocol": (("v1" if protocol.startswith("v1") else "legacy JSON") if row.ws else "HTTP"),
            "values": values, "jupyter_server": js, "ratio": ratio, "paired_ratio": paired, "direct": direct,
            "ratio_direct": ratio_direct, "target": row.target, "verdict": verdict, "fmt": row.fmt,
            "errors": {v: e for v, e in errs.items() if e},
        })
    return rows


def _f(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _x(value: float | None) -> str:
    return _f(value, ".2f") + ("×" if value else "")


def markdown(rows: list[dict[str, Any]], himalia_variants: list[str], with_jupyverse: bool = False) -> str:
    names = {"himalia": "Himalia", "himalia_uvloop": "Himalia uvloop", "himalia_unbatched": "Himalia unbatched"}
    extra = [v for v in himalia_variants if v != "himalia"]
    head = ["figure", "ws protocol", *(names[v] for v in himalia_variants), "jupyter_server", "Himalia/js",
            *(f"{names[v]}/js" for v in extra), "paired H/js",
            *(["jupyverse", "Himalia/jupyverse"] if with_jupyverse else []),
            "direct ZMQ", "Himalia/direct", "target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"].strip() if not r["label"].startswith("  ") else "↳ " + r["label"].strip(),
                 r["protocol"], *(_f(r["values"].get(v), r["fmt"]) for v in himalia_variants),
                 _f(r["jupyter_server"], r["fmt"]), _f(r["ratio"], ".2f") + ("×" if r["ratio"] else ""),
                 *(_f(r["ratios"][v], ".2f") + ("×" if r["ratios"][v] else "") for v in extra),
                 _f(r["paired_ratio"], ".2f") + ("×" if r["paired_ratio"] else ""),
                 *(_jupyverse_cells(r) if with_jupyverse else []),
                 _f(r["direct"], r["fmt"]), _f(r["ratio_direct"], ".2f") + ("×" if r["ratio_direct"] else ""),
                 r["target"], r["verdict"]]
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    for r in rows:
        for variant, errs in r["errors"].items():
            note = f"- {r['metric']} on {variant}: {errs[0]}"
            if note not in notes:
                notes.append(note)
    if notes:
        lines += ["", "Errors (the figure is missing for that server):", *notes]
    if with_jupyverse:
        lines += ["", "jupyverse:", *(f"- {n}" for n in JUPYVERSE_NOTES)]
    return "\n".join(lines)


def _jupyverse_cells(r: dict[str, Any]) -> list[str]:
    if r["jupyverse_repeat"] and r["jupyverse"] is not None:
        return ["″", "″"]
    return [_f(r["jupyverse"], r["fmt"]), _x(r["ratio_jupyverse"])]
