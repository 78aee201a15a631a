"""Rebuild a run folder's derived files from its raw ones: levels.csv, summary.json, report.md,
report.html and plots/*.png.

:func:`analyse` reads a run folder without writing: requests.csv and run.json
when there is a requests.csv (exact figures, :mod:`tokenswarm.report.levels`),
else Locust's ``*_stats_history.csv`` (Locust's rounded percentiles,
:mod:`tokenswarm.report.locustcsv`), else an existing levels.csv. It names the
saturation level and the highest level meeting the SLOs
(:mod:`tokenswarm.report.saturation`). :func:`build` writes every derived file;
``tokenswarm report DIR`` calls it. Settings come from run.json ``settings``
(``warmup_s``, ``slo``, ``slo_attainment``, ``knee_pct``), each optional, with
the defaults of the modules above.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tokenswarm import health, runfolder
from tokenswarm.datasets.files import books_line
from tokenswarm.report import engine, locustcsv, plots, samples, saturation, tables
from tokenswarm.report.document import Document
from tokenswarm.report.errors import ReportError
from tokenswarm.report.levels import (
    CACHE_HIT_FLAG,
    DEFAULT_SLO_ATTAINMENT,
    LATE_BASE_MS,
    LATE_SHARE,
    MIN_COMPLETED,
    MIN_LIFETIMES,
    UNDER_TARGET,
    Window,
    check_slo,
    level_stats,
    load_requests,
    windows_from,
)

SUMMARY_JSON = "summary.json"
SOURCE_REQUESTS, SOURCE_LOCUST, SOURCE_LEVELS = "requests.csv", "locust_csv", "levels.csv"
SLO_LABELS = {"ttft": "TTFT", "tpot": "TPOT", "e2e": "E2E", "itl": "every ITL"}

__all__ = ["SUMMARY_JSON", "Analysis", "ReportError", "analyse", "build", "read_meta", "summary_text"]


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
    client: dict[float, str] = field(default_factory=dict)  # level -> why the load generator was saturated
    tokenizer_check: dict[str, Any] = field(default_factory=dict)  # usage vs --tokenizer output token counts
    turns: pd.DataFrame | None = None  # multi-turn: TTFT by turn
    trace: dict[str, Any] = field(default_factory=dict)  # trace replay: actual vs scheduled sends
    bench: pd.DataFrame | None = None  # vLLM bench results saved beside the run (peers/), per concurrency
    messages: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # failure kind -> top server messages

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

    def summary(self) -> dict[str, Any]:
        """The machine-readable summary (summary.json)."""
        lv = self.levels
        peak = None
        if len(lv) and "output_throughput" in lv.columns and lv["output_throughput"].notna().any():
            i = lv["output_throughput"].astype(float).idxmax()
            peak = {"level": float(lv.loc[i, "level"]), "output_throughput": float(lv.loc[i, "output_throughput"])}
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
            "peak_output_throughput": peak,
            "under_target_levels": saturation.flagged(lv, "under_target"),
            "late_levels": saturation.flagged(lv, "late"),
            "short_window_levels": saturation.flagged(lv, "short_window"),
            "served_from_cache_levels": saturation.flagged(lv, "served_from_cache"),
            "failed_pct_by_level": _by_level(lv, "failed_pct"),
            "client_saturated_levels": {f"{k:g}": v for k, v in sorted(self.client.items())},
            "tokenizer_check": self.tokenizer_check or None,
            "cache_hit_ratio_by_level": _by_level(lv, "cache_hit_ratio"),
            "ttft_by_turn": self.turns.to_dict("records") if self.turns is not None else None,
            "trace_replay": self.trace or None,
            "warmup_s": self.warmup_s,
            "failures_by_kind": _total_failures(self.failures),
            "failures_by_level": {f"{k:g}": v for k, v in sorted(self.failures.items()) if k is not None},
            "lost_workers": self.meta.get("lost_workers") or [],
        }


def read_meta(run_dir: str) -> dict[str, Any]:
    """run.json as a dict ({} when absent); ReportError naming the file when it is not JSON."""
    try:
        meta = runfolder.read_run_json(run_dir)
    except (OSError, ValueError) as e:
        raise ReportError(f"{os.path.join(run_dir, runfolder.RUN_JSON)}: not readable JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ReportError(f"{os.path.join(run_dir, runfolder.RUN_JSON)}: expected a JSON object")
    return meta


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


def _warmups(s: dict[str, Any]) -> dict[float, float] | None:
    """Per-level warm-ups from run.json (levels of different lengths), keyed by level."""
    raw, levels = s.get("warmups_s"), s.get("levels") or s.get("rates")
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
        warmups = _warmups(s)
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
    client: dict[float, str] = {}
    bench: pd.DataFrame | None = None
    messages: dict[str, list[tuple[str, int]]] = {}
    tok_check: dict[str, Any] = {}
    turns: pd.DataFrame | None = None
    trace: dict[str, Any] = {}
    if prefer_levels_csv and os.path.exists(lv_path) and _newest(lv_path, req_path, os.path.join(
            run_dir, runfolder.RUN_JSON)):
        levels, source, source_file = _read_levels_csv(lv_path), SOURCE_LEVELS, lv_path
    elif os.path.exists(req_path):
        df = load_requests(req_path)
        windows = windows_from(df, meta.get("timeline"), warmup_s, warmups, budget=bool(s.get("requests")))
        try:
            levels = level_stats(df, windows, slo=slo, mode=mode, slo_attainment=target,
                                 expect_cache=expects_cache(s))
        except ReportError as e:  # a bad itl_ms cell: say which file
            raise ReportError(f"{req_path}: {e}") from None
        failures = _failures_by_level(df)
        levels, client = samples.fold(levels, run_dir, windows)
        levels = _fold_engine(levels, run_dir, df, windows)
        bench = engine.read_vllm_bench(os.path.join(run_dir, engine.PEERS_DIR))
        messages = failure_messages(req_path) if failures else {}
        tok_check = tokenizer_check(req_path)
        turns = samples.turn_table(req_path)
        trace = samples.trace_check(req_path) if (s.get("workload") or {}).get("kind") == "trace" else {}
        source, source_file = SOURCE_REQUESTS, req_path
    else:
        hist = locustcsv.find_history(run_dir)
        if hist is not None:
            levels = locustcsv.levels_from_history(hist)
            fails = locustcsv.failures_by_kind(hist)
            failures = {None: fails} if fails else {}
            source, source_file, mode = SOURCE_LOCUST, hist, "concurrency"
        elif os.path.exists(lv_path):
            levels, source, source_file = _read_levels_csv(lv_path), SOURCE_LEVELS, lv_path
        else:
            raise ReportError(f"{run_dir} is not a tokenswarm run folder: it has no requests.csv, "
                              "*_stats_history.csv or levels.csv")
    if len(levels) and "mode" in levels.columns and str(levels["mode"].iloc[0]) in ("concurrency", "rate"):
        mode = str(levels["mode"].iloc[0])
    knee = saturation.find_knee(levels, knee_pct)
    return Analysis(run_dir, meta, levels, source, source_file, mode, knee, knee_pct, slo, target, warmup_s,
                    failures, client, tok_check, turns, trace, bench if bench is not None and len(bench) else None,
                    messages)


#: engine_levels' columns that join levels.csv: the engine's opinion beside ours, and the streams' framing
ENGINE_LEVEL_COLUMNS = ("engine_ttft_mean_ms", "engine_e2e_mean_ms", "engine_queue_mean_ms", "engine_itl_mean_ms",
                        "engine_tpot_mean_ms", "client_ttft_mean_ms", "outside_engine_ttft_ms",
                        "outside_engine_e2e_ms", "output_events_mean", "output_tokens_per_event", "coalesced_share")


def _fold_engine(levels: pd.DataFrame, run_dir: str, df: pd.DataFrame, windows: list[Window]) -> pd.DataFrame:
    """levels plus :data:`ENGINE_LEVEL_COLUMNS` (:func:`tokenswarm.report.engine.engine_levels`); the engine's
    columns only when its /metrics had latency histograms."""
    server = engine.read_server_metrics(os.path.join(run_dir, engine.SERVER_CSV))
    e = engine.engine_levels(server, df, windows)
    keep = [c for c in ENGINE_LEVEL_COLUMNS if c in e.columns and e[c].notna().any()]
    if not keep:
        return levels
    return levels.merge(e[["level", *keep]].astype({"level": float}), on="level", how="left")


def opinions_section(a: Analysis) -> tuple[str, tuple[list[str], list[list[str]]]] | None:
    """The three opinions of each level's latency, side by side: the client's records, the engine's own
    histograms over the same window (and the same requests), and vLLM bench run at the same concurrency
    beside the run (peers/). None when the run has neither the engine's histograms nor a peer's results."""
    lv = a.levels
    has_engine = "engine_ttft_mean_ms" in lv.columns
    if not has_engine and a.bench is None:
        return None
    bench = a.bench.set_index("concurrency") if a.bench is not None else None
    levels = sorted(set(lv["level"].astype(float)) | (set(bench.index) if bench is not None else set()))
    by_level = lv.set_index(lv["level"].astype(float))

    def get(df: pd.DataFrame | None, level: float, col: str) -> Any:
        return df.loc[level, col] if df is not None and level in df.index and col in df.columns else None

    heads = [tables.LEVEL_HEADING[a.mode], "TTFT mean (ms): ours", "engine", "outside engine",
             "E2E mean (ms): ours", "engine", "Engine queue (ms)", "Events / request", "Coalesced",
             "Output tok/s: ours"]
    if bench is not None:
        heads += ["vLLM bench TTFT mean (ms)", "engine during it", "vLLM bench E2E mean (ms)",
                  "vLLM bench output tok/s", "vLLM bench events / request"]
    rows = []
    for level in levels:
        ours_ttft = get(by_level, level, "client_ttft_mean_ms")
        ours_ttft = ours_ttft if ours_ttft is not None and ours_ttft == ours_ttft else get(by_level, level, "ttft_mean")
        row = [f"{level:g}", tables.cell(ours_ttft, "{:,.1f}"),
               tables.cell(get(by_level, level, "engine_ttft_mean_ms"), "{:,.1f}"),
               tables.cell(get(by_level, level, "outside_engine_ttft_ms"), "{:+,.1f}"),
               tables.cell(get(by_level, level, "e2e_mean"), "{:,.1f}"),
               tables.cell(get(by_level, level, "engine_e2e_mean_ms"), "{:,.1f}"),
               tables.cell(get(by_level, level, "engine_queue_mean_ms"), "{:,.1f}"),
               tables.cell(get(by_level, level, "output_events_mean"), "{:.1f}"),
               tables.cell(get(by_level, level, "coalesced_share"), "{:.1%}"),
               tables.cell(get(by_level, level, "output_throughput"), "{:,.0f}")]
        if bench is not None:
            row += [tables.cell(get(bench, level, "bench_ttft_mean_ms"), "{:,.1f}"),
                    tables.cell(get(bench, level, "bench_engine_ttft_mean_ms"), "{:,.1f}"),
                    tables.cell(get(bench, level, "bench_e2e_mean_ms"), "{:,.1f}"),
                    tables.cell(get(bench, level, "bench_output_throughput"), "{:,.0f}"),
                    tables.cell(get(bench, level, "bench_output_events_mean"), "{:.1f}")]
        rows.append(row)
    intro = ("Each level's latency as three witnesses saw it: tokenswarm's records; the engine's own histograms "
             "(its /metrics, scraped at the window's edges: mean = the difference of each histogram's sum over "
             "the difference of its count, over the requests whose first or last token fell in that window, and "
             "ours over the same requests); and, where it ran beside this run, vLLM's `vllm bench serve` at the "
             "same concurrency (all users at once, 3 prompts per user). *Outside engine* is our TTFT minus the "
             "engine's: network, the API server's HTTP and streaming work, the client. *Coalesced*: the share of "
             "requests whose tokens came in two events or fewer, which hides TTFT and ITL from every client.")
    return intro, (heads, rows)


MESSAGES_PER_KIND = 3


def failure_messages(req_path: str, top: int = MESSAGES_PER_KIND) -> dict[str, list[tuple[str, int]]]:
    """The servers' own words: per failure kind, its most frequent error messages with their counts."""
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


SHARING_WORKLOADS = ("shared-prefix", "multi-turn", "trace")  # prompts share prefixes by design


def expects_cache(settings: dict[str, Any]) -> bool:
    """The run's workload shares prompt prefixes by design (run.json ``settings.workload.kind``)."""
    w = settings.get("workload")
    return isinstance(w, dict) and w.get("kind") in SHARING_WORKLOADS


TOKENIZER_TOLERANCE = 0.02  # usage and the local tokenizer may differ this much before the report says so


def tokenizer_check(req_path: str) -> dict[str, Any]:
    """Output tokens by the server's usage vs the local --tokenizer, over requests that have both."""
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
    diff = (local - usage) / usage if usage else 0.0
    return {"requests": int(len(both)), "usage_tokens": usage, "tokenizer_tokens": local, "difference": diff,
            "disagree": abs(diff) > TOKENIZER_TOLERANCE}


def _by_level(levels: pd.DataFrame, col: str) -> dict[str, float]:
    if col not in levels.columns:
        return {}
    d = levels[["level", col]].dropna()
    return {f"{float(r.level):g}": float(getattr(r, col)) for r in d.itertuples()}


def _newest(path: str, *others: str) -> bool:
    t = os.path.getmtime(path)
    return all(not os.path.exists(o) or os.path.getmtime(o) <= t for o in others)


def _read_levels_csv(path: str) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise ReportError(f"{path}: cannot read levels.csv ({e})") from None
    if "level" not in df.columns:
        raise ReportError(f"{path}: column 'level' is missing: not a tokenswarm levels.csv")
    return df


def _failures_by_level(df: pd.DataFrame) -> dict[float | None, dict[str, int]]:
    failed = df[~df["status"].isin(["ok", "cancelled"])]
    out: dict[float | None, dict[str, int]] = {}
    for (level, kind), n in failed.groupby(["level", "status"]).size().items():
        out.setdefault(float(level), {})[str(kind) or "unknown"] = int(n)
    return out


def _total_failures(failures: dict[float | None, dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for kinds in failures.values():
        for k, n in kinds.items():
            total[k] = total.get(k, 0) + n
    return dict(sorted(total.items(), key=lambda kv: -kv[1]))


# -- writing ---------------------------------------------------------------------------------
def build(run_dir: str, warmup_s: float | None = None, with_plots: bool = True) -> pd.DataFrame:
    """Write levels.csv, summary.json, report.md, report.html and plots/*.png (for two levels or more) into
    ``run_dir``; returns the levels table. ``warmup_s`` overrides run.json's ``settings.warmup_s``."""
    a = analyse(run_dir, warmup_s)
    if a.source != SOURCE_LEVELS:
        a.levels.to_csv(os.path.join(run_dir, runfolder.LEVELS_CSV), index=False, float_format="%.4f")
    runfolder.write_json(os.path.join(run_dir, SUMMARY_JSON), a.summary())
    plot_paths: list[str] = []
    if with_plots and len(a.levels) > 1:  # a single level has no curve to draw
        plot_paths = plots.sweep_plots(a.levels, os.path.join(run_dir, runfolder.PLOTS), a.knee.level, a.mode)
        server = samples.server_plot(a.levels, os.path.join(run_dir, runfolder.PLOTS), a.mode)
        if server:
            plot_paths.append(server)
    doc = report_document(a, plot_paths)
    with open(os.path.join(run_dir, runfolder.REPORT_MD), "w", encoding="utf-8") as fh:
        fh.write(doc.markdown())
    with open(os.path.join(run_dir, runfolder.REPORT_HTML), "w", encoding="utf-8") as fh:
        fh.write(doc.html())
    return a.levels


def level_word(mode: str) -> str:
    return "rate" if mode == "rate" else "concurrency"


def _fmt_level(level: float, mode: str) -> str:
    return f"{level:g} req/s" if mode == "rate" else f"{level:g}"


def _levels_list(levels: list[float], mode: str) -> str:
    return ", ".join(f"{x:g}" for x in levels) + (" req/s" if mode == "rate" else "")


def saturation_line(a: Analysis) -> str:
    k = a.knee
    if k.level is None:
        return f"**Saturation:** not found: {k.reason}."
    rise = (f"by up to {k.later_ttft_rise_pct:,.0f} %" if k.later_ttft_rise_pct is not None
            and k.later_ttft_rise_pct != float("inf") else "from 0")
    return (f"**Saturation:** {level_word(a.mode)} {_fmt_level(k.level, a.mode)}, at "
            f"{k.output_throughput:,.0f} output tok/s: no later level adds {a.knee_pct:g} % output (the best "
            f"{k.later_gain_pct:+.1f} %) while TTFT p99 rises {rise} (from {k.ttft_p99_ms:,.0f} ms).")


def slo_line(a: Analysis) -> str:
    if not a.slo:
        return ("**SLOs:** none given (run.json `settings.slo`), so no goodput, attainment or "
                "highest level meeting them.")
    limits = ", ".join(f"{SLO_LABELS[k]} ≤ {v:g} ms" for k, v in a.slo.items())
    rule = (f"a level meets them when at least {a.slo_attainment:.1%} of its requests do and none failed")
    best = a.max_level_meeting_slo
    verdict = (f"highest level meeting them: **{_fmt_level(best, a.mode)}**" if best is not None
               else "**no level meets them**")
    return f"**SLOs:** {limits}; {rule}; {verdict}."


def flag_items(a: Analysis) -> list[str]:
    """The report's flags, each with what it means and what to do."""
    items = []
    under = saturation.flagged(a.levels, "under_target")
    if under:
        lv = a.levels.set_index("level")
        held = "; ".join(f"{x:g}: {lv.loc[x, 'achieved_concurrency']:.1f} in flight" for x in under)
        items.append(f"**Under target** ({held}): these levels held fewer than {UNDER_TARGET:.0%} of their target "
                     "requests in flight, so the client, not the server, set the pace and their latencies understate "
                     "what the server would show at that load. Add workers (`--workers N`) or load machines, check "
                     "the client's CPU, or lengthen the levels if requests are long next to them.")
    late = saturation.flagged(a.levels, "late")
    if late:
        lv = a.levels.set_index("level")
        lags = "; ".join(f"{x:g} req/s: p99 {lv.loc[x, 'send_lag_p99_ms']:.1f} ms "
                         f"(limit {lv.loc[x, 'late_threshold_ms']:.1f} ms)" for x in late)
        items.append(f"**Late sends** ({lags}): the client sent these levels' requests behind schedule (limit: "
                     f"{LATE_BASE_MS:g} ms + {LATE_SHARE:.0%} of the mean gap between arrivals), so the offered rate "
                     "was lower than asked. Add workers (`--workers N`) or load machines, or check the client's CPU.")
    if a.client:
        why = "; ".join(f"{lvl:g}: {reason}" for lvl, reason in sorted(a.client.items()))
        items.append(f"**Client saturated** ({why}): a load-generating process ran at or above "
                     f"{health.CPU_SATURATED_PCT:g} % of a core or its event loop lagged "
                     f"{health.LAG_SATURATED_MS:g} ms or more (p99), so these levels' latencies include the client's "
                     "own delay: "
                     f"{health.ADVICE}. client_health.csv has the samples.")
    if "rate_limited_pct" in a.levels.columns:
        lv = a.levels[a.levels["rate_limited_pct"].fillna(0) > 0]
        if len(lv):
            held = "; ".join(f"{_fmt_level(float(r.level), a.mode)}: {r.rate_limited_pct:.1f} % of requests, users "
                             f"waiting {tables.cell(getattr(r, 'backoff_share', float('nan')), '{:.0%}')} of the time"
                             for r in lv.itertuples())
            items.append(f"**Rate-limited** ({held}): the server answered HTTP 429 or 503 and users waited what its "
                         "Retry-After said (or backed off) before their next request, so these levels offered less "
                         "load than their target: read them as the gateway's limit, not the engine's. "
                         "`--no-backoff` sends at once instead; `--max-backoff` caps the wait.")
    tc = a.tokenizer_check
    if tc.get("disagree"):
        items.append(f"**Token counts disagree**: over {tc['requests']} requests the server's usage says "
                     f"{tc['usage_tokens']:,.0f} output tokens and the local tokenizer {tc['tokenizer_tokens']:,.0f} "
                     f"({tc['difference']:+.1%}, more than {TOKENIZER_TOLERANCE:.0%}): check that --tokenizer is the "
                     "served model's tokenizer (the throughput figures use the server's usage).")
    short = saturation.flagged(a.levels, "short_window")
    if short:
        lv = a.levels.set_index("level")
        held = "; ".join(f"{_fmt_level(x, a.mode)}: {tables.cell(lv.loc[x, 'window_lifetimes'], '{:.1f}')} "
                         f"lifetimes, {tables.cell(lv.loc[x, 'window_s'], '{:.0f}')} s" for x in short)
        items.append(f"**Short window** ({held}; marked `*` in the table): these levels' windows held fewer than "
                     f"{MIN_LIFETIMES:g} request lifetimes (mean E2E) or fewer than {MIN_COMPLETED} completed "
                     "requests, so their throughput still carries the ramp and the window's edges and their "
                     "percentiles rest on few requests (measured on vLLM at 1024 streams: 30 s levels of 16 s "
                     "requests read 8,936 tok/s, 100 s levels 9,440). Lengthen them: `--level-duration` or "
                     "`--level-requests` take one value per level.")
    cached = saturation.flagged(a.levels, "served_from_cache")
    if cached:
        lv = a.levels.set_index("level")
        ratios = "; ".join(f"{_fmt_level(x, a.mode)}: {lv.loc[x, 'cache_hit_ratio']:.0%}" for x in cached)
        seed = a.settings.get("seed")
        items.append(f"**Served from the prefix cache** ({ratios} of prompt tokens; marked `^`): the workload "
                     f"asked for unique prompts, yet the engine served at least {CACHE_HIT_FLAG:.0%} of their "
                     "tokens, each prompt's own part included, from its prefix cache, so TTFT reads lower than "
                     "fresh prompts would give. The usual "
                     f"cause is a repeated seed (this run's: {seed}): the same prompts again on the same engine. "
                     "Leave out `--seed` (a fresh one per run) or restart the engine.")
    if a.source == SOURCE_REQUESTS and "failed" in a.levels.columns and a.levels["failed"].sum() > 0:
        bad = a.levels[a.levels["failed"] > 0]
        parts = []
        for r in bad.itertuples():
            kinds = a.failures.get(float(r.level), {})
            what = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
            pct = getattr(r, "failed_pct", float("nan"))
            parts.append(f"{_fmt_level(r.level, a.mode)}: {tables.cell(pct, '{:.1f}')} % ({int(r.failed)}"
                         + (f": {what}" if what else "") + ")")
        items.append("**Failures** at " + "; ".join(parts) + ". Failed % is failed / (ok + failed) requests of "
                     "the level; see Failures by kind below. A level with failures never meets the SLOs.")
    return items


def lost_workers_line(a: Analysis) -> str:
    """run.json ``lost_workers`` (id, lost_at, records, lost_in_flight) as one sentence; '' when none."""
    lost = a.meta.get("lost_workers")
    if not isinstance(lost, list) or not lost:
        return ""
    timeline = a.meta.get("timeline") if isinstance(a.meta.get("timeline"), list) else []
    parts = []
    for w in lost:
        if not isinstance(w, dict):
            continue
        at = w.get("lost_at")
        level = next((seg.get("level") for seg in reversed(timeline) if isinstance(seg, dict) and at is not None
                      and isinstance(seg.get("start"), (int, float)) and seg["start"] <= at), None)
        where = f" during {level_word(a.mode)} {_fmt_level(float(level), a.mode)}" if level is not None else ""
        parts.append(f"`{w.get('id')}`{where} ({w.get('records', 0)} records kept, "
                     f"{w.get('lost_in_flight', 0)} requests lost with it)")
    if not parts:
        return ""
    return (f"**{len(parts)} worker{'s' if len(parts) != 1 else ''} lost:** " + "; ".join(parts) +
            ". Levels after that ran with fewer load generators. The master grants every request before a worker "
            "sends it, so the requests lost with a worker are exact: granted to it, with no record shipped (in "
            "flight when it died, or finished and not yet shipped). They count as failed in the run's failure "
            "ratio but have no row in requests.csv.")


def _target_line(s: dict[str, Any]) -> str:
    """``Engine `vllm` at `URL`, model `M`, ...`` from whichever settings the run recorded."""
    parts = []
    if s.get("engine"):
        where = f"{s.get('base_url') or ''}{s.get('endpoint') or ''}"
        parts.append(f"Engine `{s['engine']}`" + (f" at `{where}`" if where else ""))
    for key, label in (("model", "model"), ("dialect", "dialect"), ("max_tokens", "max_tokens"),
                       ("input_len", "input length")):
        if s.get(key) not in (None, ""):
            parts.append(f"{label} `{s[key]}`" if key == "model" else f"{label} {s[key]}")
    return (", ".join(parts) + ".") if parts else ""


def report_document(a: Analysis, plot_paths: list[str]) -> Document:
    """report.md / report.html as one :class:`Document`."""
    s = a.settings
    name = str(s.get("run_name") or "")
    doc = Document(f"tokenswarm report: {name}" + (f" ({a.run_id})" if name and name not in a.run_id else "")
                   if name else f"tokenswarm report: {a.run_id}")
    target = _target_line(s)
    if target:
        doc.para(target)
    lv = [float(x) for x in a.levels["level"]] if "level" in a.levels.columns else []
    kind = "Request-rate sweep" if a.mode == "rate" else "Concurrency sweep"
    if len(lv) == 1:
        kind = "Request-rate run" if a.mode == "rate" else "Concurrency run"
    desc = f"{kind}, {len(lv)} level{'s' if len(lv) != 1 else ''} ({_levels_list(lv, a.mode)})"
    if s.get("level_durations_s"):
        desc += ", lasting " + ", ".join(f"{float(d):g}" for d in s["level_durations_s"]) + " s"
    elif s.get("level_duration_s"):
        desc += f", {float(s['level_duration_s']):g} s each"
    if s.get("level_requests_each"):
        desc += ", each ending after " + "/".join(str(n) for n in s["level_requests_each"]) + " requests"
    elif s.get("level_requests"):
        desc += f", {s['level_requests']} requests each"
    if s.get("warmups_s") and _warmups(s):
        desc += "; the first 20 % of each level is warm-up, left out"
    elif a.warmup_s:
        desc += f"; the first {a.warmup_s:g} s of each level are warm-up, left out"
    workers = a.meta.get("workers")
    if isinstance(workers, list) and workers:
        desc += f"; {len(workers)} worker{'s' if len(workers) != 1 else ''}"
    doc.para(desc + ".")
    books = a.meta.get("dataset_books")
    if isinstance(books, dict) and books.get("records") is not None:
        doc.para(f"Dataset {books_line(books)}.")
    if s.get("seed") is not None:
        drawn = ("drawn for this run: fresh prompts" if s.get("seed_drawn") else "given with `--seed`")
        doc.para(f"Prompt seed {s['seed']} ({drawn}); `--seed {s['seed']}` sends these prompts again.")
    if not a.complete:
        planned = s.get("rates" if a.mode == "rate" else "levels")
        missing = [float(x) for x in planned if float(x) not in lv] if isinstance(planned, list) else []
        extra = f" Levels planned but not reached: {_levels_list(missing, a.mode)}." if missing else ""
        doc.warn("**This run did not complete** (interrupted or crashed): figures cover what was measured, and "
                 f"the last level may be cut short.{extra}")
    lost = lost_workers_line(a)
    if lost:
        doc.warn(lost)
    if a.source == SOURCE_LOCUST:
        doc.warn(f"Built from Locust's CSV files (`{os.path.basename(a.source_file)}`; there is no requests.csv): "
                 "percentiles are **Locust's rounded ones** (about two significant figures, over its last ~10 s "
                 "at the end of each level), requests count in the level where they completed, throughput uses "
                 "1-second timestamps, and input tokens, ITL and achieved concurrency are unknown (output tokens too, "
                 "in files whose E2E size is bytes received). Run with "
                 "tokenswarm's run folder (requests.csv) for exact figures.")
    elif a.source == SOURCE_LEVELS:
        doc.warn("Built from an existing levels.csv (no requests.csv or Locust history in this folder).")
    doc.heading("Results")
    doc.table(*tables.rows(a.levels, tables.PUBLISHED, a.mode))
    for line in tables.legend(a.levels):
        doc.para(f"`{line[0]}` {line[2:]}")
    peak = a.summary()["peak_output_throughput"]
    lines = [saturation_line(a)] if len(a.levels) > 1 else []
    lines.append(slo_line(a))
    if peak:
        lines.append(f"**Peak output throughput:** {peak['output_throughput']:,.1f} tok/s at {level_word(a.mode)} "
                     f"{_fmt_level(peak['level'], a.mode)}.")
    doc.bullets(lines)
    flags = flag_items(a)
    if flags:
        doc.heading("Flags")
        doc.bullets(flags)
    doc.heading("Per-level detail")
    doc.para("Latency in ms; percentiles " + ("exact, from every request in requests.csv." if a.source !=
                                              SOURCE_LOCUST else "rounded by Locust."))
    doc.table(*tables.rows(a.levels, tables.DETAIL, a.mode, drop_empty=True))
    cache = _by_level(a.levels, "cache_hit_ratio")
    if cache:
        lv = a.levels.set_index("level")
        parts = "; ".join(f"{_fmt_level(float(k), a.mode)}: {v:.0%} of prompt tokens, TTFT p50 "
                          f"{tables.cell(lv.loc[float(k), 'ttft_p50_cache_hit'], '{:.1f}')} ms with a hit vs "
                          f"{tables.cell(lv.loc[float(k), 'ttft_p50_cache_miss'], '{:.1f}')} ms without"
                          for k, v in cache.items())
        doc.heading("Prefix cache")
        doc.para("Prompt tokens the server served from its prefix cache (usage `cached_tokens`), per level: "
                 + parts + ". (A hit is a request with any cached tokens; `-`: no request of that kind.)")
    if a.turns is not None:
        doc.heading("TTFT by turn")
        doc.para("Multi-turn conversations: each turn sends the whole history, so later turns are longer and "
                 "have more of it cached.")
        doc.table(["Turn", "Requests", "TTFT p50 (ms)", "TTFT p99 (ms)", "Mean input tokens", "Cache hit"],
                  [[str(int(r.turn)), str(int(r.requests)), tables.cell(r.ttft_p50, "{:.1f}"),
                    tables.cell(r.ttft_p99, "{:.1f}"), tables.cell(r.mean_input_tokens, "{:.0f}"),
                    tables.cell(r.cache_hit_ratio, "{:.0%}")] for r in a.turns.itertuples()])
    if a.trace:
        t = a.trace
        w = s.get("workload") or {}
        doc.heading("Trace replay")
        doc.para(f"Replayed {t['requests']} requests from `{os.path.basename(str(w.get('trace', '')))}` at speed "
                 f"{w.get('speed', 1):g}: each was sent {t['send_lag_p50_ms']:.1f} ms (p50) / "
                 f"{t['send_lag_p99_ms']:.1f} ms (p99) after its scheduled time (max {t['send_lag_max_ms']:.1f} "
                 f"ms); gaps between arrivals differ from the trace's by {t['gap_error_p50_ms']:.2f} ms (p50) / "
                 f"{t['gap_error_p99_ms']:.2f} ms (p99).")
    total = _total_failures(a.failures)
    if total:
        doc.heading("Failures by kind")
        kinds = list(total)
        if None in a.failures:
            doc.table(["Kind", "Count"], [[k, str(total[k])] for k in kinds], left=1)
        else:
            body = [[f"{lvl:g}", *(str(a.failures[lvl].get(k, 0)) for k in kinds), str(sum(a.failures[lvl].values()))]
                    for lvl in sorted(x for x in a.failures if x is not None)]
            body.append(["all", *(str(total[k]) for k in kinds), str(sum(total.values()))])
            doc.table([tables.LEVEL_HEADING[a.mode], *kinds, "Total"], body)
        if a.messages:
            doc.para("What the server said, most frequent first (requests.csv `error`, secrets scrubbed):")
            doc.table(["Kind", "Count", "Message"], [[kind, str(n), msg or "-"] for kind, msgs in a.messages.items()
                                                     for msg, n in msgs], left=3)
    opinions = opinions_section(a)
    if opinions:
        doc.heading("Three opinions per level")
        doc.para(opinions[0])
        doc.table(*opinions[1])
    if plot_paths:
        doc.heading("Plots")
        captions = {"throughput.png": "Output throughput", "ttft.png": "TTFT p50 / p99",
                    "tpot.png": "TPOT p50 / p99", "latency_vs_throughput.png": "Latency vs throughput",
                    "server_metrics.png": "Engine metrics: running and waiting requests, KV cache"}
        for p in plot_paths:
            name = os.path.basename(p)
            doc.image(p, f"{runfolder.PLOTS}/{name}", captions.get(name, name))
    doc.heading("How these figures are computed")
    doc.bullets([
        "TTFT: first output-carrying event minus send; TPOT: (E2E - TTFT) / (output tokens - 1); ITL: gaps "
        "between output events; E2E: last output event minus send. Client clock, per request.",
        "Window: from the level's first request sent plus the warm-up to the level's end. Every rate (Req/s, "
        "input and output tok/s, goodput) counts each ok request by the share of its span, first to last token, "
        "inside the window, so for fixed lengths Req/s x mean length = token rate; per window second.",
        f"Failed %: failed / (ok + failed) requests of the level. A level whose window held fewer than "
        f"{MIN_LIFETIMES:g} request lifetimes (mean E2E) or {MIN_COMPLETED} completed requests is marked `*`.",
        f"Saturation: the lowest level beyond which output throughput never grows by {a.knee_pct:g} % or more while "
        f"TTFT p99 rises by more than {saturation.TTFT_RISE_PCT:g} %.",
        "Achieved concurrency: time-averaged requests in flight in the window; a closed-loop level under "
        f"{UNDER_TARGET:.0%} of its target is flagged.",
    ])
    return doc


def summary_text(run_dir: str) -> str:
    """The published-style table of a built run folder as aligned text, then its saturation and SLO lines."""
    path = os.path.join(run_dir, runfolder.LEVELS_CSV)
    if not os.path.exists(path):
        return ""
    levels = pd.read_csv(path)
    out = tables.text(levels)
    for line in tables.legend(levels):
        out += "\n" + line
    spath = os.path.join(run_dir, SUMMARY_JSON)
    if len(levels) > 1 and os.path.exists(spath):
        try:
            with open(spath, encoding="utf-8") as fh:
                summ = json.load(fh)
        except (OSError, ValueError):
            return out
        mode = str(summ.get("mode") or tables.mode_of(levels))
        sat = summ.get("saturation") or {}
        if summ.get("saturation_level") is not None:
            out += f"\n\nSaturation: {level_word(mode)} {_fmt_level(summ['saturation_level'], mode)}"
        else:
            out += f"\n\nSaturation: not found ({sat.get('reason', 'no knee')})"
        if summ.get("slo"):
            best = summ.get("max_level_meeting_slo")
            out += ("\nHighest level meeting the SLOs: " + (_fmt_level(best, mode) if best is not None else "none"))
        for key, word in (("under_target_levels", "under target"), ("late_levels", "late")):
            if summ.get(key):
                out += f"\nFlagged {word}: {_levels_list(summ[key], mode)} (see report.md)"
    if os.path.exists(spath):
        try:
            with open(spath, encoding="utf-8") as fh:
                sat_levels = json.load(fh).get("client_saturated_levels") or {}
        except (OSError, ValueError):
            sat_levels = {}
        if sat_levels:
            out += (f"\nWarning: the load generator was saturated at level {', '.join(sat_levels)} "
                    f"({'; '.join(sat_levels.values())}): those timings include client delay; {health.ADVICE}")
    return out
