"""The numbers of a run folder's report, computed without writing anything: :func:`analyse` -> :class:`Analysis`.

:func:`analyse` reads requests.csv and run.json when there is a requests.csv
(exact figures, :mod:`tokenswarm.report.levels`), else Locust's
``*_stats_history.csv`` (Locust's rounded percentiles,
:mod:`tokenswarm.report.locustcsv`), else an existing levels.csv (old column
names mapped by :mod:`tokenswarm.report.readers`). To the levels it adds the
load generators' self-check (:mod:`tokenswarm.report.selfcheck`) and the
engine's own figures from its scraped /metrics
(:mod:`tokenswarm.report.engine`), and it finds the saturation level and the
highest level meeting the SLOs (:mod:`tokenswarm.report.saturation`), the
failures by level and kind with the server's messages, the usage-vs-tokenizer
check, and the per-workload tables (:mod:`tokenswarm.report.workloads`).
Settings come from run.json ``settings`` (``warmup_s``, ``warmups_s``,
``slo``, ``slo_attainment``, ``knee_pct``), each optional, with the defaults
of the modules above. :mod:`tokenswarm.report.compose` turns an
:class:`Analysis` into text; :func:`tokenswarm.report.build.build_report` writes the
files. Errors: :class:`~tokenswarm.report.errors.ReportError` naming the file,
field and value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tokenswarm import runfolder
from tokenswarm.report import engine, gpu, intervals, locustcsv, saturation, selfcheck, workloads
from tokenswarm.report.errors import ReportError
from tokenswarm.report.levels import DEFAULT_SLO_ATTAINMENT, Window, check_slo, level_stats, load_requests, windows_from
from tokenswarm.report.readers import newest, read_json_object, read_levels_csv

SUMMARY_JSON = "summary.json"
SOURCE_REQUESTS, SOURCE_LOCUST, SOURCE_LEVELS = "requests.csv", "locust_csv", "levels.csv"
MESSAGES_PER_KIND = 3  # the server's most frequent messages kept per failure kind
SHARING_WORKLOADS = ("shared-prefix", "multi-turn", "trace")  # prompts share prefixes by design
TOKENIZER_TOLERANCE_PCT = 2.0  # usage and the local tokenizer may differ this much before the report says so

#: engine_levels' columns that join levels.csv: the engine's opinion beside ours, and the streams' framing
ENGINE_LEVEL_COLUMNS = ("engine_ttft_mean_ms", "engine_e2e_mean_ms", "engine_queue_mean_ms", "engine_itl_mean_ms",
                        "engine_tpot_mean_ms", "client_ttft_mean_ms", "client_e2e_mean_ms", "outside_engine_ttft_ms",
                        "outside_engine_e2e_ms", "output_events_mean", "output_tokens_per_event", "coalesced_pct")


@dataclass
class Analysis:
    """Everything the report says about one run folder, computed without writing anything."""

    run_dir: str
    meta: dict[str, Any]
    levels: pd.DataFrame
    source: str  # requests.csv | locust_csv | levels.csv
    source_file: str
    mode: str
    knee: saturation.Knee
    knee_pct: float
    slo: dict[str, float]
    slo_attainment: float
    warmup_s: float
    failures: dict[float | None, dict[str, int]] = field(default_factory=dict)  # level (None: all) -> kind -> n
    #: level -> the client self-check's verdicts and evidence (:func:`tokenswarm.report.selfcheck.client_checks`)
    client: dict[float, dict[str, Any]] = field(default_factory=dict)
    tokenizer_check: dict[str, Any] = field(default_factory=dict)  # usage vs --tokenizer output token counts
    turns: pd.DataFrame | None = None  # multi-turn: TTFT by turn
    trace: dict[str, Any] = field(default_factory=dict)  # trace replay: actual vs scheduled sends
    bench: pd.DataFrame | None = None  # vLLM bench results saved beside the run (peers/), per concurrency
    messages: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # failure kind -> top server messages
    capacity: dict[str, Any] | None = None  # a capacity search's answer (capacity.json), once built

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id") or os.path.basename(os.path.normpath(self.run_dir)))

    @property
    def settings(self) -> dict[str, Any]:
        s = self.meta.get("settings")
        return s if isinstance(s, dict) else {}

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete", True))

    @property
    def max_level_meeting_slo(self) -> float | None:
        return saturation.max_level_meeting_slo(self.levels) if self.slo else None

    def peak_output(self) -> dict[str, float] | None:
        """The level of the highest output throughput: ``{"level", "output_throughput_tok_s"}``; None when no
        level has one."""
        lv = self.levels
        col = "output_throughput_tok_s"
        if not len(lv) or col not in lv.columns or not lv[col].notna().any():
            return None
        i = lv[col].astype(float).idxmax()
        return {"level": float(lv.loc[i, "level"]), col: float(lv.loc[i, col])}

    def summary(self) -> dict[str, Any]:
        """The machine-readable summary (summary.json)."""
        lv = self.levels
        return {
            "run_id": self.run_id,
            "mode": self.mode,
            "complete": self.complete,
            "source": self.source,
            "levels": [float(x) for x in lv["level"]] if "level" in lv.columns else [],
            "saturation": self.knee.to_dict(),
            "saturation_level": self.knee.level,
            "knee_pct": self.knee_pct,
            "slo": self.slo or None,
            "slo_attainment_target": self.slo_attainment,
            "max_level_meeting_slo": self.max_level_meeting_slo,
            "peak_output_throughput": self.peak_output(),
            "under_target_levels": saturation.flagged(lv, "under_target"),
            "late_levels": saturation.flagged(lv, "late"),
            "short_window_levels": saturation.flagged(lv, "short_window"),
            "served_from_cache_levels": saturation.flagged(lv, "served_from_cache"),
            "failed_pct_by_level": by_level(lv, "failed_pct"),
            "timing_uncertain_levels": {f"{k:g}": v["timing"] for k, v in sorted(self.client.items())
                                        if v["timing_uncertain"]},
            "load_short_levels": {f"{k:g}": v["load"] for k, v in sorted(self.client.items()) if v["load_short"]},
            "client_checks": {f"{k:g}": v for k, v in sorted(self.client.items())},
            "tokenizer_check": self.tokenizer_check or None,
            "cache_hit_pct_by_level": by_level(lv, "cache_hit_pct"),
            "ttft_by_turn": self.turns.to_dict("records") if self.turns is not None else None,
            "trace_replay": self.trace or None,
            "warmup_s": self.warmup_s,
            "failures_by_kind": total_failures(self.failures),
            "failures_by_level": {f"{k:g}": v for k, v in sorted(self.failures.items()) if k is not None},
            "lost_workers": self.meta.get("lost_workers") or [],
            "intervals": {"confidence": intervals.LEVEL, "method": intervals.METHOD,
                          "columns": "<figure>_ci_low / <figure>_ci_high in levels.csv, unit suffix kept last"},
            "lockstep_levels": saturation.flagged(lv, "lockstep"),
            "capacity": {k: v for k, v in self.capacity.items() if k != "probes"} if self.capacity else None,
            "imprecise_levels": saturation.flagged(lv, "imprecise"),
            "usage_contradicted_levels": saturation.flagged(lv, "usage_contradicted"),
            "token_contradictions_by_level": by_level(lv, "token_contradictions"),
            "lingered_levels": saturation.flagged(lv, "lingered"),
            "clumped_levels": saturation.flagged(lv, "clumped"),
            "slo_unjudged_by_level": by_level(lv, "slo_unjudged"),
        }


def read_meta(run_dir: str) -> dict[str, Any]:
    """run.json as a dict ({} when absent); ReportError naming the file when it is not a JSON object."""
    return read_json_object(os.path.join(run_dir, runfolder.RUN_JSON), "run.json", missing_ok=True)


def _number(settings: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = settings.get(key)
    if value is None:
        return default
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ReportError(f"run.json settings.{key} = {value!r}: not a number") from None
    if not lo <= out <= hi:
        raise ReportError(f"run.json settings.{key} = {value!r}: must be between {lo:g} and {hi:g}")
    return out


def level_warmups(settings: dict[str, Any]) -> dict[float, float] | None:
    """Per-level warm-ups in seconds from run.json ``settings`` (``warmups_s`` beside ``levels`` or ``rates``:
    levels of different lengths), keyed by level; None when the run has no such list or it does not match."""
    raw, levels = settings.get("warmups_s"), settings.get("levels") or settings.get("rates")
    if not isinstance(raw, list) or not isinstance(levels, list) or len(raw) != len(levels):
        return None
    try:
        return {float(lv): float(w) for lv, w in zip(levels, raw)}
    except (TypeError, ValueError):
        return None


def analyse(run_dir: str, warmup_s: float | None = None, prefer_levels_csv: bool = False) -> Analysis:
    """Read a run folder and compute its levels, saturation and SLO verdicts (nothing is written).

    ``prefer_levels_csv``: take an existing levels.csv that is at least as new as requests.csv and
    run.json instead of recomputing it (what :mod:`tokenswarm.report.compare` does).
    """
    if not os.path.isdir(run_dir):
        raise ReportError(f"no run folder at {run_dir}")
    meta = read_meta(run_dir)
    s = meta.get("settings") if isinstance(meta.get("settings"), dict) else {}
    warmups = None
    if warmup_s is None:
        warmup_s = _number(s, "warmup_s", 0.0, 0.0, float("inf"))
        warmups = level_warmups(s)
    knee_pct = _number(s, "knee_pct", saturation.DEFAULT_KNEE_PCT, 0.0, 1000.0)
    target = _number(s, "slo_attainment", DEFAULT_SLO_ATTAINMENT, 0.0, 1.0)
    slo = check_slo(s.get("slo"))
    mode = str(meta.get("mode") or "concurrency")
    if mode not in ("concurrency", "rate"):
        raise ReportError(f"{os.path.join(run_dir, runfolder.RUN_JSON)}: mode = {mode!r}: "
                          "expected 'concurrency' or 'rate'")
    req_path = os.path.join(run_dir, runfolder.REQUESTS_CSV)
    lv_path = os.path.join(run_dir, runfolder.LEVELS_CSV)
    failures: dict[float | None, dict[str, int]] = {}
    client: dict[float, dict[str, Any]] = {}
    bench: pd.DataFrame | None = None
    messages: dict[str, list[tuple[str, int]]] = {}
    tok_check: dict[str, Any] = {}
    turns: pd.DataFrame | None = None
    trace: dict[str, Any] = {}
    if prefer_levels_csv and os.path.exists(lv_path) and newest(lv_path, req_path, os.path.join(
            run_dir, runfolder.RUN_JSON)):
        levels, source, source_file = read_levels_csv(lv_path), SOURCE_LEVELS, lv_path
        client = selfcheck.client_checks(levels)
    elif os.path.exists(req_path):
        df = load_requests(req_path)
        windows = windows_from(df, meta.get("timeline"), warmup_s, warmups, budget=bool(s.get("requests")),
                               closed_loop=mode == "concurrency")
        try:
            levels = level_stats(df, windows, slo=slo, mode=mode, slo_attainment=target,
                                 expect_cache=expects_cache(s))
        except ReportError as e:  # a bad itl_ms cell: say which file
            raise ReportError(f"{req_path}: {e}") from None
        failures = failures_by_level(df)
        levels, client = selfcheck.fold_selfcheck(levels, run_dir, windows)
        server = engine.read_server_metrics(os.path.join(run_dir, engine.SERVER_CSV))
        levels = engine.engine_gauges(levels, server, windows)
        levels = fold_engine_levels(levels, server, df, windows)
        levels = fold_batches(levels, s)
        levels = gpu.gpu_levels(levels, gpu.read_gpu_metrics(os.path.join(run_dir, gpu.GPU_CSV)), windows)
        bench = engine.read_peer_bench(os.path.join(run_dir, engine.PEERS_DIR))
        messages = failure_messages(req_path) if failures else {}
        tok_check = tokenizer_check(req_path)
        turns = workloads.turn_table(req_path)
        trace = workloads.trace_check(req_path) if (s.get("workload") or {}).get("kind") == "trace" else {}
        source, source_file = SOURCE_REQUESTS, req_path
    else:
        hist = locustcsv.find_history(run_dir)
        if hist is not None:
            levels = locustcsv.levels_from_history(hist)
            fails = locustcsv.failures_by_kind(hist)
            failures = {None: fails} if fails else {}
            source, source_file, mode = SOURCE_LOCUST, hist, "concurrency"
        elif os.path.exists(lv_path):
            levels, source, source_file = read_levels_csv(lv_path), SOURCE_LEVELS, lv_path
            client = selfcheck.client_checks(levels)
        else:
            raise ReportError(f"{run_dir} is not a tokenswarm run folder: it has no requests.csv, "
                              "*_stats_history.csv or levels.csv")
    if len(levels) and "mode" in levels.columns and str(levels["mode"].iloc[0]) in ("concurrency", "rate"):
        mode = str(levels["mode"].iloc[0])
    stopped = not meta.get("complete", True) and not s.get("capacity") and source != SOURCE_LOCUST
    knee = saturation.find_knee(levels, knee_pct, not_run=not_run(meta, levels, mode), stopped=stopped)
    return Analysis(run_dir, meta, levels, source, source_file, mode, knee, knee_pct, slo, target, warmup_s,
                    failures, client, tok_check, turns, trace, bench if bench is not None and len(bench) else None,
                    messages)


def not_run(meta: dict[str, Any], levels: pd.DataFrame, mode: str) -> list[float]:
    """The levels a sweep planned (run.json's ``settings.levels``, or ``rates``) and never reached, when the run
    did not complete (Ctrl-C, a crash); [] for a complete run or one without a plan."""
    s = meta.get("settings") if isinstance(meta.get("settings"), dict) else {}
    if meta.get("complete", True) or s.get("capacity"):  # a capacity search's plan is its bracket, not levels
        return []
    planned = s.get("rates" if mode == "rate" else "levels")
    if not isinstance(planned, list):
        return []
    ran = set(levels["level"].astype(float)) if len(levels) and "level" in levels.columns else set()
    try:
        return [float(x) for x in planned if float(x) not in ran]
    except (TypeError, ValueError):
        return []


#: the dialects whose requests carry a batch of inputs (tokenswarm.dialects: Dialect.batched)
BATCHED = ("openai-embeddings", "rerank")


def fold_batches(levels: pd.DataFrame, settings: dict[str, Any]) -> pd.DataFrame:
    """``levels`` plus ``batch_size`` (inputs per request, run.json ``settings.batch_size``) and
    ``inputs_throughput_s`` (inputs per second: requests per second times the batch) for a run of whole
    answers (embeddings, rerank, ``--no-stream``); unchanged otherwise."""
    if settings.get("stream", True) is not False or not len(levels) or "request_throughput_req_s" not in levels:
        return levels
    if str(settings.get("dialect")) not in BATCHED and int(settings.get("batch_size") or 1) <= 1:
        return levels  # stream: false chat: one input per request
    batch = int(settings.get("batch_size") or 1)
    levels = levels.copy()
    levels["batch_size"] = batch
    levels["inputs_throughput_s"] = levels["request_throughput_req_s"] * batch
    return levels


def fold_engine_levels(levels: pd.DataFrame, server: pd.DataFrame | None, requests: pd.DataFrame,
                       windows: list[Window]) -> pd.DataFrame:
    """``levels`` plus :data:`ENGINE_LEVEL_COLUMNS` (:func:`tokenswarm.report.engine.engine_levels` over
    ``server``, server_metrics.csv, and ``requests``, requests.csv); a column only when some level has a value
    (the engine's columns need latency histograms in its /metrics)."""
    e = engine.engine_levels(server, requests, windows)
    keep = [c for c in ENGINE_LEVEL_COLUMNS if c in e.columns and e[c].notna().any()]
    if not keep:
        return levels
    return levels.merge(e[["level", *keep]].astype({"level": float}), on="level", how="left")


def failure_messages(req_path: str, top: int = MESSAGES_PER_KIND) -> dict[str, list[tuple[str, int]]]:
    """The servers' own words: per failure kind, its ``top`` most frequent error messages (requests.csv
    ``error``) with their counts, most frequent first; {} when the file cannot be read."""
    try:
        df = pd.read_csv(req_path, usecols=["status", "error"], dtype=str, keep_default_na=False)
    except (OSError, ValueError):
        return {}
    failed = df[~df["status"].isin(["ok", "cancelled"])]
    out: dict[str, list[tuple[str, int]]] = {}
    for (kind, msg), n in failed.groupby(["status", "error"]).size().sort_values(ascending=False).items():
        if len(out.setdefault(str(kind), [])) < top:
            out[str(kind)].append((str(msg), int(n)))
    return out


def expects_cache(settings: dict[str, Any]) -> bool:
    """The run's workload shares prompt prefixes by design (run.json ``settings.workload.kind``)."""
    w = settings.get("workload")
    return isinstance(w, dict) and w.get("kind") in SHARING_WORKLOADS


def tokenizer_check(req_path: str) -> dict[str, Any]:
    """Output tokens by the server's usage vs the local ``--tokenizer``, over ``ok`` requests that have both
    (requests.csv ``output_tokens`` with ``token_source`` usage, and ``output_tokens_tokenizer``). Keys
    ``requests``, ``output_tokens_usage``, ``output_tokens_tokenizer`` (sums), ``difference_pct`` (tokenizer
    minus usage, percent of usage) and ``disagree`` (beyond :data:`TOKENIZER_TOLERANCE_PCT`); {} when no
    request has both."""
    try:
        df = pd.read_csv(req_path, usecols=["status", "token_source", "output_tokens", "output_tokens_tokenizer"],
                         dtype={"status": str, "token_source": str})
    except (ValueError, OSError):
        return {}  # an older requests.csv without the column
    both = df[(df["status"] == "ok") & (df["token_source"] == "usage")].dropna(
        subset=["output_tokens", "output_tokens_tokenizer"])
    if both.empty:
        return {}
    usage, local = float(both["output_tokens"].sum()), float(both["output_tokens_tokenizer"].sum())
    diff_pct = 100.0 * (local - usage) / usage if usage else 0.0
    return {"requests": int(len(both)), "output_tokens_usage": usage, "output_tokens_tokenizer": local,
            "difference_pct": diff_pct, "disagree": abs(diff_pct) > TOKENIZER_TOLERANCE_PCT}


def by_level(levels: pd.DataFrame, col: str) -> dict[str, float]:
    """``{"<level>": value}`` of one levels column, levels without a value left out ({} without the column)."""
    if col not in levels.columns:
        return {}
    d = levels[["level", col]].dropna()
    return {f"{float(r.level):g}": float(getattr(r, col)) for r in d.itertuples()}


def failures_by_level(df: pd.DataFrame) -> dict[float | None, dict[str, int]]:
    """Failed requests of requests.csv (``df``) counted per level and failure kind (``status``)."""
    failed = df[~df["status"].isin(["ok", "cancelled"])]
    out: dict[float | None, dict[str, int]] = {}
    for (level, kind), n in failed.groupby(["level", "status"]).size().items():
        out.setdefault(float(level), {})[str(kind) or "unknown"] = int(n)
    return out


def total_failures(failures: dict[float | None, dict[str, int]]) -> dict[str, int]:
    """Failures per kind over every level, the most frequent kind first."""
    total: dict[str, int] = {}
    for kinds in failures.values():
        for k, n in kinds.items():
            total[k] = total.get(k, 0) + n
    return dict(sorted(total.items(), key=lambda kv: -kv[1]))
