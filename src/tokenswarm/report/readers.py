"""Reading a run folder's stored files for the report: JSON objects, and levels.csv under today's column names.

levels.csv column names carry their unit (``ttft_p99_ms``, ``output_throughput_tok_s``, ``failed_pct``;
:mod:`tokenswarm.report.levels`). Run folders written before that used bare names and shares as fractions
(``ttft_p99``, ``output_throughput``, ``cache_hit_ratio`` 0.52); :data:`LEGACY_LEVELS_COLUMNS` maps each old
name to its new one and the factor its values take (100 for a fraction that became a percentage), and
:func:`read_levels_csv` applies it, so ``tokenswarm report`` and ``tokenswarm compare`` read old folders as
they read new ones. requests.csv's columns have not been renamed, so it needs no such map.

Errors: :class:`~tokenswarm.report.errors.ReportError` naming the file and what was wrong.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd

from tokenswarm.report.errors import ReportError
from tokenswarm.report.levels import LATENCIES, STAT_NAMES

#: old levels.csv column -> (today's name, factor applied to its values)
LEGACY_LEVELS_COLUMNS: dict[str, tuple[str, float]] = {
    **{f"{m}_{k}": (f"{m}_{k}_ms", 1.0) for m in LATENCIES for k in STAT_NAMES},
    "request_throughput": ("request_throughput_req_s", 1.0),
    "send_rate": ("send_rate_req_s", 1.0),
    "input_throughput": ("input_throughput_tok_s", 1.0),
    "output_throughput": ("output_throughput_tok_s", 1.0),
    "total_throughput": ("total_throughput_tok_s", 1.0),
    "goodput": ("goodput_req_s", 1.0),
    "slo_attainment": ("slo_attainment_pct", 100.0),
    "mean_input_len": ("mean_input_tokens", 1.0),
    "mean_output_len": ("mean_output_tokens", 1.0),
    "backoff_share": ("backoff_pct", 100.0),
    "cache_hit_ratio": ("cache_hit_pct", 100.0),
    "ttft_p50_cache_hit": ("ttft_p50_cache_hit_ms", 1.0),
    "ttft_p50_cache_miss": ("ttft_p50_cache_miss_ms", 1.0),
    "server_kv_cache_usage": ("server_kv_cache_usage_pct", 100.0),
    "coalesced_share": ("coalesced_pct", 100.0),
}


def upgrade_levels(levels: pd.DataFrame) -> pd.DataFrame:
    """``levels`` with every :data:`LEGACY_LEVELS_COLUMNS` name renamed (and its values scaled); columns that
    already have today's name are kept as they are (an old name beside its new one is dropped)."""
    rename = {old: new for old, (new, _f) in LEGACY_LEVELS_COLUMNS.items() if old in levels.columns}
    if not rename:
        return levels
    out = levels.drop(columns=[old for old, new in rename.items() if new in levels.columns])
    rename = {old: new for old, new in rename.items() if old in out.columns}
    for old in rename:
        factor = LEGACY_LEVELS_COLUMNS[old][1]
        if factor != 1.0:
            out[old] = pd.to_numeric(out[old], errors="coerce") * factor
    return out.rename(columns=rename)


def read_csv_with(path: str, name: str, column: str, missing: str) -> pd.DataFrame:
    """The CSV file ``name`` at ``path``, which must have ``column``. ReportError, one line naming the file,
    when it cannot be read or lacks the column (``missing``: what the error adds)."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise ReportError(f"{path}: cannot read {name} ({e})") from None
    if column not in df.columns:
        raise ReportError(f"{path}: column {column!r} is missing{missing}")
    return df


def read_levels_csv(path: str) -> pd.DataFrame:
    """A levels.csv under today's column names (:func:`upgrade_levels`). ReportError when the file cannot be
    read or has no ``level`` column."""
    return upgrade_levels(read_csv_with(path, "levels.csv", "level", ": not a tokenswarm levels.csv"))


def read_json_object(path: str, what: str, missing_ok: bool = False) -> dict[str, Any]:
    """The JSON object in ``path`` (``what`` names the file's role in errors). ``missing_ok``: {} when the file
    does not exist. ReportError naming the file when it cannot be read, is not JSON or is not an object."""
    if missing_ok and not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as e:
        raise ReportError(f"{path}: cannot read {what} ({e})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: {what} is a JSON object, not {type(data).__name__}")
    return data


def newest(path: str, *others: str) -> bool:
    """``path`` was modified no earlier than each of ``others`` that exists."""
    t = os.path.getmtime(path)
    return all(not os.path.exists(o) or os.path.getmtime(o) <= t for o in others)
