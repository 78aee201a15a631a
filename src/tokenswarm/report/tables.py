"""Tables of per-level results: the columns engineers publish, as Markdown or aligned text."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

#: (levels.csv column, heading, format) in the order of the published tables
PUBLISHED: tuple[tuple[str, str, str], ...] = (
    ("level", "Concurrency", "{:g}"),
    ("ttft_mean", "Mean TTFT (ms)", "{:.1f}"),
    ("input_throughput", "Input Throughput (tok/s)", "{:.1f}"),
    ("output_throughput", "Output Throughput (tok/s)", "{:.1f}"),
    ("tpot_mean", "Mean TPOT (ms)", "{:.2f}"),
    ("mean_input_len", "Mean Input Len", "{:.1f}"),
    ("mean_output_len", "Mean Output Len", "{:.1f}"),
    ("ttft_p99", "P99 TTFT (ms)", "{:.1f}"),
    ("tpot_p99", "P99 TPOT (ms)", "{:.2f}"),
    ("request_throughput", "Req/s", "{:.2f}"),
    ("completed", "OK", "{:d}"),
    ("failed", "Failed", "{:d}"),
)


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    try:
        if fmt == "{:d}":
            return str(int(value))
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def rows(levels: pd.DataFrame, columns=PUBLISHED) -> tuple[list[str], list[list[str]]]:
    cols = [c for c in columns if c[0] in levels.columns]
    heads = [h for _, h, _ in cols]
    body = [[_cell(rec[c], f) for c, _, f in cols] for rec in levels.to_dict("records")]
    return heads, body


def markdown(levels: pd.DataFrame, columns=PUBLISHED) -> str:
    heads, body = rows(levels, columns)
    out = ["| " + " | ".join(heads) + " |", "|" + "|".join("---:" for _ in heads) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(out)


def text(levels: pd.DataFrame, columns=PUBLISHED) -> str:
    heads, body = rows(levels, columns)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(heads)]
    line = "  ".join(h.rjust(w) for h, w in zip(heads, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in body]
    return "\n".join(out)
