"""A capacity search's answer, from its run folder: capacity.json, the line that answers, and the plot.

The search (:mod:`tokenswarm.capacity`) ran live: each probe's verdict is in run.json's timeline
(``verdict``, ``decided``). Here the same search is replayed from those verdicts, and its answer's interval
is computed from the probes' final intervals in levels.csv (:mod:`tokenswarm.report.intervals`), which rest on
every record (the live ones left out the requests still in flight).

capacity.json: ``max_level``, ``ci_low``, ``ci_high``, ``estimate``, ``status`` (found, none, at_least,
undecided), ``reason``, ``mode`` (concurrency or rate), ``slo`` (the limits), ``slo_attainment``,
``binding`` (the SLO that sets the answer), ``seconds`` (the search's wall time) and ``probes``: each probe's
level, verdict, whether its intervals decided it, its duration and its figures (each SLO key's estimate and
interval).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pandas as pd

from tokenswarm import runfolder
from tokenswarm.capacity import CapacitySearch, answer
from tokenswarm.report.intervals import ci_columns
from tokenswarm.report.levels import SLO_KEYS

CAPACITY_JSON = "capacity.json"
CAPACITY_PLOT = "capacity.png"
NAMES = {"ttft": "TTFT", "tpot": "TPOT", "e2e": "E2E", "itl": "ITL"}


def is_capacity(meta: dict[str, Any]) -> bool:
    """The run was a capacity search (run.json ``settings.capacity``)."""
    settings = meta.get("settings") if isinstance(meta.get("settings"), dict) else {}
    return isinstance(settings.get("capacity"), dict)


def _figure(row: dict[str, Any], key: str) -> tuple[float, float, float]:
    name = f"{key}_pct" if key == "slo_attainment" else f"{key}_ms"
    low, high = ci_columns(name)

    def f(col: str) -> float:
        try:
            return float(row.get(col, np.nan))
        except (TypeError, ValueError):
            return math.nan

    return f(name), f(low), f(high)


def slo_text(slo: dict[str, float], attainment: float | None) -> str:
    """``TTFT p99 <= 500 ms, TPOT p99 <= 50 ms`` (and ``TTFT <= 500 ms for 99 % of requests``)."""
    parts = []
    for key, limit in slo.items():
        metric, _, stat = key.partition("_")
        if stat:
            parts.append(f"{NAMES.get(metric, metric)} {stat} <= {limit:g} ms")
        else:
            parts.append(f"{NAMES.get(metric, metric)} <= {limit:g} ms")
    text = ", ".join(parts)
    per_request = [k for k in slo if k in SLO_KEYS]
    if per_request and attainment is not None:
        text += f" (for {attainment * 100:g} % of requests)"
    return text


def build(run_dir: str, meta: dict[str, Any], levels: pd.DataFrame) -> dict[str, Any] | None:
    """capacity.json's content for a capacity run (None for other runs), written into ``run_dir``."""
    if not is_capacity(meta):
        return None
    s = meta["settings"]
    cap = s["capacity"]
    mode = "rate" if s.get("mode") == "rate" else "concurrency"
    bracket = [float(x) for x in cap.get("bracket") or []]
    slo = {k: float(v) for k, v in (s.get("slo") or {}).items()}
    limits = {k: v for k, v in slo.items() if k in SLO_KEYS}
    targets = {k: v for k, v in slo.items() if k not in SLO_KEYS}
    attainment = float(s.get("slo_attainment") or 0.99) if limits else None
    search = CapacitySearch(bracket[0], bracket[-1], integers=mode == "concurrency",
                            resolution_pct=float(cap.get("resolution_pct", 5.0)),
                            max_probes=int(cap.get("max_probes", 20)))
    timeline = [seg for seg in meta.get("timeline") or [] if isinstance(seg, dict)]
    rows = {float(r["level"]): r for r in levels.to_dict("records")} if "level" in levels.columns else {}
    figures: dict[float, dict[str, tuple[float, float, float]]] = {}
    probes = []
    for seg in timeline:
        if seg.get("verdict") not in ("holds", "fails"):
            continue  # a probe cut short (the run was interrupted): no verdict
        level = float(seg["level"])
        seconds = float(seg["end"]) - float(seg["start"]) if seg.get("end") is not None else 0.0
        search.record(level, seg["verdict"], bool(seg.get("decided", True)), seconds)
        row = rows.get(level, {})
        keys = list(targets) + (["slo_attainment"] if limits else [])
        figures[level] = {k: _figure(row, k) for k in keys}
        probes.append({k: {"estimate": v[0], "ci_low": v[1], "ci_high": v[2]} for k, v in figures[level].items()})
    search.next_level()  # sets the reason when the search stopped on its budget
    if not figures:
        out: dict[str, Any] = {"status": "undecided", "reason": "no probe finished", "max_level": None,
                               "ci_low": None, "ci_high": None, "estimate": None, "binding": None, "probes": []}
    else:
        out = answer(search, figures, targets, attainment)
        for p, figs in zip(out["probes"], probes):
            p["figures"] = figs
    if out["status"] == "undecided" and not out.get("reason") and meta.get("complete") is False:
        out["reason"] = "the run was interrupted before the search ended"
    started, ended = meta.get("started"), meta.get("ended")
    out.update(mode=mode, slo=slo, slo_attainment=attainment, bracket=bracket,
               seconds=float(ended) - float(started) if started and ended else None)
    out["line"] = answer_line(out)
    runfolder.write_json(os.path.join(run_dir, CAPACITY_JSON), out)
    return out


def answer_line(c: dict[str, Any]) -> str:
    """``max concurrency meeting TTFT p99 <= 500 ms: 48 (95 % CI 44-52); 7 probes, 6 min``, or why there is no
    answer."""
    what = "max request rate" if c.get("mode") == "rate" else "max concurrency"
    slo = slo_text(c.get("slo") or {}, c.get("slo_attainment"))
    n = len(c.get("probes") or [])
    secs = c.get("seconds")
    took = f"; {n} probe{'s' if n != 1 else ''}" + (f", {_duration(secs)}" if secs else "")
    unit = " req/s" if c.get("mode") == "rate" else ""
    status = c.get("status")
    if status == "none":
        return f"{what} meeting {slo}: none (the smallest level tried, {c.get('failed_above'):g}{unit}, fails){took}"
    if status == "undecided" or c.get("max_level") is None:
        return f"{what} meeting {slo}: undecided ({c.get('reason') or 'the search did not narrow its bracket'}){took}"
    ci = ""
    lo, hi = c.get("ci_low"), c.get("ci_high")
    if lo is not None and hi is not None:
        ci = f" (95 % CI {lo:g}-{hi:g})"
        if not lo <= c["max_level"] <= hi and c.get("estimate") is not None:
            # the interval is of where the SLOs are crossed; the answer is the highest probe that held, and the
            # two disagree (a probe's verdict and the curve through all probes' figures): say both
            ci = (f" (the highest probe that held; the probes' figures cross the SLOs at {c['estimate']:g}{unit}, "
                  f"95 % CI {lo:g}-{hi:g})")
    at_least = "at least " if status == "at_least" else ""
    return f"{what} meeting {slo}: {at_least}{c['max_level']:g}{unit}{ci}{took}"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def plot(c: dict[str, Any], out_dir: str, title: str = "") -> str | None:
    """plots/capacity.png: the binding SLO's figure at each probe, with its interval, the limit, and the probes'
    order and verdicts (labels placed clear of each other); the answer's interval shaded. ``title``: the run
    (engine, model, run id), the title's second line. None without probes."""
    probes = c.get("probes") or []
    key = c.get("binding")
    if not probes or not key:
        return None
    from tokenswarm.report.plots import _figure as new_figure
    from tokenswarm.report.plots import _save, _title, place_labels, use_log2

    os.makedirs(out_dir, exist_ok=True)
    fig, ax = new_figure()
    pts = [(p["level"], p["figures"][key], p["verdict"], i + 1, p["decided"]) for i, p in enumerate(probes)
           if key in p.get("figures", {})]
    for level, f, verdict, _order, decided in pts:
        est, low, high = f["estimate"], f["ci_low"], f["ci_high"]
        color = "#27ae60" if verdict == "holds" else "#c0392b"
        err = [[est - low if math.isfinite(low) else 0.0], [high - est if math.isfinite(high) else 0.0]]
        ax.errorbar([level], [est], yerr=err, marker="o" if decided else "s", color=color, capsize=3,
                    markerfacecolor=color if decided else "none")
    limit = (c.get("slo") or {}).get(key, 100.0 * (c.get("slo_attainment") or 0.99))
    ax.axhline(limit, color="#7f8c8d", linestyle="--", linewidth=1, label=f"limit {limit:g}")
    if c.get("ci_low") is not None and c.get("ci_high") is not None:
        ax.axvspan(c["ci_low"], c["ci_high"], color="#3498db", alpha=0.15, label="answer's 95 % CI")
    levels = [p[0] for p in pts]
    if use_log2(levels):
        ax.set_xscale("log", base=2)
    ax.set_xlabel("Request rate (req/s)" if c.get("mode") == "rate" else "Concurrency")
    metric, _, stat = key.partition("_")
    ax.set_ylabel(f"{NAMES.get(metric, metric)} {stat} (ms)" if key != "slo_attainment" else "SLO attainment (%)")
    _title(ax, "Capacity search: probes in order (green holds, red fails; hollow: by estimate)", title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    place_labels(ax, [p[0] for p in pts], [p[1]["estimate"] for p in pts], [str(p[3]) for p in pts])
    return _save(fig, os.path.join(out_dir, CAPACITY_PLOT))
