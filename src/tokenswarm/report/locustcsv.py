"""Per-level table from Locust's own CSV files, for run folders without requests.csv.

A plain ``locust -f ... --csv PREFIX --csv-full-history`` run with tokenswarm's
users leaves ``PREFIX_stats_history.csv``: one row per second and per request
name, with the user count, *cumulative* counts, sums and averages since the
start, and *current* percentiles over Locust's last ~10 s. tokenswarm's users
log rows of type ``LLM`` named ``TTFT``, ``TPOT`` and ``E2E``; a failed request
is an E2E failure. E2E is the one Locust ``request`` per request, and its
content size is the bytes received; files written before that change counted
TTFT and TPOT in Locust's total too, and gave E2E the request's output tokens
as its size. Those older files still give output tokens (the total's request
count above E2E's tells them apart); newer ones leave output tokens unknown.
From these:

* Levels are the user counts, grouped: consecutive seconds with one user count
  form a segment; a one-second segment strictly between its neighbours' counts
  (a ramp with a spawn rate) joins the next segment; segments with 0 users
  are dropped; segments with the same count are summed.
* A segment runs from the last row of the previous segment (the file's first
  row for the first) to its own last row. Its counts, means and tokens are
  the differences of the cumulative figures between those rows: exact
  (means of Locust's unrounded times), but requests are attributed to the
  level in which they *completed*, and the 1-second timestamps make the
  window (and so throughput) approximate.
* Percentiles are Locust's rounded ones (about two significant figures),
  taken from the segment's last row, so they cover Locust's last ~10 s of the
  level (more than the level when it is shorter than that).
* Input tokens, ITL and achieved concurrency are not in these files (NaN), nor
  output tokens in files whose E2E size is bytes.
"""

from __future__ import annotations

import glob
import os
import re

import numpy as np
import pandas as pd

from tokenswarm.measure import FAILURE_KINDS
from tokenswarm.report.errors import ReportError
from tokenswarm.report.levels import PERCENTILES, pct_name

HISTORY_GLOB = "*_stats_history.csv"
REQUEST_TYPE = "LLM"
NAMES = ("TTFT", "TPOT", "E2E")
#: Locust's percentile column for each of tokenswarm's percentiles
PCT_COLUMNS = {50: "50%", 90: "90%", 95: "95%", 99: "99%", 99.9: "99.9%"}
NEEDED = ("Timestamp", "User Count", "Type", "Name", "Total Request Count", "Total Failure Count",
          "Total Average Response Time", "Total Average Content Size", "100%", *PCT_COLUMNS.values())
SOURCE = "locust_csv"


def find_history(run_dir: str) -> str | None:
    """The folder's ``*_stats_history.csv`` (``locust_stats_history.csv`` first); None when there is none.

    Several with other prefixes are ambiguous: ReportError names them.
    """
    found = sorted(glob.glob(os.path.join(glob.escape(run_dir), HISTORY_GLOB)))
    if not found:
        return None
    preferred = os.path.join(run_dir, "locust_stats_history.csv")
    if preferred in found:
        return preferred
    if len(found) > 1:
        names = ", ".join(os.path.basename(f) for f in found)
        raise ReportError(f"{run_dir}: several Locust histories ({names}); keep one run's CSV files per folder")
    return found[0]


def sibling(history_path: str, suffix: str) -> str:
    """``PREFIX_stats_history.csv`` -> ``PREFIX`` + suffix (``_failures.csv``, ``_stats.csv``)."""
    return history_path[: -len("_stats_history.csv")] + suffix


def _read(path: str) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, keep_default_na=False)
    except (OSError, ValueError) as e:
        raise ReportError(f"{path}: cannot read Locust's history ({e})") from None
    missing = [c for c in NEEDED if c not in df.columns]
    if missing:
        raise ReportError(f"{path}: column {missing[0]!r} is missing: not a Locust stats history file")
    return df


def _num(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s.replace({"N/A": np.nan, "": np.nan}), errors="coerce").to_numpy(float)


def _segments(users: np.ndarray) -> list[tuple[int, int, int]]:
    """(users, first index, last index) of consecutive runs, ramps merged into the next run, 0 dropped."""
    runs: list[list[int]] = []
    for i, u in enumerate(users):
        if runs and runs[-1][0] == u:
            runs[-1][2] = i
        else:
            runs.append([int(u), i, i])
    single = [a == b for _, a, b in runs]
    counts = [u for u, _, _ in runs]
    merged: list[list[int]] = []
    for k, run in enumerate(runs):
        u = counts[k]
        if single[k] and 0 < k < len(runs) - 1 and min(counts[k - 1], counts[k + 1]) < u < max(counts[k - 1],
                                                                                               counts[k + 1]):
            runs[k + 1][1] = run[1]  # a ramp step: joins the next run
            continue
        merged.append(run)
    return [(u, a, b) for u, a, b in merged if u > 0]


def levels_from_history(path: str) -> pd.DataFrame:
    """The levels table (levels.csv columns where Locust has them) from a ``*_stats_history.csv``."""
    df = _read(path)
    ours = df[(df["Type"] == REQUEST_TYPE) & df["Name"].isin(NAMES)]
    if ours.empty:
        raise ReportError(f"{path}: no {REQUEST_TYPE} rows named TTFT/TPOT/E2E: not a run of tokenswarm's users, "
                          "or Locust was run without --csv-full-history")
    tokens_in_size = _sizes_are_tokens(df, ours)
    times_all = _num(df["Timestamp"])
    users_all = _num(df["User Count"])
    if np.isnan(times_all).any() or np.isnan(users_all).any():
        raise ReportError(f"{path}: 'Timestamp' and 'User Count' must be numbers in every row")
    # one user count per timestamp (the last row written for it)
    per_t = pd.DataFrame({"t": times_all, "u": users_all}).groupby("t", sort=True)["u"].last()
    times, users = per_t.index.to_numpy(float), per_t.to_numpy(float)
    # cumulative figures per name and timestamp, carried forward over seconds with no row
    cum: dict[str, pd.DataFrame] = {}
    for name in NAMES:
        g = ours[ours["Name"] == name]
        frame = pd.DataFrame({
            "t": _num(g["Timestamp"]),
            "count": _num(g["Total Request Count"]),
            "fail": _num(g["Total Failure Count"]),
            "sum": _num(g["Total Request Count"]) * _num(g["Total Average Response Time"]),
            "content": _num(g["Total Request Count"]) * _num(g["Total Average Content Size"]),
            **{PCT_COLUMNS[p]: _num(g[PCT_COLUMNS[p]]) for p in PERCENTILES},
            "100%": _num(g["100%"]),
        }).groupby("t", sort=True).last()
        cum[name] = frame.reindex(times).ffill()
    groups: dict[int, dict[str, float]] = {}
    last_rows: dict[int, int] = {}
    for u, a, b in _segments(users):
        t0 = a - 1 if a > 0 else None  # the previous segment's last row; the file's start for the first
        start_t = times[t0] if t0 is not None else times[0]
        acc = groups.setdefault(u, {"secs": 0.0})
        acc["secs"] += float(times[b] - start_t)
        for name in NAMES:
            c = cum[name]
            hi = c.iloc[b].fillna(0.0)
            lo = c.iloc[t0].fillna(0.0) if t0 is not None else hi * 0.0
            for k in ("count", "fail", "sum", "content"):
                acc[f"{name}_{k}"] = acc.get(f"{name}_{k}", 0.0) + float(hi[k] - lo[k])
        last_rows[u] = b
    rows = []
    for u in sorted(groups):
        acc = groups[u]
        secs = acc["secs"]
        e2e_n, e2e_fail = acc["E2E_count"], acc["E2E_fail"]
        completed = e2e_n - e2e_fail
        row = {
            "level": float(u), "target": float(u), "mode": "concurrency", "source": SOURCE,
            "requests": int(round(e2e_n)), "completed": int(round(completed)), "failed": int(round(e2e_fail)),
            "cancelled": 0, "window_s": secs,
            "request_throughput_req_s": completed / secs if secs > 0 else np.nan,
            "input_throughput_tok_s": np.nan,
            "output_throughput_tok_s": acc["E2E_content"] / secs if secs > 0 and tokens_in_size else np.nan,
            "mean_input_tokens": np.nan,
            "mean_output_tokens": acc["E2E_content"] / completed if completed > 0 and tokens_in_size else np.nan,
            "achieved_concurrency": np.nan,
        }
        b = last_rows[u]
        for name in NAMES:
            m = name.lower()
            n = acc[f"{name}_count"]
            row[f"{m}_mean_ms"] = acc[f"{name}_sum"] / n if n > 0 else np.nan
            cur = cum[name].iloc[b]
            empty = not (cur["100%"] > 0)  # Locust writes zeros while its current window is empty
            for p in PERCENTILES:
                row[f"{m}_{pct_name(p)}_ms"] = np.nan if empty else float(cur[PCT_COLUMNS[p]])
            row[f"{m}_max_ms"] = np.nan if empty else float(cur["100%"])
        rows.append(row)
    if not rows:
        raise ReportError(f"{path}: no second with users running: nothing to report")
    return pd.DataFrame(rows)


def _sizes_are_tokens(df: pd.DataFrame, ours: pd.DataFrame) -> bool:
    """Is E2E's content size the output tokens (older files) rather than the bytes received? In older files TTFT,
    TPOT and E2E all counted in Locust's total ("Aggregated"), so its request count ran above E2E's; now E2E is
    the only request and the two are equal."""
    total = _num(df.loc[df["Name"] == "Aggregated", "Total Request Count"])
    e2e = _num(ours.loc[ours["Name"] == "E2E", "Total Request Count"])
    if not len(total) or not len(e2e):
        return True
    return float(np.nanmax(total)) > float(np.nanmax(e2e))


_KIND = re.compile(r"\b(" + "|".join(FAILURE_KINDS) + r"): ")


def failures_by_kind(history_path: str) -> dict[str, int]:
    """Failure counts by kind from the sibling ``PREFIX_failures.csv`` (empty when it is missing)."""
    path = sibling(history_path, "_failures.csv")
    if not os.path.exists(path):
        return {}
    try:
        df = pd.read_csv(path, keep_default_na=False)
    except (OSError, ValueError) as e:
        raise ReportError(f"{path}: cannot read Locust's failures ({e})") from None
    if df.empty or not {"Error", "Occurrences"} <= set(df.columns):
        return {}
    out: dict[str, int] = {}
    for err, n in zip(df["Error"], df["Occurrences"]):
        m = _KIND.search(str(err))
        kind = m.group(1) if m else "other"
        out[kind] = out.get(kind, 0) + int(n)
    return out
