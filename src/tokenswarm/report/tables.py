"""Tables of per-level results as heads and cells, rendered as Markdown, aligned text or HTML.

A table is a tuple of columns ``(levels.csv column, heading, format)``:
:data:`PUBLISHED` is the table engineers publish (first column "Concurrency",
or "Rate (req/s)" for a rate sweep), :data:`DETAIL` the fuller per-level
percentiles. Missing values print as ``-``. A figure with a 95 % confidence
interval in levels.csv (:mod:`tokenswarm.report.intervals`) prints with its
half-width, the larger side of the interval: ``36.5 ±0.4``; a bound the data
cannot give prints as ``?`` (``812.0 ±?``: too few requests for that p99's
upper bound). A level flagged in levels.csv by one of :data:`MARKS` carries
that mark after its number (``16*``), and :func:`legend` explains the marks
present. The same heads and cells feed
report.md, report.html and the text the CLI prints, so they cannot disagree.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tokenswarm.report.intervals import ci_columns

Column = tuple[str, str, str]

LEVEL_HEADING = {"concurrency": "Concurrency", "rate": "Rate (req/s)"}

#: (levels.csv column, heading, format) in the order of the published tables
PUBLISHED: tuple[Column, ...] = (
    ("level", "Concurrency", "{:g}"),
    ("ttft_mean_ms", "Mean TTFT (ms)", "{:.1f}"),
    ("input_throughput_tok_s", "Input Throughput (tok/s)", "{:.1f}"),
    ("output_throughput_tok_s", "Output Throughput (tok/s)", "{:.1f}"),
    ("tpot_mean_ms", "Mean TPOT (ms)", "{:.2f}"),
    ("mean_input_tokens", "Mean Input Len", "{:.1f}"),
    ("mean_output_tokens", "Mean Output Len", "{:.1f}"),
    ("ttft_p99_ms", "P99 TTFT (ms)", "{:.1f}"),
    ("tpot_p99_ms", "P99 TPOT (ms)", "{:.2f}"),
    ("request_throughput_req_s", "Req/s", "{:.2f}"),
    ("completed", "OK", "{:d}"),
    ("failed", "Failed", "{:d}"),
    ("failed_pct", "Failed %", "{:.1f}"),
)

#: the published table of whole answers (embeddings, rerank, ``stream: false``): latency is E2E, the whole
#: answer's arrival; TTFT, TPOT and ITL are not figures of them (:data:`NOT_STREAMED_NOTE`)
WHOLE: tuple[Column, ...] = (
    ("level", "Concurrency", "{:g}"),
    ("e2e_mean_ms", "Mean Latency (ms)", "{:.1f}"),
    ("e2e_p50_ms", "P50 Latency (ms)", "{:.1f}"),
    ("e2e_p99_ms", "P99 Latency (ms)", "{:.1f}"),
    ("batch_size", "Batch", "{:g}"),
    ("inputs_throughput_s", "Inputs/s", "{:.1f}"),
    ("input_throughput_tok_s", "Input Throughput (tok/s)", "{:.1f}"),
    ("output_throughput_tok_s", "Output Throughput (tok/s)", "{:.1f}"),
    ("mean_input_tokens", "Mean Input Len", "{:.1f}"),
    ("request_throughput_req_s", "Req/s", "{:.2f}"),
    ("completed", "OK", "{:d}"),
    ("failed", "Failed", "{:d}"),
    ("failed_pct", "Failed %", "{:.1f}"),
)
NOT_STREAMED_NOTE = ("whole answers (not streamed: embeddings, rerank or stream: false): latency is E2E, when the "
                     "whole answer arrived; TTFT, TPOT and ITL are not figures of them")


def whole_answers(levels: pd.DataFrame) -> bool:
    """True for a run of whole (not streamed) answers: levels.csv has a ``batch_size`` (analysis.fold_batches),
    or latencies but no TTFT at all."""
    if "batch_size" in levels.columns:
        return True
    return (_present(levels, "e2e_mean_ms") and not _present(levels, "ttft_mean_ms")
            and "ttft_mean_ms" in levels.columns)


def published(levels: pd.DataFrame) -> tuple[Column, ...]:
    """The published table's columns for ``levels``: :data:`PUBLISHED`, or :data:`WHOLE` for whole answers
    (output throughput only when something was generated; batch and inputs/s only when levels.csv has them)."""
    if not whole_answers(levels):
        return PUBLISHED
    drop = set()
    out = levels["output_throughput_tok_s"] if "output_throughput_tok_s" in levels.columns else pd.Series([0.0])
    if not (out.fillna(0) > 0).any():
        drop.add("output_throughput_tok_s")
    if "batch_size" not in levels.columns:
        drop |= {"batch_size", "inputs_throughput_s"}
    return tuple(c for c in WHOLE if c[0] not in drop)


#: (levels.csv flag column, mark after the level's number, what it means) for the published tables
MARKS: tuple[tuple[str, str, str], ...] = (
    ("short_window", "*", "not steady: the window held fewer than 3 request lifetimes (mean E2E) or fewer than "
     "10 completed requests; lengthen the level (--min-lifetimes 3, --level-duration, or --level-requests per "
     "level)"),
    ("served_from_cache", "^", "the engine served these prompts from its prefix cache although the workload "
     "asked for unique prompts (a repeated --seed?): TTFT and input throughput read better than fresh prompts "
     "would"),
    ("timing_uncertain", "!", "the client's timings were not exact: its TTFT error bound p99 exceeded 5 ms, so "
     "the client's own delay is in them (report.md says by how much; raise its priority or add workers)"),
    ("load_short", "<", "the load fell short of what was asked (fewer in flight than the target by more than "
     "2 %, or sends behind the rate's schedule): the client set part of the pace (give it more CPU or add "
     "workers)"),
    ("lockstep", "~", "requests were sent in waves (lockstep): users that start together, or that a full server "
     "lets in together, stay together, so the level's figures depend on how the waves formed"),
    ("imprecise", "?", "the level reached its longest duration before its intervals were as narrow as "
     "--precision asked"),
)

#: the per-level detail in groups (title, columns after the level), each narrow enough to read at 1400 px
#: without scrolling sideways: latency (first token and whole request; between tokens), throughput and load,
#: the engine's own gauges and prefix cache, what the GPU spent (only with --gpu-metrics), the client's health
DETAIL_GROUPS: tuple[tuple[str, tuple[Column, ...]], ...] = (
    ("Latency: first token and whole request (ms)", (
        ("ttft_p50_ms", "TTFT p50", "{:.1f}"),
        ("ttft_p90_ms", "TTFT p90", "{:.1f}"),
        ("ttft_p99_ms", "TTFT p99", "{:.1f}"),
        ("e2e_p50_ms", "E2E p50", "{:.0f}"),
        ("e2e_p90_ms", "E2E p90", "{:.0f}"),
        ("e2e_p99_ms", "E2E p99", "{:.0f}"),
    )),
    ("Latency: between tokens (ms)", (
        ("tpot_p50_ms", "TPOT p50", "{:.2f}"),
        ("tpot_p90_ms", "TPOT p90", "{:.2f}"),
        ("tpot_p99_ms", "TPOT p99", "{:.2f}"),
        ("itl_p50_ms", "ITL p50", "{:.2f}"),
        ("itl_p90_ms", "ITL p90", "{:.2f}"),
        ("itl_p99_ms", "ITL p99", "{:.2f}"),
    )),
    ("Throughput and load", (
        ("achieved_concurrency", "Achieved conc.", "{:.1f}"),
        ("send_rate_req_s", "Sent req/s", "{:.2f}"),
        ("request_throughput_req_s", "Req/s", "{:.2f}"),
        ("output_throughput_tok_s", "Output tok/s", "{:.1f}"),
        ("goodput_req_s", "Goodput (req/s)", "{:.2f}"),
        ("slo_attainment_pct", "SLO attainment", "{:.1f}%"),
        ("meets_slo", "Meets SLO", "{}"),
    )),
    ("Engine", (
        ("server_running", "Running", "{:.1f}"),
        ("server_waiting", "Waiting", "{:.1f}"),
        ("server_kv_cache_usage_pct", "KV cache used", "{:.0f}%"),
        ("cache_hit_pct", "Prefix cache hit", "{:.0f}%"),
        ("ttft_p50_cache_hit_ms", "TTFT p50 hit (ms)", "{:.1f}"),
        ("ttft_p50_cache_miss_ms", "TTFT p50 miss (ms)", "{:.1f}"),
    )),
    ("GPU (DCGM, --gpu-metrics)", (
        ("gpu_count", "GPUs", "{:g}"),
        ("gpu_power_w", "Power (W)", "{:.0f}"),
        ("energy_per_output_token_j", "J / output token", "{:.3f}"),
        ("output_throughput_per_gpu_tok_s", "Output tok/s per GPU", "{:.1f}"),
        ("gpu_util_pct", "GPU util", "{:.0f}%"),
        ("gpu_memory_used_mib", "Memory used (MiB)", "{:.0f}"),
    )),
    ("Client: timing and load", (
        ("ttft_exact_1ms_pct", "TTFT exact ≤1 ms", "{:.1f}%"),
        ("ttft_error_bound_p99_ms", "TTFT error bound p99 (ms)", "{:.2f}"),
        ("ttft_bound_over_5ms", "TTFT bound >5 ms", "{:.0f}"),
        ("load_shortfall_pct", "Load short", "{:.1f}%"),
        ("send_lag_p50_ms", "Send lag p50 (ms)", "{:.1f}"),
        ("send_lag_p99_ms", "Send lag p99 (ms)", "{:.1f}"),
    )),
    ("Client: evidence", (
        ("client_cpu_max_pct", "CPU max %", "{:.0f}"),
        ("client_lag_p99_ms", "Loop lag p99 (ms)", "{:.1f}"),
        ("client_strained", "CPU/lag over limits", "{}"),
    )),
)
#: the prefix cache's columns: left out of the Engine group when no level had a hit
CACHE_COLUMNS = ("cache_hit_pct", "ttft_p50_cache_hit_ms", "ttft_p50_cache_miss_ms")

#: the fuller per-level table, every group's columns in one (text output; the report shows the groups)
DETAIL: tuple[Column, ...] = (("level", "Concurrency", "{:g}"),) + tuple(
    c for _title, cols in DETAIL_GROUPS for c in cols)


def cache_hits(levels: pd.DataFrame) -> bool:
    """Some level had prompt tokens served from the prefix cache (``cache_hit_pct`` above 0)."""
    return "cache_hit_pct" in levels.columns and bool((levels["cache_hit_pct"].astype(float).fillna(0) > 0).any())


def detail_groups(levels: pd.DataFrame, mode: str | None = None
                  ) -> list[tuple[str, tuple[list[str], list[list[str]]]]]:
    """The groups of :data:`DETAIL_GROUPS` that have something to say, each as (title, (heads, rows)): a
    group whose columns are all absent or empty is left out, and so are the prefix cache's columns when no
    level had a hit."""
    out = []
    hits = cache_hits(levels)
    for title, cols in DETAIL_GROUPS:
        keep = tuple(c for c in cols if _present(levels, c[0]) and (hits or c[0] not in CACHE_COLUMNS))
        if keep:
            out.append((title, rows(levels, (("level", "Concurrency", "{:g}"), *keep), mode)))
    return out


def mode_of(levels: pd.DataFrame) -> str:
    """``rate`` when the levels table says so, else ``concurrency``."""
    if "mode" in levels.columns and len(levels) and str(levels["mode"].iloc[0]) == "rate":
        return "rate"
    return "concurrency"


def cell(value: Any, fmt: str) -> str:
    """One formatted cell: ``-`` for a missing value, yes/no for booleans."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (bool, np.bool_)) or (fmt == "{}" and str(value) in ("True", "False")):
        return "yes" if str(value) == "True" else "no"
    try:
        if fmt == "{:d}":
            return str(int(value))
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def with_interval(rec: dict[str, Any], col: str, fmt: str) -> str:
    """The cell of ``col`` with its interval's half-width (the larger side) when levels.csv has one."""
    text = cell(rec.get(col), fmt)
    low_col, high_col = ci_columns(col)
    if text == "-" or low_col not in rec or high_col not in rec:
        return text
    value, low, high = float(rec[col]), _float(rec[low_col]), _float(rec[high_col])
    if math.isnan(low) and math.isnan(high):
        return text
    if math.isnan(low) or math.isnan(high):
        return f"{text} ±?"
    return f"{text} ±{cell(max(value - low, high - value), fmt)}"


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _present(levels: pd.DataFrame, col: str) -> bool:
    return col in levels.columns and not levels[col].isna().all()


def rows(levels: pd.DataFrame, columns: Sequence[Column] | None = None, mode: str | None = None,
         drop_empty: bool = False) -> tuple[list[str], list[list[str]]]:
    """(headings, formatted rows) for the columns the table has (None: :func:`published`'s), a row per level in
    ascending order (a capacity search's levels.csv is in probe order); the level heading follows ``mode``."""
    if "level" in levels.columns and pd.api.types.is_numeric_dtype(levels["level"]):
        levels = levels.sort_values("level", kind="stable")
    columns = published(levels) if columns is None else columns
    mode = mode or mode_of(levels)
    cols = [c for c in columns if c[0] in levels.columns and (not drop_empty or c[0] == "level" or
                                                              _present(levels, c[0]))]
    heads = [LEVEL_HEADING.get(mode, h) if c == "level" else h for c, h, _ in cols]
    recs = levels.to_dict("records")
    flags = [marks(rec) for rec in recs]
    width = max((len(m) for m in flags), default=0)  # unmarked levels padded, so the numbers stay aligned
    body = [[cell(rec[c], f) + m.ljust(width) if c == "level" else with_interval(rec, c, f) for c, _, f in cols]
            for rec, m in zip(recs, flags)]
    return heads, body


def _flagged(value: Any) -> bool:
    """A flag cell is set: True (also as read back from levels.csv)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return str(value) in ("True", "true", "1", "1.0")


def marks(rec: dict[str, Any]) -> str:
    """The marks of one levels.csv row (``*^``), in :data:`MARKS` order; '' when none applies."""
    return "".join(m for col, m, _ in MARKS if _flagged(rec.get(col)))


def legend(levels: pd.DataFrame) -> list[str]:
    """One line per mark present in the table: ``* not steady: ...``."""
    return [f"{m} {text}" for col, m, text in MARKS
            if col in levels.columns and any(_flagged(v) for v in levels[col].tolist())]


def notes(levels: pd.DataFrame) -> list[str]:
    """What the table's columns mean for this run's workload, beyond the marks (whole answers: no TTFT)."""
    return [NOT_STREAMED_NOTE] if whole_answers(levels) else []


def markdown_grid(heads: Sequence[str], body: Sequence[Sequence[str]], left: int = 0) -> str:
    """A Markdown table; the first ``left`` columns left-aligned, the rest right-aligned."""
    out = ["| " + " | ".join(heads) + " |",
           "|" + "|".join(":---" if i < left else "---:" for i in range(len(heads))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(out)


def html_grid(heads: Sequence[str], body: Sequence[Sequence[str]], left: int = 0, css_class: str = "") -> str:
    """An HTML ``<table>`` (cells escaped); the first ``left`` columns left-aligned."""
    cls = f' class="{html.escape(css_class)}"' if css_class else ""
    out = [f"<table{cls}>", "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in heads) + "</tr></thead>",
           "<tbody>"]
    for r in body:
        out.append("<tr>" + "".join(f'<td class="{"l" if i < left else "r"}">{_html_cell(c)}</td>'
                                    for i, c in enumerate(r)) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _html_cell(text: str) -> str:
    """A cell escaped; an interval's half-width (`` ±0.4``) set apart, so a narrow column breaks before it."""
    value, sep, ci = text.partition(" ±")
    if not sep:
        return html.escape(text)
    return f'{html.escape(value)} <span class="ci">±{html.escape(ci)}</span>'


def text_grid(heads: Sequence[str], body: Sequence[Sequence[str]], left: int = 0) -> str:
    """Aligned plain text with a dashed rule under the headings."""
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(heads)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(heads), "  ".join("-" * w for w in widths), *(line(r) for r in body)])


def markdown(levels: pd.DataFrame, columns: Sequence[Column] | None = None, mode: str | None = None,
             drop_empty: bool = False) -> str:
    return markdown_grid(*rows(levels, columns, mode, drop_empty))


def text(levels: pd.DataFrame, columns: Sequence[Column] | None = None, mode: str | None = None,
         drop_empty: bool = False) -> str:
    return text_grid(*rows(levels, columns, mode, drop_empty))


def html_table(levels: pd.DataFrame, columns: Sequence[Column] | None = None, mode: str | None = None,
               drop_empty: bool = False, css_class: str = "") -> str:
    return html_grid(*rows(levels, columns, mode, drop_empty), css_class=css_class)
