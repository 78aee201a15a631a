"""The engine's own figures per level, from its scraped /metrics (server_metrics.csv), beside the client's.

Three opinions of one level's latency: the client's records, the engine's own histograms, a peer benchmark's.

* :func:`engine_levels` reads, for each level's measurement window, the
  engine's latency histograms (server_metrics.csv, written by
  :class:`tokenswarm.loadgen.enginescrape.EngineMetricsSampler`): the
  difference of each histogram's ``_sum`` and ``_count`` between the scrapes
  nearest the window's start and end is the mean of what the engine observed
  in between (``engine_ttft_mean_ms`` ... ``engine_tpot_mean_ms``). Beside it,
  the client's mean over the *same* population: requests whose first token
  (TTFT) or last token (E2E) came between those two scrapes, as the engine
  observes TTFT at the first token and E2E at the last (TTFT: every request
  with a first token, whatever became of it later; E2E: the ``ok`` ones). Their difference,
  ``outside_engine_ttft_ms``, is the time outside the engine (network, the API
  server's HTTP and streaming work, the client). It also says how each level's
  streams were framed: ``output_events_mean`` and the share of ``ok`` requests
  of more than ``COALESCED_EVENTS`` output tokens that came in at most
  ``COALESCED_EVENTS`` events (``coalesced_pct``, percent): a server that merges a
  stream's tokens into few events hides TTFT and ITL from every client.
* :func:`engine_gauges` adds the engine's gauges per level: the means of its
  running and waiting requests and KV-cache use (``server_running``,
  ``server_waiting``, ``server_kv_cache_usage_pct``) over the scrapes inside
  the level's measurement window.
* :func:`read_vllm_bench` reads ``vllm bench serve`` results saved beside a run
  (``peers/vllm-bench-c<C>.json``), and the engine's histograms scraped just
  before and after each (``.metrics-before.prom``, ``.metrics-after.prom``).
* :func:`read_sglang_bench` reads SGLang's own benchmark the same way (``python -m sglang.bench_serving
  --output-file peers/sglang-bench-c<C>.jsonl``, deploy/gpu/sglang/bench.sh), under the same ``bench_*``
  names; :func:`read_peer_bench` reads whichever ran (vLLM's first where both did), with ``bench_tool``.
* :func:`opinions_table` puts the three side by side per level.

Definitions. vLLM 0.26 (vllm/v1/metrics/stats.py): TTFT is the time the
frontend processed the first token minus the request's arrival at the API
server; E2E the same for the last token; queue time is first scheduled minus
queued inside the engine core; ITL one observation per engine output after
the first. SGLang, TGI and llama.cpp equivalents: :data:`tokenswarm.enginemetrics.HISTOGRAMS`.
vLLM bench (vllm/benchmarks/serve.py and lib/endpoint_request_func.py): its
TTFT is the first chunk carrying ``choices`` (vLLM's role chunk, sent with the
first token), ``itls`` one gap per later chunk, so a request's content events
are ``len(itls)``; ``max_concurrent_requests`` counts, for each whole second,
every request active at any moment of it, so it exceeds ``--max-concurrency``
when requests end and start within one second.

Shapes and units: one row per window (level) or per benchmark concurrency;
times in milliseconds (``_ms``), counts as floats (NaN where unknown), epoch
seconds for ``engine_from``/``engine_to``. Errors: :class:`ReportError` naming
the file, field and value. Pure pandas/numpy: no locust, no gevent.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from tokenswarm import enginemetrics
from tokenswarm.report.errors import ReportError
from tokenswarm.report.levels import READ, Window, load_requests
from tokenswarm.report.readers import read_csv_with, read_json_object

SERVER_CSV = "server_metrics.csv"
PEERS_DIR = "peers"
BENCH_GLOB = "vllm-bench-c*.json"
SGLANG_BENCH_GLOB = "sglang-bench-c*.jsonl"
#: ``bench_tool`` values, and how the report names each peer benchmark
BENCH_TOOLS: dict[str, str] = {"vllm": "vLLM bench", "sglang": "SGLang bench_serving"}
BENCH_BEFORE, BENCH_AFTER = ".metrics-before.prom", ".metrics-after.prom"
#: server_metrics.csv gauge -> (levels.csv column, factor): the engine's requests running and waiting, KV cache used
GAUGE_COLUMNS: dict[str, tuple[str, float]] = {"running": ("server_running", 1.0), "waiting": ("server_waiting", 1.0),
                                               "kv_cache_usage": ("server_kv_cache_usage_pct", 100.0)}
COALESCED_EVENTS = 2  # a stream of more tokens than this that came in at most this many events was coalesced
EDGE_TOLERANCE_S = 5.0  # a window edge with no scrape within this many seconds gets no engine figures
HISTS: tuple[str, ...] = tuple(name.removeprefix("engine_") for name in enginemetrics.HISTOGRAM_NAMES)

#: engine_levels' columns, in order
ENGINE_COLUMNS: tuple[str, ...] = (
    "level", "engine_from", "engine_to",
    *(c for h in HISTS for c in (f"engine_{h}_mean_ms", f"engine_{h}_count")),
    "client_ttft_mean_ms", "client_ttft_count", "client_e2e_mean_ms", "client_e2e_count",
    "outside_engine_ttft_ms", "outside_engine_e2e_ms",
    "output_events_mean", "output_tokens_per_event", "coalesced_pct", "coalesced_requests",
)
#: vLLM bench result fields -> our names (``e2el`` is its E2E)
BENCH_FIELDS: dict[str, str] = {
    "num_prompts": "bench_num_prompts", "completed": "bench_completed", "failed": "bench_failed",
    "duration": "bench_duration_s", "request_throughput": "bench_request_throughput_req_s",
    "output_throughput": "bench_output_throughput_tok_s", "total_token_throughput": "bench_total_throughput_tok_s",
    "max_concurrent_requests": "bench_max_concurrent_requests",
    "max_output_tokens_per_s": "bench_max_output_throughput_tok_s",
    **{f"{stat}_{m}_ms": f"bench_{'e2e' if m == 'e2el' else m}_{'p50' if stat == 'median' else stat}_ms"
       for m in ("ttft", "tpot", "itl", "e2el") for stat in ("mean", "median", "p99")},
}


#: SGLang bench_serving's result fields (one JSON line per run, python/sglang/bench_serving.py) -> our names;
#: its ``concurrency`` is the mean achieved, not a maximum, so it has no ``bench_max_concurrent_requests``
SGLANG_BENCH_FIELDS: dict[str, str] = {
    "completed": "bench_completed", "duration": "bench_duration_s",
    "request_throughput": "bench_request_throughput_req_s", "output_throughput": "bench_output_throughput_tok_s",
    "total_throughput": "bench_total_throughput_tok_s", "concurrency": "bench_mean_concurrency",
    **{f"{stat}_{m}_ms": f"bench_{m}_{'p50' if stat == 'median' else stat}_ms"
       for m in ("ttft", "tpot", "itl") for stat in ("mean", "median", "p99")},
    **{f"{stat}_e2e_latency_ms": f"bench_e2e_{'p50' if stat == 'median' else stat}_ms"
       for stat in ("mean", "median", "p99")},
}


# -- the engine's histograms ---------------------------------------------------------------------
def read_server_metrics(path: str) -> pd.DataFrame | None:
    """server_metrics.csv as numbers (None when the file is missing or empty). Raises :class:`ReportError`
    when it has no ``time`` column or a cell of a histogram column is not a number."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    df = read_csv_with(path, "server_metrics.csv", "time", "")
    for col in ("time", *enginemetrics.HISTOGRAM_COLUMNS):
        if col not in df.columns:
            continue
        conv = pd.to_numeric(df[col], errors="coerce")
        bad = conv.isna() & df[col].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ReportError(f"{path}: column {col!r}, data row {i + 1}: {df[col].iloc[i]!r} is not a number")
        df[col] = conv.astype("float64")
    return df.sort_values("time", kind="stable").reset_index(drop=True)


def histogram_means(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """``engine_<h>_mean_ms`` and ``engine_<h>_count`` from two parsed scrapes (:func:`enginemetrics.parse`).

    NaN where either scrape lacks the histogram, the count went down (the engine restarted) or nothing was
    observed in between (then the count is 0).
    """
    def num(d: Mapping[str, float], key: str) -> float:
        v = d.get(key)
        return float(v) if v is not None else np.nan

    out: dict[str, float] = {}
    for h in HISTS:
        s0, s1 = num(before, f"engine_{h}_sum_s"), num(after, f"engine_{h}_sum_s")
        c0, c1 = num(before, f"engine_{h}_count"), num(after, f"engine_{h}_count")
        dc = c1 - c0  # NaN when either is missing
        count = dc if dc >= 0 and not np.isnan(s1 - s0) else np.nan
        mean = (s1 - s0) / dc * 1000.0 if count > 0 else np.nan
        out[f"engine_{h}_mean_ms"], out[f"engine_{h}_count"] = mean, count
    return out


def _nearest(times: np.ndarray, t: float, tolerance_s: float) -> int | None:
    if not len(times):
        return None
    i = int(np.argmin(np.abs(times - t)))
    return i if abs(times[i] - t) <= tolerance_s else None


def _client_mean(values_ms: np.ndarray, at: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    sel = (at >= lo) & (at < hi) & ~np.isnan(values_ms)
    n = int(sel.sum())
    return (float(values_ms[sel].mean()) if n else np.nan), float(n)


def _events(df: pd.DataFrame, w: Window) -> dict[str, float]:
    """Stream framing of the level's sample: ``ok`` requests started in the window."""
    out = {"output_events_mean": np.nan, "output_tokens_per_event": np.nan, "coalesced_pct": np.nan,
           "coalesced_requests": np.nan}
    if df.empty or "output_events" not in df.columns:
        return out
    start = df["start_time"].to_numpy(float)
    ok = (df["status"].to_numpy() == "ok") & (start >= w.start) & (start < w.end)
    ev = df["output_events"].to_numpy(float)[ok]
    tok = df["output_tokens"].to_numpy(float)[ok]
    if not len(ev) or np.isnan(ev).all():
        return out
    out["output_events_mean"] = float(np.nanmean(ev))
    if np.nansum(ev) > 0:
        out["output_tokens_per_event"] = float(np.nansum(tok) / np.nansum(ev))
    long = tok > COALESCED_EVENTS
    if long.any():
        coalesced = long & (ev <= COALESCED_EVENTS)
        out["coalesced_requests"] = float(coalesced.sum())
        out["coalesced_pct"] = float(100.0 * coalesced.sum() / long.sum())
    return out


def engine_levels(server: pd.DataFrame | None, requests: pd.DataFrame, windows: list[Window],
                  tolerance_s: float = EDGE_TOLERANCE_S) -> pd.DataFrame:
    """Per window (level): the engine's mean latencies beside the client's, and how streams were framed.

    ``server``: server_metrics.csv (:func:`read_server_metrics`; None when the run has none). ``requests``:
    requests.csv as :func:`tokenswarm.report.levels.load_requests` gives it, with ``output_events`` (NaN
    figures without it). ``windows``: :func:`tokenswarm.report.levels.windows_from`.

    For each window, the scrapes nearest its start and end (within ``tolerance_s``) bound the engine's
    figures (``engine_from``, ``engine_to``); ``client_ttft_mean_ms`` averages the requests whose first token
    came in ``[engine_from, engine_to)`` (cancelled or failed later or not: the engine's histogram has them),
    ``client_e2e_mean_ms`` the ``ok`` ones whose last token did;
    ``outside_engine_*_ms`` is client minus engine. Returns :data:`ENGINE_COLUMNS`.
    """
    df = requests
    start = df["start_time"].to_numpy(float) if len(df) else np.array([])
    ok = (df["status"].to_numpy() == "ok") if len(df) else np.array([], bool)
    # the engine observes TTFT at the first token whatever becomes of the request: a request cancelled or failed
    # after its first token is in its histogram, so in the client's population too (E2E: the ok ones)
    ttft = df["ttft_ms"].to_numpy(float) if len(df) else np.array([])
    e2e = np.where(ok, df["e2e_ms"].to_numpy(float), np.nan) if len(df) else np.array([])
    first_at, last_at = start + np.nan_to_num(ttft, nan=0.0) / 1000.0, start + np.nan_to_num(e2e, nan=0.0) / 1000.0
    times = server["time"].to_numpy(float) if server is not None and len(server) else np.array([])
    rows: list[dict[str, Any]] = []
    for w in windows:
        row: dict[str, Any] = {c: np.nan for c in ENGINE_COLUMNS}
        row["level"] = float(w.level)
        a, b = _nearest(times, w.start, tolerance_s), _nearest(times, w.end, tolerance_s)
        if server is not None and a is not None and b is not None and times[b] > times[a]:
            lo, hi = float(times[a]), float(times[b])
            row["engine_from"], row["engine_to"] = lo, hi
            row.update(histogram_means({c: server[c].iloc[a] for c in enginemetrics.HISTOGRAM_COLUMNS
                                        if c in server.columns},
                                       {c: server[c].iloc[b] for c in enginemetrics.HISTOGRAM_COLUMNS
                                        if c in server.columns}))
            row["client_ttft_mean_ms"], row["client_ttft_count"] = _client_mean(ttft, first_at, lo, hi)
            row["client_e2e_mean_ms"], row["client_e2e_count"] = _client_mean(e2e, last_at, lo, hi)
            row["outside_engine_ttft_ms"] = row["client_ttft_mean_ms"] - row["engine_ttft_mean_ms"]
            row["outside_engine_e2e_ms"] = row["client_e2e_mean_ms"] - row["engine_e2e_mean_ms"]
        row.update(_events(df, w))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(ENGINE_COLUMNS))


def engine_levels_for_run(run_dir: str, windows: list[Window], tolerance_s: float = EDGE_TOLERANCE_S
                          ) -> pd.DataFrame:
    """:func:`engine_levels` for a run folder (its requests.csv and server_metrics.csv)."""
    path = os.path.join(run_dir, "requests.csv")
    if not os.path.exists(path):
        raise ReportError(f"{run_dir}: no requests.csv")
    df = load_requests(path, columns=(*READ, "output_events"))
    return engine_levels(read_server_metrics(os.path.join(run_dir, SERVER_CSV)), df, windows, tolerance_s)


# -- the engine's gauges ----------------------------------------------------------------------------
def engine_gauges(levels: pd.DataFrame, server: pd.DataFrame | None, windows: list[Window]) -> pd.DataFrame:
    """``levels`` plus :data:`GAUGE_COLUMNS`: per level, the means of the engine's gauges (server_metrics.csv
    ``running``, ``waiting``: requests; ``kv_cache_usage``: a fraction, given here in percent) over the scrapes
    inside the level's measurement window; NaN for a level without a scrape or a window. ``levels`` unchanged
    when ``server`` is None."""
    if server is None or not len(server):
        return levels
    by_level = {float(w.level): w for w in windows}
    means: dict[str, list[float]] = {col: [] for col, _f in GAUGE_COLUMNS.values()}
    for lvl in levels["level"].astype(float):
        w = by_level.get(lvl)
        for src, (col, factor) in GAUGE_COLUMNS.items():
            value = np.nan
            if w is not None and src in server.columns:
                part = server[(server["time"] >= w.start) & (server["time"] <= w.end)][src]
                part = pd.to_numeric(part, errors="coerce").dropna()
                value = float(part.mean()) * factor if len(part) else np.nan
            means[col].append(value)
    levels = levels.copy()
    for col, values in means.items():
        levels[col] = values
    return levels


# -- vLLM bench -----------------------------------------------------------------------------------
def _bench_detail(data: Mapping[str, Any], path: str) -> dict[str, float]:
    """Stream framing from a ``--save-detailed`` result: content events per request are ``len(itls)``."""
    out = {"bench_output_events_mean": np.nan, "bench_coalesced_pct": np.nan}
    itls, lens, errors = data.get("itls"), data.get("output_lens"), data.get("errors")
    if not isinstance(itls, list) or not isinstance(lens, list):
        return out
    if len(itls) != len(lens):
        raise ReportError(f"{path}: 'itls' has {len(itls)} requests but 'output_lens' {len(lens)}")
    errs = errors if isinstance(errors, list) and len(errors) == len(lens) else [""] * len(lens)
    events = np.array([len(x) if isinstance(x, list) else np.nan for x in itls], float)
    n_out = np.array([x if isinstance(x, (int, float)) else np.nan for x in lens], float)
    ok = np.array([not e for e in errs]) & (n_out > 0)
    if not ok.any():
        return out
    out["bench_output_events_mean"] = float(np.nanmean(events[ok]))
    long = ok & (n_out > COALESCED_EVENTS)
    if long.any():
        out["bench_coalesced_pct"] = float(100.0 * (long & (events <= COALESCED_EVENTS)).sum() / long.sum())
    return out


def _bench_engine(json_path: str) -> dict[str, float]:
    """The engine's histograms over one bench run, from the scrapes saved before and after it."""
    stem = json_path.rsplit(".", 1)[0]
    before, after = stem + BENCH_BEFORE, stem + BENCH_AFTER
    if not (os.path.exists(before) and os.path.exists(after)):
        return {}
    scrapes = []
    for p in (before, after):
        try:
            with open(p, encoding="utf-8") as fh:
                scrapes.append(enginemetrics.parse(fh.read()))
        except (OSError, ValueError) as e:
            raise ReportError(f"{p}: cannot parse the engine's metrics ({e})") from None
    return {"bench_" + k: v for k, v in histogram_means(scrapes[0], scrapes[1]).items()}


def read_vllm_bench(folder: str) -> pd.DataFrame:
    """``vllm bench serve --save-result`` results in ``folder`` (``vllm-bench-c<C>.json``), one row per
    concurrency C, sorted: :data:`BENCH_FIELDS` renamed to ``bench_*`` (ms, req/s, tok/s, s), framing from
    ``--save-detailed`` results (``bench_output_events_mean``, ``bench_coalesced_pct``), and the engine's
    histograms over the run (``bench_engine_<h>_mean_ms``, ``bench_outside_engine_ttft_ms``) where the
    scrapes before and after it were saved. An empty frame when there are none.

    Raises :class:`ReportError` for unreadable JSON, a missing ``max_concurrency``, or one that differs
    from the C in the file's name.
    """
    rows = []
    for path in glob.glob(os.path.join(folder, BENCH_GLOB)):
        m = re.fullmatch(r"vllm-bench-c(\d+)\.json", os.path.basename(path))
        if m is None:
            continue
        data = read_json_object(path, "vLLM bench result")
        c = data.get("max_concurrency")
        if not isinstance(c, int) or c != int(m.group(1)):
            raise ReportError(f"{path}: max_concurrency = {c!r}, expected {int(m.group(1))} (the file's name)")
        row: dict[str, Any] = {"concurrency": float(c)}
        for src, dst in BENCH_FIELDS.items():
            v = data.get(src)
            row[dst] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan
        row.update(_bench_detail(data, path))
        row.update(_bench_engine(path))
        if "bench_engine_ttft_mean_ms" in row:
            row["bench_outside_engine_ttft_ms"] = row["bench_ttft_mean_ms"] - row["bench_engine_ttft_mean_ms"]
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["concurrency", *BENCH_FIELDS.values()])
    return pd.DataFrame(rows).sort_values("concurrency", kind="stable").reset_index(drop=True)


def read_sglang_bench(folder: str) -> pd.DataFrame:
    """SGLang ``bench_serving --output-file`` results in ``folder`` (``sglang-bench-c<C>.jsonl``; the file's
    last line, the latest run, counts), one row per concurrency C, sorted: :data:`SGLANG_BENCH_FIELDS` under
    the ``bench_*`` names :func:`read_vllm_bench` gives, and the engine's histograms over the run where the
    scrapes before and after it were saved. An empty frame when there are none.

    Raises :class:`ReportError` naming the file for a line that is not a JSON object, or a ``max_concurrency``
    other than the C in the file's name.
    """
    rows = []
    for path in glob.glob(os.path.join(folder, SGLANG_BENCH_GLOB)):
        m = re.fullmatch(r"sglang-bench-c(\d+)\.jsonl", os.path.basename(path))
        if m is None:
            continue
        try:
            with open(path, encoding="utf-8") as fh:
                lines = [ln for ln in fh.read().splitlines() if ln.strip()]
            data = json.loads(lines[-1]) if lines else None
        except (OSError, ValueError) as e:
            raise ReportError(f"{path}: cannot read SGLang bench result ({e})") from None
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ReportError(f"{path}: the last line is not a JSON object")
        c = data.get("max_concurrency")
        if not isinstance(c, int) or c != int(m.group(1)):
            raise ReportError(f"{path}: max_concurrency = {c!r}, expected {int(m.group(1))} (the file's name)")
        row: dict[str, Any] = {"concurrency": float(c)}
        for src, dst in SGLANG_BENCH_FIELDS.items():
            v = data.get(src)
            row[dst] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan
        row.update(_bench_engine(path))
        if "bench_engine_ttft_mean_ms" in row:
            row["bench_outside_engine_ttft_ms"] = row["bench_ttft_mean_ms"] - row["bench_engine_ttft_mean_ms"]
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["concurrency", *SGLANG_BENCH_FIELDS.values()])
    return pd.DataFrame(rows).sort_values("concurrency", kind="stable").reset_index(drop=True)


def read_peer_bench(folder: str) -> pd.DataFrame:
    """The peer benchmark that ran beside a run (``peers/``): :func:`read_vllm_bench`'s rows, then
    :func:`read_sglang_bench`'s for concurrencies vLLM's did not cover, each with ``bench_tool`` (a key of
    :data:`BENCH_TOOLS`). An empty frame when neither ran."""
    frames = []
    seen: set[float] = set()
    for tool, reader in (("vllm", read_vllm_bench), ("sglang", read_sglang_bench)):
        df = reader(folder)
        df = df[~df["concurrency"].astype(float).isin(seen)]
        if len(df):
            frames.append(df.assign(bench_tool=tool))
            seen |= set(df["concurrency"].astype(float))
    if not frames:
        return pd.DataFrame(columns=["concurrency", "bench_tool", *BENCH_FIELDS.values()])
    return pd.concat(frames, ignore_index=True).sort_values("concurrency", kind="stable").reset_index(drop=True)


# -- side by side -----------------------------------------------------------------------------------
def opinions_table(engine: pd.DataFrame, bench: pd.DataFrame | None = None,
                   levels: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per level, the three opinions of mean TTFT and E2E (ms) and the output throughput (tok/s).

    ``engine``: :func:`engine_levels`; ``bench``: :func:`read_vllm_bench` (joined on concurrency = level);
    ``levels``: levels.csv (the client's own level statistics: ``ttft_mean_ms``, ``e2e_mean_ms``,
    ``output_throughput_tok_s``), optional.
    """
    keep = ["level", "client_ttft_mean_ms", "engine_ttft_mean_ms", "outside_engine_ttft_ms",
            "client_e2e_mean_ms", "engine_e2e_mean_ms", "engine_queue_mean_ms", "output_events_mean",
            "coalesced_pct"]
    out = engine[[c for c in keep if c in engine.columns]].copy()
    if levels is not None and len(levels):
        lv = levels[[c for c in ("level", "ttft_mean_ms", "e2e_mean_ms", "output_throughput_tok_s")
                     if c in levels.columns]]
        lv = lv.rename(columns={"ttft_mean_ms": "level_ttft_mean_ms", "e2e_mean_ms": "level_e2e_mean_ms"})
        out = out.merge(lv.astype({"level": float}), on="level", how="left")
    if bench is not None and len(bench):
        cols = ["concurrency", "bench_ttft_mean_ms", "bench_engine_ttft_mean_ms", "bench_outside_engine_ttft_ms",
                "bench_e2e_mean_ms", "bench_engine_e2e_mean_ms", "bench_output_throughput_tok_s",
                "bench_output_events_mean", "bench_coalesced_pct", "bench_max_concurrent_requests"]
        b = bench[[c for c in cols if c in bench.columns]].rename(columns={"concurrency": "level"})
        out = out.merge(b.astype({"level": float}), on="level", how="outer").sort_values("level", kind="stable")
    return out.reset_index(drop=True)
