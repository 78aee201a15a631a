"""The report as text: report.md and report.html (:func:`report_document`) and the CLI's summary (:func:`summary_text`).

Everything here composes words and tables from numbers already computed
(:class:`tokenswarm.report.analysis.Analysis`, a built folder's levels.csv and
summary.json); nothing here computes a figure. Sections: the header (date,
versions, command line, client machine, engine: :mod:`tokenswarm.report.provenance`), the run's target and
shape, warnings (incomplete run, lost workers, a report built from Locust's
CSV files), the published table with its marks, the saturation and SLO
verdicts, the flags with what each means and what to do, per-level detail,
prefix cache, TTFT by turn, trace replay, failures by kind with the server's
messages, the three opinions per level (client, engine, vLLM bench), plots,
and how the figures are computed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import pandas as pd

from tokenswarm import runfolder, selfcheck
from tokenswarm.datasets.files import counts_line
from tokenswarm.report import engine, intervals, provenance, saturation, tables
from tokenswarm.report.analysis import (
    SOURCE_LEVELS,
    SOURCE_LOCUST,
    SOURCE_REQUESTS,
    SUMMARY_JSON,
    TOKENIZER_TOLERANCE_PCT,
    Analysis,
    by_level,
    level_warmups,
    total_failures,
)
from tokenswarm.report.document import Document
from tokenswarm.report.errors import ReportError
from tokenswarm.report.levels import (
    CACHE_HIT_FLAG,
    LATE_BASE_MS,
    LATE_SHARE,
    LOCKSTEP_DISPERSION,
    MIN_COMPLETED,
    MIN_LIFETIMES,
    UNDER_TARGET,
)
from tokenswarm.report.readers import read_json_object, read_levels_csv

SLO_LABELS = {"ttft": "TTFT", "tpot": "TPOT", "e2e": "E2E", "itl": "every ITL"}
PLOT_CAPTIONS = {"throughput.png": "Output throughput", "ttft.png": "TTFT p50 / p99",
                 "tpot.png": "TPOT p50 / p99", "latency_vs_throughput.png": "Latency vs throughput",
                 "interactivity.png": "Interactivity vs throughput: per-user output tok/s (1000 / TPOT p50) "
                                      "against total output tok/s, one point per level",
                 "server_metrics.png": "Engine metrics: running and waiting requests, KV cache",
                 "gpu.png": "What the GPU spent: power (W) and J per output token per level"}


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
    ours = lv.set_index(lv["level"].astype(float))

    def get(df: pd.DataFrame | None, level: float, col: str) -> Any:
        return df.loc[level, col] if df is not None and level in df.index and col in df.columns else None

    def matched(level: float, col: str, fallback: str) -> Any:
        """Ours over the engine's requests (``col``), else over the level's sample (a run without its histograms)."""
        v = get(ours, level, col)
        return v if v is not None and v == v else get(ours, level, fallback)

    heads = [tables.LEVEL_HEADING[a.mode], "TTFT mean (ms): ours", "engine", "outside engine",
             "E2E mean (ms): ours", "engine", "Engine queue (ms)", "Events / request", "Coalesced",
             "Output tok/s: ours"]
    peer = "vLLM bench"
    if bench is not None:
        tools = list(dict.fromkeys(bench["bench_tool"])) if "bench_tool" in bench.columns else ["vllm"]
        peer = " / ".join(engine.BENCH_TOOLS.get(str(t), str(t)) for t in tools)
        heads += [f"{peer} TTFT mean (ms)", "engine during it", f"{peer} E2E mean (ms)",
                  f"{peer} output tok/s", f"{peer} events / request"]
    rows = []
    for level in levels:
        row = [f"{level:g}", tables.cell(matched(level, "client_ttft_mean_ms", "ttft_mean_ms"), "{:,.1f}"),
               tables.cell(get(ours, level, "engine_ttft_mean_ms"), "{:,.1f}"),
               tables.cell(get(ours, level, "outside_engine_ttft_ms"), "{:+,.1f}"),
               tables.cell(matched(level, "client_e2e_mean_ms", "e2e_mean_ms"), "{:,.1f}"),
               tables.cell(get(ours, level, "engine_e2e_mean_ms"), "{:,.1f}"),
               tables.cell(get(ours, level, "engine_queue_mean_ms"), "{:,.1f}"),
               tables.cell(get(ours, level, "output_events_mean"), "{:.1f}"),
               tables.cell(get(ours, level, "coalesced_pct"), "{:.1f}%"),
               tables.cell(get(ours, level, "output_throughput_tok_s"), "{:,.0f}")]
        if bench is not None:
            row += [tables.cell(get(bench, level, "bench_ttft_mean_ms"), "{:,.1f}"),
                    tables.cell(get(bench, level, "bench_engine_ttft_mean_ms"), "{:,.1f}"),
                    tables.cell(get(bench, level, "bench_e2e_mean_ms"), "{:,.1f}"),
                    tables.cell(get(bench, level, "bench_output_throughput_tok_s"), "{:,.0f}"),
                    tables.cell(get(bench, level, "bench_output_events_mean"), "{:.1f}")]
        rows.append(row)
    intro = ("Each level's latency as three witnesses saw it: tokenswarm's records; the engine's own histograms "
             "(its /metrics, scraped at the window's edges: mean = the difference of each histogram's sum over "
             "the difference of its count, over the requests whose first or last token fell in that window, and "
             "ours over the same requests); and, where it ran beside this run, the engine's own benchmark ("
             f"{peer}: vLLM's `vllm bench serve`, SGLang's `bench_serving`) at the same concurrency (all users "
             "at once, 3 prompts per user). *Outside engine* is our TTFT minus the "
             "engine's: network, the API server's HTTP and streaming work, the client. Where the engine's "
             "histograms are, our means here are over those same requests, so at a level with a queue they can "
             "differ from the Results table's (the requests sent in the window). *Coalesced*: the share of "
             "requests whose tokens came in two events or fewer, which hides TTFT and ITL from every client.")
    return intro, (heads, rows)


def level_word(mode: str) -> str:
    """What a level is in this mode: ``rate`` or ``concurrency``."""
    return "rate" if mode == "rate" else "concurrency"


def fmt_level(level: float, mode: str) -> str:
    """``16``, or ``2.5 req/s`` in rate mode."""
    return f"{level:g} req/s" if mode == "rate" else f"{level:g}"


def levels_list(levels: list[float], mode: str) -> str:
    """``1, 2, 4``, or ``0.5, 1 req/s`` in rate mode."""
    return ", ".join(f"{x:g}" for x in levels) + (" req/s" if mode == "rate" else "")


def flagged_details(levels: pd.DataFrame, flag: str, detail: Callable[[float, pd.Series], str]) -> str:
    """``detail(level, row)`` of each level whose boolean column ``flag`` is set, joined with ``; ``;
    '' when none is."""
    flagged = saturation.flagged(levels, flag)
    if not flagged:
        return ""
    by_level = levels.set_index(levels["level"].astype(float))
    return "; ".join(detail(x, by_level.loc[x]) for x in flagged)


def saturation_line(a: Analysis) -> str:
    """The saturation verdict as one bullet: the level, its output tok/s, the best later gain and the TTFT p99
    rise (:mod:`tokenswarm.report.saturation`), or why none was found."""
    k = a.knee
    if k.level is None:
        return f"**Saturation:** not found: {k.reason}."
    rise = (f"by up to {k.later_ttft_rise_pct:,.0f} %" if k.later_ttft_rise_pct is not None
            and k.later_ttft_rise_pct != float("inf") else "from 0")
    return (f"**Saturation:** {level_word(a.mode)} {fmt_level(k.level, a.mode)}, at "
            f"{k.output_throughput_tok_s:,.0f} output tok/s: no later level adds {a.knee_pct:g} % output (the best "
            f"{k.later_gain_pct:+.1f} %) while TTFT p99 rises {rise} (from {k.ttft_p99_ms:,.0f} ms).")


def slo_label(key: str) -> str:
    """``TTFT`` (every request's), ``TTFT p99`` (a level's figure)."""
    metric, _, stat = key.partition("_")
    return SLO_LABELS.get(key) or f"{SLO_LABELS.get(metric, metric)} {stat}"


def slo_line(a: Analysis) -> str:
    """The SLO verdict as one bullet: the limits (ms), the attainment rule and the highest level meeting them."""
    if not a.slo:
        return ("**SLOs:** none given (run.json `settings.slo`), so no goodput, attainment or "
                "highest level meeting them.")
    limits = ", ".join(f"{slo_label(k)} ≤ {v:g} ms" for k, v in a.slo.items())
    per_request = any(k in SLO_LABELS for k in a.slo)
    rule = (f"a level meets them when at least {a.slo_attainment:.1%} of its requests do and none failed"
            if per_request else "a level meets them when its figures do and none of its requests failed")
    best = a.max_level_meeting_slo
    verdict = (f"highest level meeting them: **{fmt_level(best, a.mode)}**" if best is not None
               else "**no level meets them**")
    return f"**SLOs:** {limits}; {rule}; {verdict}."


def client_line(a: Analysis) -> str:
    """The client self-check as one bullet: per level, the client-induced error as measured (the TTFT error
    bound's p99 and the share exact within 1 ms) and whether the load was as asked; '' without figures."""
    parts = [f"{fmt_level(lvl, a.mode)}: " + "; ".join(x for x in (v["timing"], v["load"]) if x)
             for lvl, v in sorted(a.client.items()) if v["timing"] or v["load"]]
    if not parts:
        return ""
    return ("**Client self-check** (the client's own error, measured per request: requests.csv "
            "`ttft_error_bound_ms`; docs/metrics.md): " + "; ".join(parts) + ".")


def flag_items(a: Analysis) -> list[str]:
    """The report's flags, each with what it means and what to do."""
    items = []
    held = flagged_details(a.levels, "under_target", lambda x, r: f"{x:g}: {r['achieved_concurrency']:.1f} in flight")
    if held:
        items.append(f"**Under target** ({held}): these levels held fewer than {UNDER_TARGET:.0%} of their target "
                     "requests in flight, so the client, not the server, set the pace and their latencies understate "
                     "what the server would show at that load. Add workers (`--workers N`) or load machines, check "
                     "the client's CPU, or lengthen the levels if requests are long next to them.")
    lags = flagged_details(a.levels, "late", lambda x, r: f"{x:g} req/s: p99 {r['send_lag_p99_ms']:.1f} ms "
                           f"(limit {r['late_threshold_ms']:.1f} ms)")
    if lags:
        items.append(f"**Late sends** ({lags}): the client sent these levels' requests behind schedule (limit: "
                     f"{LATE_BASE_MS:g} ms + {LATE_SHARE:.0%} of the mean gap between arrivals), so the offered rate "
                     "was lower than asked. Add workers (`--workers N`) or load machines, or check the client's CPU.")
    uncertain = {lvl: v for lvl, v in sorted(a.client.items()) if v["timing_uncertain"]}
    if uncertain:
        why = "; ".join(f"{fmt_level(lvl, a.mode)}: {v['timing']}" + (f" ({v['evidence']})" if v["evidence"] else "")
                        for lvl, v in uncertain.items())
        items.append(f"**Timings not exact** ({why}): every request carries a bound on its own TTFT error "
                     f"(requests.csv `ttft_error_bound_ms`), and at these levels the bound's p99 exceeded "
                     f"{selfcheck.UNCERTAIN_MS:g} ms: the client read some first tokens late and cannot say "
                     "exactly when they came. The requests with a bound of 0 are exact; the others are off by at "
                     f"most their bound. To fix: {selfcheck.TIMING_ADVICE}.")
    short = {lvl: v for lvl, v in sorted(a.client.items()) if v["load_short"]}
    if short:
        why = "; ".join(f"{fmt_level(lvl, a.mode)}: {v['load']}" + (f" ({v['evidence']})" if v["evidence"] else "")
                        for lvl, v in short.items())
        items.append(f"**Load short** ({why}): the server saw less load than asked (closed loop: fewer requests "
                     "in flight than the target; open loop: fewer sends than scheduled, or late), because the "
                     f"client was slow to start the next request; its timings may still be exact. To fix: "
                     f"{selfcheck.LOAD_ADVICE}.")
    if "rate_limited_pct" in a.levels.columns:
        lv = a.levels[a.levels["rate_limited_pct"].fillna(0) > 0]
        if len(lv):
            held = "; ".join(f"{fmt_level(float(r.level), a.mode)}: {r.rate_limited_pct:.1f} % of requests, users "
                             f"waiting {tables.cell(getattr(r, 'backoff_pct', float('nan')), '{:.0f}%')} of the time"
                             for r in lv.itertuples())
            items.append(f"**Rate-limited** ({held}): the server answered HTTP 429 or 503 and users waited what its "
                         "Retry-After said (or backed off) before their next request, so these levels offered less "
                         "load than their target: read them as the gateway's limit, not the engine's. "
                         "`--no-backoff` sends at once instead; `--max-backoff` caps the wait.")
    tc = a.tokenizer_check
    if tc.get("disagree"):
        items.append(f"**Token counts disagree**: over {tc['requests']} requests the server's usage says "
                     f"{tc['output_tokens_usage']:,.0f} output tokens and the local tokenizer "
                     f"{tc['output_tokens_tokenizer']:,.0f} ({tc['difference_pct']:+.1f}%, more than "
                     f"{TOKENIZER_TOLERANCE_PCT:.0f}%): check that --tokenizer is the "
                     "served model's tokenizer (the throughput figures use the server's usage).")
    held = flagged_details(a.levels, "short_window", lambda x, r: f"{fmt_level(x, a.mode)}: "
                           f"{tables.cell(r['window_lifetimes'], '{:.1f}')} lifetimes, "
                           f"{tables.cell(r['window_s'], '{:.0f}')} s")
    if held:
        items.append(f"**Short window** ({held}; marked `*` in the table): these levels' windows held fewer than "
                     f"{MIN_LIFETIMES:g} request lifetimes (mean E2E) or fewer than {MIN_COMPLETED} completed "
                     "requests, so their throughput still carries the ramp and the window's edges and their "
                     "percentiles rest on few requests (measured on vLLM at 1024 streams: 30 s levels of 16 s "
                     "requests read 8,936 tok/s, 100 s levels 9,440). Lengthen them: `--min-lifetimes 3` runs each "
                     "level on until it holds them, and `--level-duration` or `--level-requests` take one value "
                     "per level.")
    ratios = flagged_details(a.levels, "served_from_cache",
                             lambda x, r: f"{fmt_level(x, a.mode)}: {r['cache_hit_pct']:.0f}%")
    if ratios:
        seed = a.settings.get("seed")
        items.append(f"**Served from the prefix cache** ({ratios} of prompt tokens; marked `^`): the workload "
                     f"asked for unique prompts, yet the engine served at least {CACHE_HIT_FLAG:.0%} of their "
                     "tokens, each prompt's own part included, from its prefix cache, so TTFT reads lower than "
                     "fresh prompts would give. The usual "
                     f"cause is a repeated seed (this run's: {seed}): the same prompts again on the same engine. "
                     "Leave out `--seed` (a fresh one per run) or restart the engine.")
    waves = flagged_details(a.levels, "lockstep", lambda x, r: f"{fmt_level(x, a.mode)}: dispersion "
                            f"{tables.cell(r.get('send_dispersion'), '{:.1f}')}")
    if waves:
        items.append(f"**Lockstep** ({waves}; marked `~`): these levels' requests were sent in waves: users that "
                     "start together, or that a full server lets in together when slots free up, stay together "
                     "(their sends per quarter lifetime varied "
                     f"{LOCKSTEP_DISPERSION[0]:g} to {LOCKSTEP_DISPERSION[1]:g} times more than steady, independent "
                     "sends would), so their TTFT and throughput depend on how the waves formed, not only on the "
                     "load. Spread the starts (the default; `--no-stagger` turns it off); a server of very "
                     "regular timing can form waves by itself.")
    lied = flagged_details(a.levels, "usage_contradicted", lambda x, r: f"{fmt_level(x, a.mode)}: "
                           f"{tables.cell(r.get('token_contradictions'), '{:.0f}')} requests")
    if lied:
        items.append(f"**Token counts contradicted the stream** ({lied}; requests.csv `token_check` says how): the "
                     "server's usage disagreed with itself or with the events that carried it (reasoning tokens "
                     "left out of `completion_tokens`, prompt + completion not the total, a usage of 0 after "
                     "output), or a stream ended without a finish reason (`truncated`). `output_tokens` holds the "
                     "count used: completion + reasoning when reasoning was left out, the local count (tokenizer, "
                     "else events) when the usage was made up. A gateway between the client and the engine is the "
                     "usual cause.")
    held_open = flagged_details(a.levels, "lingered", lambda x, r: f"{fmt_level(x, a.mode)}: "
                                f"{tables.cell(r.get('lingered_pct'), '{:.0f}')}%")
    if held_open:
        items.append(f"**Streams held open** ({held_open} of complete answers): the server kept the stream open "
                     "after the answer was complete (finish reason and usage, no `[DONE]` or end of the HTTP "
                     "message; heartbeats or silence). The client took the answer as complete, freed the user and "
                     "closed that connection (requests.csv `lingered`); a real client waiting for the end would "
                     "have been held until the gateway's own timeout.")
    clumps = flagged_details(a.levels, "clumped", lambda x, r: f"{fmt_level(x, a.mode)}: "
                             f"{tables.cell(r.get('output_tokens_per_event'), '{:.1f}')} tokens per event, ITL p50 "
                             f"{tables.cell(r.get('itl_p50_ms'), '{:.1f}')} ms beside TPOT "
                             f"{tables.cell(r.get('tpot_mean_ms'), '{:.1f}')} ms")
    if clumps:
        items.append(f"**Events in clumps** ({clumps}): output arrived in bursts of several tokens per event (a "
                     "buffering proxy or gateway, an engine's stream interval), so ITL describes how the stream "
                     "was framed, not the engine's per-token pace; TPOT (from first and last token) still holds. "
                     "A request whose whole answer came in one event has no TPOT or ITL at all.")
    unjudged = {k: v for k, v in by_level(a.levels, "slo_unjudged").items() if v}
    if unjudged:
        items.append("**Unjudged by the SLO** (" + "; ".join(f"{k}: {v:.0f} requests" for k, v in unjudged.items())
                     + "): these ok requests had no TPOT (one output token, or their whole answer in one event) or "
                     "no inter-token gap, so they neither meet nor miss a TPOT or ITL limit; they are left out of "
                     "the SLO attainment and are not in the goodput.")
    loose = flagged_details(a.levels, "imprecise", lambda x, r: fmt_level(x, a.mode))
    if loose:
        items.append(f"**Imprecise** ({loose}; marked `?`): these levels reached `--max-level-duration` before "
                     "the intervals of the figures that matter were as narrow as `--precision` asked; read their "
                     "`±` before comparing them.")
    longer = flagged_details(a.levels, "lengthened", lambda x, r: (
        f"{fmt_level(x, a.mode)}: {tables.cell(r.get('window_lifetimes'), '{:.1f}')} in "
        f"{tables.cell(r.get('window_s'), '{:.0f}')} s"))
    if longer:
        asked = (a.meta.get("settings") or {}).get("min_lifetimes")
        asked = f"{asked:g}" if isinstance(asked, (int, float)) else "the asked"
        items.append(f"**Lengthened** (request lifetimes in the window: {longer}): these levels ran past their "
                     f"`--level-duration` until their windows held {asked} request lifetimes (`--min-lifetimes`), "
                     "or until `--max-level-duration`; a level still short of them is marked `*`.")
    if a.source == SOURCE_REQUESTS and "failed" in a.levels.columns and a.levels["failed"].sum() > 0:
        bad = a.levels[a.levels["failed"] > 0]
        parts = []
        for r in bad.itertuples():
            kinds = a.failures.get(float(r.level), {})
            what = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
            pct = getattr(r, "failed_pct", float("nan"))
            parts.append(f"{fmt_level(r.level, a.mode)}: {tables.cell(pct, '{:.1f}')} % ({int(r.failed)}"
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
        where = f" during {level_word(a.mode)} {fmt_level(float(level), a.mode)}" if level is not None else ""
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
    doc.facts(provenance.header_facts(a.meta))
    target = _target_line(s)
    if target:
        doc.para(target)
    lv = [float(x) for x in a.levels["level"]] if "level" in a.levels.columns else []
    kind = "Request-rate sweep" if a.mode == "rate" else "Concurrency sweep"
    if len(lv) == 1:
        kind = "Request-rate run" if a.mode == "rate" else "Concurrency run"
    desc = f"{kind}, {len(lv)} level{'s' if len(lv) != 1 else ''} ({levels_list(lv, a.mode)})"
    if s.get("level_durations_s"):
        desc += ", lasting " + ", ".join(f"{float(d):g}" for d in s["level_durations_s"]) + " s"
    elif s.get("level_duration_s"):
        desc += f", {float(s['level_duration_s']):g} s each"
    if s.get("level_requests_each"):
        desc += ", each ending after " + "/".join(str(n) for n in s["level_requests_each"]) + " requests"
    elif s.get("level_requests"):
        desc += f", {s['level_requests']} requests each"
    if s.get("warmups_s") and level_warmups(s):
        desc += "; the first 20 % of each level is warm-up, left out"
    elif a.warmup_s:
        desc += f"; the first {a.warmup_s:g} s of each level are warm-up, left out"
    workers = a.meta.get("workers")
    if isinstance(workers, list) and workers:
        desc += f"; {len(workers)} worker{'s' if len(workers) != 1 else ''}"
    doc.para(desc + ".")
    counts = a.meta.get("dataset_counts") or a.meta.get("dataset_books")  # older run folders
    if isinstance(counts, dict) and counts.get("records") is not None:
        doc.para(f"Dataset {counts_line(counts)}.")
    if s.get("seed") is not None:
        drawn = ("drawn for this run: fresh prompts" if s.get("seed_drawn") else "given with `--seed`")
        doc.para(f"Prompt seed {s['seed']} ({drawn}); `--seed {s['seed']}` sends these prompts again.")
    if not a.complete:
        planned = s.get("rates" if a.mode == "rate" else "levels")
        missing = [float(x) for x in planned if float(x) not in lv] if isinstance(planned, list) else []
        extra = f" Levels planned but not reached: {levels_list(missing, a.mode)}." if missing else ""
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
    if a.capacity:
        doc.heading("Capacity")
        doc.para(f"**{a.capacity['line']}**.")
        doc.para("Each probe ran until its 95 % intervals told whether the SLOs hold (`--level-duration` at least, "
                 "`--max-level-duration` at most: a probe that reached it took its point estimate's verdict and is "
                 "marked `?`); the search doubled or halved from the bracket's low end, then bisected. The answer's "
                 "interval inverts the probes' intervals: where the SLO's pessimistic and optimistic bounds, joined "
                 "across the probed levels, cross its limit. capacity.json has every probe.")
    doc.heading("Results")
    doc.table(*tables.rows(a.levels, tables.published(a.levels), a.mode))
    for line in tables.legend(a.levels):
        doc.para(f"`{line[0]}` {line[2:]}")
    for line in tables.notes(a.levels):
        doc.para(line[0].upper() + line[1:] + ".")
    if intervals.ci_columns("ttft_mean_ms")[0] in a.levels.columns:
        doc.para(f"`±` is half the width of a {intervals.LEVEL:.0%} confidence interval (its larger side; `?`: a bound "
                 f"the data cannot give, such as a p99's upper bound from too few requests): "
                 f"{intervals.METHOD}. Blocks are at least one request lifetime long "
                 "(levels.csv `ci_blocks`); the bounds are in levels.csv (`<figure>_ci_low`, `<figure>_ci_high`).")
    peak = a.peak_output()
    lines = [saturation_line(a)] if len(a.levels) > 1 else []
    lines.append(slo_line(a))
    if peak:
        lines.append(f"**Peak output throughput:** {peak['output_throughput_tok_s']:,.1f} tok/s at "
                     f"{level_word(a.mode)} {fmt_level(peak['level'], a.mode)}.")
    client = client_line(a)
    if client:
        lines.append(client)
    doc.bullets(lines)
    flags = flag_items(a)
    if flags:
        doc.heading("Flags")
        doc.bullets(flags)
    doc.heading("Per-level detail")
    doc.para("Latency in ms; percentiles " + ("exact, from every request in requests.csv." if a.source !=
                                              SOURCE_LOCUST else "rounded by Locust."))
    for title, grid in tables.detail_groups(a.levels, a.mode):
        doc.subheading(title)
        doc.table(*grid)
    cache = by_level(a.levels, "cache_hit_pct") if tables.cache_hits(a.levels) else {}
    if cache:
        lv = a.levels.set_index("level")
        parts = "; ".join(f"{fmt_level(float(k), a.mode)}: {v:.0f}% of prompt tokens, TTFT p50 "
                          f"{tables.cell(lv.loc[float(k), 'ttft_p50_cache_hit_ms'], '{:.1f}')} ms with a hit vs "
                          f"{tables.cell(lv.loc[float(k), 'ttft_p50_cache_miss_ms'], '{:.1f}')} ms without"
                          for k, v in cache.items())
        doc.heading("Prefix cache")
        doc.para("Prompt tokens the server served from its prefix cache (usage `cached_tokens`), per level: "
                 + parts + ". (A hit is a request with any cached tokens; `-`: no request of that kind.)")
    if a.turns is not None:
        doc.heading("TTFT by turn")
        doc.para("Multi-turn conversations: each turn sends the whole history, so later turns are longer and "
                 "have more of it cached.")
        doc.table(["Turn", "Requests", "TTFT p50 (ms)", "TTFT p99 (ms)", "Mean input tokens", "Cache hit"],
                  [[str(int(r.turn)), str(int(r.requests)), tables.cell(r.ttft_p50_ms, "{:.1f}"),
                    tables.cell(r.ttft_p99_ms, "{:.1f}"), tables.cell(r.mean_input_tokens, "{:.0f}"),
                    tables.cell(r.cache_hit_pct, "{:.0f}%")] for r in a.turns.itertuples()])
    if a.trace:
        t = a.trace
        w = s.get("workload") or {}
        doc.heading("Trace replay")
        doc.para(f"Replayed {t['requests']} requests from `{os.path.basename(str(w.get('trace', '')))}` at speed "
                 f"{w.get('speed', 1):g}: each was sent {t['send_lag_p50_ms']:.1f} ms (p50) / "
                 f"{t['send_lag_p99_ms']:.1f} ms (p99) after its scheduled time (max {t['send_lag_max_ms']:.1f} "
                 f"ms); gaps between arrivals differ from the trace's by {t['gap_error_p50_ms']:.2f} ms (p50) / "
                 f"{t['gap_error_p99_ms']:.2f} ms (p99).")
    total = total_failures(a.failures)
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
        for p in plot_paths:
            name = os.path.basename(p)
            doc.image(p, f"{runfolder.PLOTS}/{name}", PLOT_CAPTIONS.get(name, name))
    doc.heading("How these figures are computed")
    doc.bullets([
        "TTFT: first output-carrying event minus send; TPOT: (E2E - TTFT) / (output tokens - 1), hidden "
        "reasoning tokens (counted by the server, never streamed: requests.csv reasoning_tokens with no "
        "reasoning in output_kind) left out of those output tokens; ITL: gaps "
        "between output events; E2E: last output event minus send. Client clock, per request.",
        "Window: from the level's first request sent plus the warm-up to the level's end. Every rate (Req/s, "
        "input and output tok/s, goodput) counts each ok request by the share of its span, first to last token, "
        "inside the window, so for fixed lengths Req/s x mean length = token rate; per window second.",
        f"Failed %: failed / (ok + failed) requests of the level. A level whose window held fewer than "
        f"{MIN_LIFETIMES:g} request lifetimes (mean E2E) or {MIN_COMPLETED} completed requests is marked `*`.",
        f"Saturation: the lowest level beyond which output throughput never grows by {a.knee_pct:g} % or more while "
        f"TTFT p99 rises by more than {saturation.TTFT_RISE_PCT:g} %.",
        "Interactivity: per-user output tok/s = 1000 / TPOT p50 (the token rate one stream sees), drawn against "
        "the level's total output tok/s; its error bars come from the two figures' intervals.",
        "Achieved concurrency: time-averaged requests in flight in the window; a closed-loop level under "
        f"{UNDER_TARGET:.0%} of its target is flagged.",
    ])
    return doc


def summary_text(run_dir: str) -> str:
    """The published-style table of a built run folder (its levels.csv, old column names read too) as aligned
    text, then its saturation, SLO and flag lines from summary.json; '' without a levels.csv. An unreadable
    summary.json leaves those lines out."""
    path = os.path.join(run_dir, runfolder.LEVELS_CSV)
    if not os.path.exists(path):
        return ""
    levels = read_levels_csv(path)
    out = tables.text(levels)
    for line in tables.legend(levels) + tables.notes(levels):
        out += "\n" + line
    try:
        summ = read_json_object(os.path.join(run_dir, SUMMARY_JSON), "summary.json", missing_ok=True)
    except ReportError:
        return out
    mode = str(summ.get("mode") or tables.mode_of(levels))
    if len(levels) > 1 and summ:
        sat = summ.get("saturation") or {}
        if summ.get("saturation_level") is not None:
            out += f"\n\nSaturation: {level_word(mode)} {fmt_level(summ['saturation_level'], mode)}"
        else:
            out += f"\n\nSaturation: not found ({sat.get('reason', 'no knee')})"
        if summ.get("slo"):
            best = summ.get("max_level_meeting_slo")
            out += ("\nHighest level meeting the SLOs: " + (fmt_level(best, mode) if best is not None else "none"))
        for key, word in (("under_target_levels", "under target"), ("late_levels", "late")):
            if summ.get(key):
                out += f"\nFlagged {word}: {levels_list(summ[key], mode)} (see report.md)"
    cap = summ.get("capacity")
    if isinstance(cap, dict) and cap.get("line"):
        out += f"\n\nCapacity: {cap['line']}"
    checks = summ.get("client_checks") or {}
    timing = summ.get("timing_uncertain_levels") or {}
    load = summ.get("load_short_levels") or {}
    if checks and not timing and not load:  # one line when every level is fine; report.md has each level's
        out += "\nClient: " + _client_all_fine(levels)
    for lvl, v in checks.items():
        if (lvl in timing or lvl in load) and (v.get("timing") or v.get("load")):
            out += f"\nClient at level {lvl}: " + "; ".join(x for x in (v.get("timing"), v.get("load")) if x)
    if timing:
        out += (f"\nWarning: timings not exact at level {', '.join(timing)}: requests.csv ttft_error_bound_ms "
                f"says by how much each request may be off; {selfcheck.TIMING_ADVICE}")
    if load:
        out += (f"\nWarning: load short of the target at level {', '.join(load)} "
                f"({'; '.join(load.values())}); {selfcheck.LOAD_ADVICE}")
    return out


def _client_all_fine(levels: pd.DataFrame) -> str:
    """The self-check's line for a run none of whose levels it flagged: the worst level's figures."""
    def worst(col: str) -> float:
        return float(levels[col].astype(float).max()) if col in levels.columns else math.nan

    bound, short = worst("ttft_error_bound_p99_ms"), worst("load_shortfall_pct")
    parts = []
    if bound == bound:
        parts.append(f"timings exact within {bound:.2f} ms (TTFT error bound p99, worst level)")
    if short == short:
        parts.append(f"load as asked (short by at most {max(short, 0.0):.1f} %)")
    return (" and ".join(parts) or "nothing flagged") + " at every level"
