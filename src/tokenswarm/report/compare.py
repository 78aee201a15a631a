"""Several runs side by side (engines, gateways, settings): compare.md, compare.html, compare.csv, plots.

``tokenswarm compare DIR DIR... [--labels a,b] [--out DIR]`` calls
:func:`compare`. Each folder is read with :func:`tokenswarm.report.analysis.analyse`
(an up-to-date levels.csv is reused; nothing is written into the run
folders). Levels are outer-joined: every level any run measured gets a row per
run, empty where that run has no such level. A run's label is, unless given,
its ``settings.run_name``, else its engine preset, else its folder name
(folder names, then ``#n``, break ties).

Before any figure, :func:`differences` says whether the runs measured the same
thing: it lists each run's dialect, endpoint, max_tokens, input and output
lengths (asked for, and measured from usage), dataset, workload, seed and
cache-hit share, and warns where they differ (lengths measured more than
``LENGTH_TOL`` apart, cache-hit shares ``CACHE_TOL_PCT`` points apart or any level served
from the prefix cache). Seeds differ between any two runs by default (each run
draws fresh prompts): that is shown and explained, as a note. Outputs, in ``out_dir``:
``compare.csv`` (long format: level, run, the :data:`COMPARED` levels.csv columns), ``compare.md``,
``compare.html`` (one self-contained file, plots embedded) and
``compare_*.png`` (one line per run, each run's saturation level circled, error bars where the figures have
intervals; ``compare_interactivity.png``: per-user output tok/s against total output tok/s, the points labelled
with their levels), and ``compare.json``.

**Verdicts.** Each run after the first (B) is set against the first (A): per level both measured and per
figure of :data:`COMPARED`, the ratio B/A with its 95 % interval and a verdict, ``better``, ``worse``, ``no
detectable difference`` or ``undecided`` (with about how many more requests would decide):
:mod:`tokenswarm.report.verdicts`, from each run's own intervals (:mod:`tokenswarm.report.intervals`).
``--margin PCT`` sets what counts as no difference (default 5 %). A level's flags (``*`` not steady, ``^``
served from cache, ``!`` client saturated, ``~`` lockstep, ``?`` imprecise) carry into every table, per run.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tokenswarm import runfolder
from tokenswarm.report import plots, tables, verdicts
from tokenswarm.report.analysis import Analysis, analyse
from tokenswarm.report.compose import level_word
from tokenswarm.report.document import Document
from tokenswarm.report.errors import ReportError
from tokenswarm.report.intervals import Interval, ci_columns
from tokenswarm.report.provenance import of_run as run_provenance
from tokenswarm.report.saturation import flagged

COMPARE_MD, COMPARE_HTML, COMPARE_CSV, COMPARE_JSON = "compare.md", "compare.html", "compare.csv", "compare.json"
LENGTH_TOL = 0.05  # measured mean input/output lengths further apart than this share: different work
CACHE_TOL_PCT = 20.0  # cache-hit shares (percent) further apart than this: one engine served its prompts from cache

#: (levels.csv column, heading, format) compared per level and run
COMPARED: tuple[tables.Column, ...] = (
    ("output_throughput_tok_s", "Output tok/s", "{:.1f}"),
    ("ttft_mean_ms", "Mean TTFT (ms)", "{:.1f}"),
    ("ttft_p99_ms", "P99 TTFT (ms)", "{:.1f}"),
    ("tpot_mean_ms", "Mean TPOT (ms)", "{:.2f}"),
    ("tpot_p99_ms", "P99 TPOT (ms)", "{:.2f}"),
)
#: the figures compared for runs of whole answers (embeddings, rerank, ``stream: false``): no TTFT or TPOT there
COMPARED_WHOLE: tuple[tables.Column, ...] = (
    ("request_throughput_req_s", "Req/s", "{:.2f}"),
    ("input_throughput_tok_s", "Input tok/s", "{:.1f}"),
    ("e2e_mean_ms", "Mean latency (ms)", "{:.1f}"),
    ("e2e_p99_ms", "P99 latency (ms)", "{:.1f}"),
)
#: (levels.csv column, heading, format) of what the GPU spent (runs with ``--gpu-metrics``): in compare.csv and
#: their own table when some run has them; no verdicts (the samples carry no intervals)
GPU_COMPARED: tuple[tables.Column, ...] = (
    ("gpu_count", "GPUs", "{:g}"),
    ("gpu_power_w", "Power (W)", "{:.0f}"),
    ("energy_per_output_token_j", "J / output token", "{:.3f}"),
    ("output_throughput_per_gpu_tok_s", "Output tok/s per GPU", "{:.1f}"),
    ("gpu_util_pct", "GPU util %", "{:.0f}"),
    ("gpu_memory_used_mib", "Memory used (MiB)", "{:.0f}"),
)
#: the compared figures for which higher is better (the rest are latencies: lower is better)
HIGHER_IS_BETTER = frozenset({"output_throughput_tok_s", "request_throughput_req_s", "input_throughput_tok_s"})


def compared(analyses: Sequence[Analysis]) -> tuple[tables.Column, ...]:
    """The figures to compare: :data:`COMPARED_WHOLE` when every run is of whole answers
    (:func:`tokenswarm.report.tables.whole_answers`), else :data:`COMPARED`."""
    if analyses and all(tables.whole_answers(a.levels) for a in analyses):
        return COMPARED_WHOLE
    return COMPARED


@dataclass
class CompareResult:
    """What :func:`compare` produced: labels in run order, the long table, and the files written."""

    labels: list[str]
    #: columns: level, run, the COMPARED columns, then GPU_COMPARED's where some run has them; one row per
    #: (level, run)
    table: pd.DataFrame
    out_dir: str
    files: list[str] = field(default_factory=list)
    mode: str = "concurrency"
    warnings: list[str] = field(default_factory=list)  # how the runs differ in what they measured
    notes: list[str] = field(default_factory=list)  # differences worth knowing that keep them comparable
    #: per later run against the first: {"run", "level", "figure", "a", "b", "ratio", "ci_low", "ci_high",
    #: "verdict", "more_requests"}
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    figures: tuple[tables.Column, ...] = COMPARED  # what was compared (:func:`compared`)

    def pivot(self, column: str | None = None) -> pd.DataFrame:
        """Levels as rows, runs as columns, for one levels.csv column (None: the first compared figure,
        output throughput or, for whole answers, requests per second); NaN where a run lacks the level."""
        p = self.table.pivot(index="level", columns="run", values=column or self.figures[0][0])
        return p.reindex(columns=self.labels)

    def verdict_lines(self) -> list[str]:
        """One line per level and later run: the verdicts that are not "no detectable difference" spelled out
        (``16: sglang vs vllm: Output tok/s better 1.082 (1.051-1.114); ...``); a level where every figure
        shows none says so in a word."""
        out = []
        by_key: dict[tuple[str, float], list[dict[str, Any]]] = {}
        for v in self.verdicts:
            by_key.setdefault((v["run"], v["level"]), []).append(v)
        for (run, level), vs in by_key.items():
            told = [f"{_heading(v['figure'])} {_verdict_text(v)} {_ratio_text(v)}" for v in vs
                    if v["verdict"] != verdicts.SAME]
            body = "; ".join(told) if told else "no detectable difference in any figure"
            out.append(f"{level:g}: {run} vs {self.labels[0]}: {body}")
        return out

    def text(self) -> str:
        """Output throughput (whole answers: requests per second) per level and run, as aligned text (what the
        CLI prints)."""
        p = self.pivot()
        unit = "tok/s" if self.figures[0][0] == "output_throughput_tok_s" else "req/s"
        heads = [tables.LEVEL_HEADING[self.mode], *(f"{lab} {unit}" for lab in self.labels)]
        body = [[f"{lvl:g}", *(tables.cell(v, self.figures[0][2]) for v in p.loc[lvl])] for lvl in p.index]
        return tables.text_grid(heads, body)


def parse_labels(text: str | None) -> list[str] | None:
    """``"a,b"`` -> ``["a", "b"]`` (None for None or empty)."""
    if not text:
        return None
    return [part.strip() for part in text.split(",")]


def default_out_dir(root: str = runfolder.DEFAULT_ROOT, now: float | None = None) -> str:
    """``reports/compare-20261121-173000`` (not created)."""
    return os.path.join(root, "compare-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(now)))


def default_labels(analyses: Sequence[Analysis]) -> list[str]:
    """run_name, else engine, else folder name; ties broken by folder name, then ``#n``."""
    first = []
    for a in analyses:
        s = a.settings
        first.append(str(s.get("run_name") or s.get("engine") or _folder(a.run_dir)))
    labels = [lab if first.count(lab) == 1 else _folder(a.run_dir) for lab, a in zip(first, analyses)]
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if labels.count(lab) == 1 else f"{lab}#{seen[lab]}")
    return out


def _folder(path: str) -> str:
    return os.path.basename(os.path.normpath(path)) or path


def compare(run_dirs: list[str], labels: list[str] | None = None, out_dir: str | None = None,
            margin_pct: float = 100 * verdicts.DEFAULT_MARGIN) -> CompareResult:
    """Put the runs in ``run_dirs`` side by side; writes compare.csv/.md/.html/.json and compare_*.png to
    ``out_dir`` (default :func:`default_out_dir`); each run after the first gets verdicts against the first,
    ``margin_pct`` being what counts as no difference. ReportError for a folder that is not a run, or bad
    labels, a negative or non-finite ``margin_pct``, or an ``out_dir`` that is a file."""
    if not run_dirs:
        raise ReportError("compare needs at least one run folder")
    if not (math.isfinite(margin_pct) and margin_pct >= 0):
        raise ReportError(f"--margin {margin_pct:g}: must be 0 or more (percent of the first run's figure)")
    if out_dir and os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ReportError(f"--out {out_dir}: is a file, not a folder")
    analyses = []
    for d in run_dirs:
        if not os.path.isdir(d):
            raise ReportError(f"{d}: no such folder")
        analyses.append(analyse(d, prefer_levels_csv=True))
    if labels is None:
        labels = default_labels(analyses)
    else:
        labels = [str(lab).strip() for lab in labels]
        if len(labels) != len(run_dirs):
            raise ReportError(f"--labels {','.join(labels)!r}: {len(labels)} labels for {len(run_dirs)} run folders")
        if any(not lab for lab in labels):
            raise ReportError(f"--labels {','.join(labels)!r}: a label is empty")
        dup = next((lab for lab in labels if labels.count(lab) > 1), None)
        if dup is not None:
            raise ReportError(f"--labels {','.join(labels)!r}: {dup!r} appears twice; labels must be distinct")
    out_dir = out_dir or default_out_dir()
    os.makedirs(out_dir, exist_ok=True)
    all_modes = [a.mode for a in analyses]
    mixed = len(set(all_modes)) > 1  # a level is a user count in one and a request rate in the other
    mode = "concurrency" if mixed else all_modes[0]
    figs = compared(analyses)
    table = _long_table(analyses, labels, figs)
    result = CompareResult(labels, table, out_dir, mode=mode, figures=figs)
    facts = [run_facts(a) for a in analyses]
    result.warnings, result.notes = differences(facts, labels)
    if mixed:
        result.warnings.insert(0, f"The runs step through different axes ({_listing(labels, all_modes)}): a level "
                               "is a number of users in a concurrency run and requests per second in a rate run, so "
                               "the same number is not the same load; compare runs of one mode.")
    result.verdicts = judge_runs(analyses, labels, margin_pct / 100.0, figs)
    path = os.path.join(out_dir, COMPARE_CSV)
    table.to_csv(path, index=False, float_format="%.4f")
    result.files.append(path)
    runs = [(lab, a.levels, a.knee.level) for lab, a in zip(labels, analyses)]
    plot_paths = plots.compare_plots(runs, out_dir, mode)
    result.files += plot_paths
    doc = _document(analyses, labels, result, plot_paths, mixed=len({a.mode for a in analyses}) > 1,
                    facts=facts)
    for name, text in ((COMPARE_MD, doc.markdown()), (COMPARE_HTML, doc.html())):
        path = os.path.join(out_dir, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        result.files.append(path)
    path = os.path.join(out_dir, COMPARE_JSON)
    runfolder.write_json(path, {
        "runs": [{"label": lab, "folder": a.run_dir} for lab, a in zip(labels, analyses)],
        "baseline": labels[0], "margin_pct": margin_pct, "method": verdicts.__doc__.split("\n\n")[1].strip(),
        "verdicts": result.verdicts, "warnings": result.warnings, "notes": result.notes,
        "levels": {lab: _flags_of(a.levels) for lab, a in zip(labels, analyses)},
    })
    result.files.append(path)
    return result


def _interval(row: dict[str, Any], col: str) -> Interval:
    low, high = ci_columns(col)

    def f(key: str) -> float:
        try:
            return float(row.get(key, math.nan))
        except (TypeError, ValueError):
            return math.nan

    return Interval(f(col), f(low), f(high))


def judge_runs(analyses: Sequence[Analysis], labels: Sequence[str], margin: float,
               figures: Sequence[tables.Column] = COMPARED) -> list[dict[str, Any]]:
    """Each run after the first against the first, per level both measured and per figure of ``figures``
    (:data:`COMPARED`; :func:`compared`) (:func:`tokenswarm.report.verdicts.compare_figures`)."""
    if len(analyses) < 2:
        return []
    base = {float(r["level"]): r for r in analyses[0].levels.to_dict("records")}
    out = []
    for lab, a in zip(labels[1:], analyses[1:]):
        for row in a.levels.to_dict("records"):
            level = float(row["level"])
            if level not in base:
                continue
            requests = int(min(float(row.get("completed", 0) or 0), float(base[level].get("completed", 0) or 0)))
            for col, _head, _fmt in figures:
                v = verdicts.compare_figures(_interval(base[level], col), _interval(row, col),
                                             col not in HIGHER_IS_BETTER, requests, margin)
                out.append({"run": lab, "level": level, "figure": col, "a": _interval(base[level], col).estimate,
                            "b": _interval(row, col).estimate, "ratio": v.ratio, "ci_low": v.low,
                            "ci_high": v.high, "verdict": v.verdict, "more_requests": v.more_requests})
    return out


def _flags_of(levels: pd.DataFrame) -> dict[str, str]:
    """Each level's marks (``*^!~?``), by level."""
    return {f"{float(r['level']):g}": tables.marks(r) for r in levels.to_dict("records")}


def _long_table(analyses: Sequence[Analysis], labels: Sequence[str],
                figures: Sequence[tables.Column] = COMPARED) -> pd.DataFrame:
    """Outer join on level: one row per (level, run), runs in the given order."""
    levels = sorted({float(x) for a in analyses for x in a.levels["level"]})
    figures = [*figures, *(g for g in GPU_COMPARED if any(
        g[0] in a.levels.columns and a.levels[g[0]].notna().any() for a in analyses))]
    frames = []
    for lab, a in zip(labels, analyses):
        d = a.levels.copy()
        d["level"] = d["level"].astype(float)
        cols = ["level", *(c for c, _, _ in figures if c in d.columns)]
        d = d[cols].drop_duplicates("level").set_index("level").reindex(levels)
        for c, _, _ in figures:
            if c not in d.columns:
                d[c] = np.nan
        d = d.reset_index()
        d.insert(1, "run", lab)
        d["_order"] = labels.index(lab)
        frames.append(d)
    out = pd.concat(frames, ignore_index=True).sort_values(["level", "_order"], kind="stable")
    return out.drop(columns="_order").reset_index(drop=True)[["level", "run", *(c for c, _, _ in figures)]]


def _engine_cell(meta: dict[str, Any]) -> str:
    """``vllm 0.8.5``: the run's engine with its version as the server told it (run.json ``provenance``);
    the preset alone when the version is unknown; ``-`` when neither is known."""
    p = run_provenance(meta)
    name = "-" if p["engine_name"] == "unknown" else p["engine_name"]
    return name if p["engine_version"] == "unknown" else f"{name} {p['engine_version']}"


def _level_cell(level: float, *flags: dict[str, str]) -> str:
    """``16`` followed by the marks the given runs' flags put on that level (``16*~``)."""
    key = f"{float(level):g}"
    return key + "".join(dict.fromkeys("".join(f.get(key, "") for f in flags)))


def _heading(col: str) -> str:
    return next(h for c, h, _ in COMPARED + COMPARED_WHOLE if c == col)


def _fmt(col: str) -> str:
    return next(f for c, _, f in COMPARED + COMPARED_WHOLE if c == col)


def _ratio_text(v: dict[str, Any]) -> str:
    if v["ratio"] is None or math.isnan(v["ratio"]):
        return "-"
    if math.isnan(v["ci_low"]):
        return f"{v['ratio']:.3f} (interval unknown)"
    return f"{v['ratio']:.3f} ({v['ci_low']:.3f}-{v['ci_high']:.3f})"


def _verdict_text(v: dict[str, Any]) -> str:
    if v["verdict"] == verdicts.UNDECIDED and v.get("more_requests"):
        return f"undecided (~{v['more_requests']:,} more requests per run)"
    return str(v["verdict"])


def _with_ci(levels: pd.DataFrame, level: float, col: str, fmt: str) -> str:
    rec = levels[levels["level"].astype(float) == float(level)]
    if not len(rec):
        return "-"
    return tables.with_interval(rec.iloc[0].to_dict(), col, fmt)


def _document(analyses: Sequence[Analysis], labels: Sequence[str], result: CompareResult, plot_paths: list[str],
              mixed: bool, facts: Sequence[dict[str, Any]] = ()) -> Document:
    doc = Document("tokenswarm compare: " + " vs ".join(labels))
    marks = {lab: _flags_of(a.levels) for lab, a in zip(labels, analyses)}
    if mixed:
        doc.warn("These runs mix concurrency and request-rate sweeps: their levels mean different things "
                 "(users vs req/s); compare them with care.")
    doc.heading("Runs")
    body = []
    for lab, a in zip(labels, analyses):
        s = a.settings
        summ = a.summary()
        peak = summ["peak_output_throughput"]
        best = summ["max_level_meeting_slo"]
        body.append([
            lab, a.run_dir, _engine_cell(a.meta), str(s.get("model") or "-"), level_word(a.mode),
            {"locust_csv": "Locust CSV (rounded)", "levels.csv": "levels.csv"}.get(a.source, "requests.csv"),
            "yes" if a.complete else "no (interrupted)",
            ", ".join(f"{x:g}" for x in summ["levels"]) or "-",
            f"{a.knee.level:g}" if a.knee.level is not None else "not found",
            f"{best:g}" if best is not None else ("-" if not a.slo else "none"),
            f"{peak['output_throughput_tok_s']:,.1f} at {peak['level']:g}" if peak else "-",
        ])
    doc.table(["Run", "Folder", "Engine", "Model", "Mode", "Source", "Complete", "Levels", "Saturation",
               "Max level meeting SLO", "Peak output tok/s"], body, left=8)
    if any(a.source == "locust_csv" for a in analyses):
        doc.para("Runs built from Locust's CSV files carry Locust's rounded percentiles and approximate "
                 "throughput; the others are exact.")
    if facts:
        doc.heading("Comparable?")
        doc.table([h for _, h, _ in FACTS], [[lab, *(_fact_cell(f, key, fmt) for key, _, fmt in FACTS[1:])]
                                             for lab, f in zip(labels, facts)], left=len(FACTS))
        for w in result.warnings:
            doc.warn(w)
        for n in result.notes:
            doc.para(f"**Note:** {n}")
        if not result.warnings:
            doc.para("The runs agree in dialect, endpoint, max_tokens, lengths, dataset, workload and cache-hit "
                     "ratio.")
    doc.heading("Output throughput (tok/s)")
    p = result.pivot()
    lh = tables.LEVEL_HEADING[result.mode]
    doc.table([lh, *labels], [[f"{lvl:g}", *(tables.cell(v, "{:.1f}") for v in p.loc[lvl])] for lvl in p.index])
    if result.verdicts:
        doc.heading(f"Verdicts: each run against {labels[0]}")
        body = [[_level_cell(v["level"], marks[labels[0]], marks[v["run"]]), v["run"], _heading(v["figure"]),
                 tables.cell(v["a"], _fmt(v["figure"])), tables.cell(v["b"], _fmt(v["figure"])), _ratio_text(v),
                 _verdict_text(v)] for v in result.verdicts]
        doc.table([lh, "Run", "Figure", labels[0], "Run's", "Ratio run/first (95 % CI)", "Verdict"], body, left=0)
        doc.para("The ratio's interval adds the two runs' own intervals on the log scale (independent runs); "
                 "**better**/**worse**: it excludes 1; **no detectable difference**: it lies within the margin "
                 "(`--margin`); **undecided**: neither, and about how many more requests per run would decide.")
    doc.heading("Per level and run")
    heads = [lh, "Run", *(h for _, h, _ in result.figures)]
    by_label = dict(zip(labels, analyses))
    rows = [[_level_cell(r["level"], marks[str(r["run"])]), str(r["run"]),
             *(_with_ci(by_label[str(r["run"])].levels, r["level"], c, f) for c, _, f in result.figures)]
            for r in result.table.to_dict("records")]
    doc.table(heads, rows, left=0)
    doc.para("A `-` means the run has no such level (levels are outer-joined across runs). `±` is half a 95 % "
             "confidence interval's width (its larger side). Marks after a level are that run's flags: "
             + "; ".join(f"`{m}` {text.split(':')[0]}" for _, m, text in tables.MARKS) + ".")
    gpu_cols = [g for g in GPU_COMPARED if g[0] in result.table.columns]
    if gpu_cols:
        doc.heading("What the GPU spent")
        rows = [[_level_cell(r["level"], marks[str(r["run"])]), str(r["run"]),
                 *(tables.cell(r[c], f) for c, _, f in gpu_cols)] for r in result.table.to_dict("records")]
        doc.table([lh, "Run", *(h for _, h, _ in gpu_cols)], rows, left=0)
        doc.para("From each run's DCGM exporter (`--gpu-metrics`), over each level's measurement window: power "
                 "summed over the GPUs, energy per output token (the energy counters' rise per second over the "
                 "level's output tok/s), utilisation averaged over the GPUs, memory summed. A `-`: the run "
                 "has no GPU figures for that level.")
    if plot_paths:
        doc.heading("Plots")
        captions = {"compare_throughput.png": "Output throughput", "compare_ttft.png": "TTFT mean / p99",
                    "compare_tpot.png": "TPOT mean / p99", "compare_latency_vs_throughput.png": "Latency vs throughput",
                    "compare_interactivity.png": "Interactivity vs throughput: per-user output tok/s (1000 / TPOT "
                                                 "p50) against total output tok/s, one line per run",
                    "compare_energy.png": "Energy per output token (J) against output tok/s, one line per run "
                                          "with GPU figures"}
        for path in plot_paths:
            name = os.path.basename(path)
            doc.image(path, name, captions.get(name, name))
    return doc


# -- are the runs comparable? ------------------------------------------------------------------
#: (fact key, heading, format) of the "Comparable?" table; the first column is the run's label
FACTS: tuple[tuple[str, str, str], ...] = (
    ("label", "Run", ""),
    ("dialect", "Dialect", "{}"),
    ("endpoint", "Endpoint", "{}"),
    ("max_tokens", "max_tokens", "{}"),
    ("input_len", "Input len asked", "{}"),
    ("output_len", "Output len asked", "{}"),
    ("mean_input_tokens", "Input len measured", "{:.1f}"),
    ("mean_output_tokens", "Output len measured", "{:.1f}"),
    ("dataset", "Dataset", "{}"),
    ("workload", "Workload", "{}"),
    ("seed", "Seed", "{}"),
    ("cache_hit_pct", "Cache hit (max)", "{:.0f}%"),
)
#: settings that must match for two runs to measure the same work: (fact key, what it is)
SAME_WORK: tuple[tuple[str, str], ...] = (
    ("dialect", "API dialect"), ("endpoint", "endpoint"), ("max_tokens", "max_tokens"),
    ("input_len", "asked input length (--input-len)"), ("output_len", "asked output length (--output-len)"),
    ("dataset", "dataset"), ("workload", "workload"),
)


def run_facts(a: Analysis) -> dict[str, Any]:
    """What a run measured, for :func:`differences`: settings from run.json (None when it did not record
    them) and, from its levels, mean input/output lengths (means of the levels'), the highest cache-hit
    share (percent), and the levels served from the prefix cache."""
    s = a.settings
    ds = s.get("dataset") if isinstance(s.get("dataset"), dict) else {}
    name = ds.get("name") or None
    dataset = f"{name} ({os.path.basename(str(ds['path']))})" if name and ds.get("path") else name
    out_len = ds.get("output_len") or None
    lv = a.levels

    def mean(col: str) -> float:
        return float(lv[col].astype(float).mean()) if col in lv.columns and lv[col].notna().any() else math.nan

    cache_pct = float(lv["cache_hit_pct"].astype(float).max()) if "cache_hit_pct" in lv.columns and \
        lv["cache_hit_pct"].notna().any() else math.nan
    workload = s.get("workload")
    return {
        "dialect": s.get("dialect") or None, "endpoint": s.get("endpoint") or None,
        "max_tokens": s.get("max_tokens"),
        "input_len": s.get("input_len") if name in (None, "random") else None,
        "output_len": out_len, "dataset": dataset,
        "workload": workload.get("kind") if isinstance(workload, dict) else None,
        "seed": s.get("seed"), "seed_drawn": s.get("seed_drawn"),
        "mean_input_tokens": mean("mean_input_tokens"), "mean_output_tokens": mean("mean_output_tokens"),
        "cache_hit_pct": cache_pct, "served_from_cache": flagged(lv, "served_from_cache"),
    }


def _fact_cell(f: dict[str, Any], key: str, fmt: str) -> str:
    v = f.get(key)
    if key == "seed" and v is not None:
        return f"{v} ({'drawn' if f.get('seed_drawn') else 'given'})"
    return tables.cell(v, fmt)


def _listing(labels: Sequence[str], values: Sequence[Any], fmt: str = "{}") -> str:
    return ", ".join(f"{lab}: {tables.cell(v, fmt)}" for lab, v in zip(labels, values))


def differences(facts: Sequence[dict[str, Any]], labels: Sequence[str]) -> tuple[list[str], list[str]]:
    """(warnings, notes): how the runs differ in what they measured, each with the runs' values.

    Warnings: a setting of :data:`SAME_WORK` recorded with different values; measured mean input or output
    lengths more than ``LENGTH_TOL`` apart; cache-hit shares more than ``CACHE_TOL_PCT`` percentage points
    apart, or any level served from the prefix cache. Notes: different seeds (the same generator, other prompt text)."""
    warnings: list[str] = []
    notes: list[str] = []
    if len(facts) < 2:
        return warnings, notes
    for key, what in SAME_WORK:
        values = [f.get(key) for f in facts]
        known = {str(v) for v in values if v is not None}
        if len(known) > 1:
            warnings.append(f"The runs differ in {what} ({_listing(labels, values)}): they did not send the "
                            "same requests, so their figures measure different work.")
    for key, what in (("mean_input_tokens", "input"), ("mean_output_tokens", "output")):
        values = [f.get(key, math.nan) for f in facts]
        known = [v for v in values if not math.isnan(v)]
        if known and min(known) > 0 and max(known) / min(known) - 1 > LENGTH_TOL:
            extra = (" (a tokenizer of its own, or the chat template counted or not, changes the count)"
                     if what == "input" else " (max_tokens, EOS, or --ignore-eos)")
            warnings.append(f"Measured mean {what} lengths differ by more than {LENGTH_TOL:.0%} "
                            f"({_listing(labels, values, '{:.1f}')} tokens){extra}: token rates compare "
                            "different work.")
    shares = [f.get("cache_hit_pct", math.nan) for f in facts]
    known = [r for r in shares if not math.isnan(r)]
    cached = [lab for lab, f in zip(labels, facts) if f.get("served_from_cache")]
    if cached or (len(known) > 1 and max(known) - min(known) > CACHE_TOL_PCT):
        who = f"; served from the prefix cache: {', '.join(cached)}" if cached else ""
        warnings.append(f"Prefix-cache hits differ ({_listing(labels, shares, '{:.0f}%')} of prompt tokens at "
                        f"most{who}): a run whose prompts were cached shows a lower TTFT than fresh prompts "
                        "give, so TTFT and input throughput do not compare.")
    seeds = [f.get("seed") for f in facts]
    if len({str(v) for v in seeds if v is not None}) > 1:
        notes.append(f"The runs' prompt seeds differ ({_listing(labels, seeds)}): the same prompt generator and "
                     "lengths, different text, which keeps an engine's prefix cache from serving one run the "
                     "prompts of another. `--seed` with one value sends identical prompts.")
    return warnings, notes
