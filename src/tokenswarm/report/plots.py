"""PNG plots of a sweep (and of several sweeps side by side), drawn with matplotlib's Agg canvas.

Figures are made with :class:`matplotlib.figure.Figure` and
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg` directly: no
pyplot, no global backend switch, no display needed, nothing left open.
The level axis is log2 when the levels are all powers of two (1, 2, 4, ...
or 0.5, 1, 2 req/s) or span more than 8x, with the levels themselves as
ticks. The saturation level, when there is one, is marked on every plot.

Figures with a 95 % confidence interval in levels.csv (:mod:`tokenswarm.report.intervals`) carry error bars:
the interval's two sides; a side the data cannot bound (too few requests for a p99) is left off.

A latency axis whose values span more than :data:`LOG_SPAN` (TTFT of 16 ms at one level and 2,800 ms at
another) is logarithmic, so the low levels do not flatten into one line; other value axes start at 0. Each
title names what the plot shows and, on a second line, the run: engine, model and run id. Level labels
beside points are placed where they overlap no other label and no point (:func:`place_labels`).

Files: ``throughput.png`` (output tok/s vs level; levels too short to be
steady circled in grey; when any request failed, failed % per level as bars
on a second axis), ``ttft.png`` (TTFT p50
and p99), ``tpot.png`` (TPOT p50 and p99), ``latency_vs_throughput.png`` (p99
TTFT and p99 TPOT against output tok/s), ``interactivity.png`` (per-user output tok/s, 1000 / TPOT p50,
against total output tok/s, one point per level: :func:`interactivity_figure`), ``server_metrics.png`` (the
engine's gauges from its scraped /metrics: requests running and waiting, KV
cache used; :func:`engine_gauges_plot`). The compare plots carry the same
names with a ``compare_`` prefix and one line per run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tokenswarm.report.intervals import ci_columns
from tokenswarm.report.tables import LEVEL_HEADING

FIGSIZE = (7.0, 4.2)
DPI = 100
KNEE_COLOR = "#c0392b"
FAIL_COLOR = "#d35400"
FILES = ("throughput.png", "ttft.png", "tpot.png", "latency_vs_throughput.png")
INTERACTIVITY = "interactivity.png"  # per-user output tok/s against total output tok/s
LOG_SPAN = 10.0  # a latency axis whose highest value is more than this many times its lowest is logarithmic
LABEL_SIZE = 7
ENGINE_PLOT = "server_metrics.png"  # the engine's gauges, when the run scraped its /metrics
GPU_PLOT = "gpu.png"  # power and J per output token, when the run scraped a DCGM exporter (--gpu-metrics)


def use_log2(levels: Sequence[float]) -> bool:
    """Log2 axis when the positive levels are all powers of two, or span more than 8x."""
    lv = np.array([x for x in levels if x is not None and not math.isnan(x)], dtype=float)
    if lv.size < 2 or (lv <= 0).any():
        return False
    exps = np.log2(lv)
    return bool(np.allclose(exps, np.round(exps)) or lv.max() / lv.min() > 8)


def _figure(ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(FIGSIZE[0] * (1.0 if ncols == 1 else 1.55), FIGSIZE[1]), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def _level_axis(ax: Any, levels: Sequence[float], mode: str) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    lv = sorted({float(x) for x in levels if not math.isnan(x)})
    if use_log2(lv):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_locator(NullLocator())
    if lv:
        ax.xaxis.set_major_locator(FixedLocator(lv))
        ax.set_xticklabels([f"{x:g}" for x in lv], fontsize=8)
    ax.set_xlabel(LEVEL_HEADING.get(mode, "Level"))
    ax.grid(True, alpha=0.3)


def _mark_level(ax: Any, level: float | None) -> None:
    if level is not None:
        ax.axvline(level, color=KNEE_COLOR, linestyle="--", linewidth=1, label=f"saturation ({level:g})")


def _ylim0(ax: Any) -> None:
    """Start the y axis at 0, with headroom above the highest point."""
    _lo, hi = ax.get_ylim()
    ax.set_ylim(0, hi * 1.06 if hi > 0 else 1.0)


def _save(fig: Any, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _title(ax: Any, what: str, ident: str = "") -> None:
    """The plot's title: what it shows, and the run (engine, model, run id) on a second line."""
    ax.set_title(what + (f"\n{ident}" if ident else ""), fontsize=9.5)


def spans_decades(values: Any) -> bool:
    """The positive values span more than :data:`LOG_SPAN` (highest / lowest): a case for a log axis."""
    v = np.asarray([x for x in np.ravel(np.asarray(values, dtype=float)) if np.isfinite(x) and x > 0])
    return bool(v.size >= 2 and v.max() / v.min() > LOG_SPAN)


def _value_axis(ax: Any, values: Any, axis: str = "y") -> None:
    """A latency axis: logarithmic (plain numbers as ticks) when ``values`` span decades, else from 0."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if not spans_decades(values):
        if axis == "y":
            _ylim0(ax)
        return
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def _boxes_overlap(a: Any, b: Any, pad: float = 1.5) -> bool:
    """Two display boxes overlap or come within ``pad`` pixels of each other."""
    return a.x0 < b.x1 + pad and b.x0 < a.x1 + pad and a.y0 < b.y1 + pad and b.y0 < a.y1 + pad


#: label offsets from their point, in points, tried in this order (then further out)
_OFFSETS = ((5, 4), (5, -11), (-13, 4), (-13, -11), (6, -3), (-15, -3), (-4, 7), (-4, -14))


def place_labels(ax: Any, xs: Sequence[float], ys: Sequence[float], texts: Sequence[str],
                 marker_px: float = 5.0, **kw: Any) -> list[Any]:
    """Annotate each point (``xs``, ``ys`` in data units) with its text where the label overlaps no label
    placed before it and no point's marker (``marker_px`` around each point, in pixels): candidate offsets
    around the point, then further out with a thin leader line; the least overlapping when none is free.
    Call after the axes' limits and scales are final. Returns the annotations (matplotlib ``Annotation``)."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    ax.get_xlim(), ax.get_ylim()  # the limits as drawn: matplotlib applies a pending autoscale when asked
    pts = ax.transData.transform(np.column_stack([np.asarray(xs, float), np.asarray(ys, float)]))
    from matplotlib.transforms import Bbox

    markers = [Bbox.from_extents(px - marker_px, py - marker_px, px + marker_px, py + marker_px) for px, py in pts]
    legend = ax.get_legend()
    placed: list[Any] = [legend.get_window_extent(renderer)] if legend is not None else []  # labels stay off it
    out = []
    inside = ax.get_window_extent(renderer)
    for (x, y), text in zip(zip(xs, ys), texts):
        best = None
        for ring in (1.0, 1.8, 2.8, 4.0):
            for dx, dy in _OFFSETS:
                off = (dx * ring, dy * ring)
                ann = ax.annotate(text, (x, y), xytext=off, textcoords="offset points", fontsize=LABEL_SIZE,
                                  **kw)
                box = ann.get_window_extent(renderer)
                hits = sum(_boxes_overlap(box, b) for b in placed) + sum(_boxes_overlap(box, m) for m in markers)
                hits += 0 if inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1) else 1
                if best is None or hits < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (hits, ann, box, ring)
                else:
                    ann.remove()
                if hits == 0:
                    break
            if best is not None and best[0] == 0:
                break
        assert best is not None
        _hits, ann, box, ring = best
        if ring > 1.0:  # far from its point: a thin line says whose label it is
            ann.remove()
            ann = ax.annotate(text, (x, y), xytext=ann.xyann,
                              textcoords="offset points", fontsize=LABEL_SIZE,
                              arrowprops={"arrowstyle": "-", "color": "#999999", "linewidth": 0.6,
                                          "shrinkA": 0, "shrinkB": 3}, **kw)
        placed.append(box)
        out.append(ann)
    return out


def _xy(levels: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray]:
    if col not in levels.columns:
        return np.empty(0), np.empty(0)
    d = levels[["level", col]].astype(float).dropna().sort_values("level")
    return d["level"].to_numpy(), d[col].to_numpy()


def _errors(levels: pd.DataFrame, col: str) -> np.ndarray | None:
    """The 95 % interval of ``col`` per level as matplotlib's ``yerr`` (2 x n: below, above; an unknown side 0),
    in the order of :func:`_xy`; None when levels.csv has no interval for it."""
    low, high = ci_columns(col)
    if not {col, low, high} <= set(levels.columns):
        return None
    d = levels[["level", col, low, high]].astype(float)
    d = d[d[col].notna()].sort_values("level")
    below = np.nan_to_num((d[col] - d[low]).to_numpy(), nan=0.0).clip(0)
    above = np.nan_to_num((d[high] - d[col]).to_numpy(), nan=0.0).clip(0)
    return np.vstack([below, above]) if (below.any() or above.any()) else None


def _line(ax: Any, levels: pd.DataFrame, col: str, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
    """``col`` per level as a line with markers, and its interval as error bars where levels.csv has one."""
    x, y = _xy(levels, col)
    err = _errors(levels, col)
    if err is not None and err.shape[1] == x.size:
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, elinewidth=1, **kw)
    else:
        ax.plot(x, y, marker="o", **kw)
    return x, y


def _flag_levels(levels: pd.DataFrame, col: str) -> np.ndarray:
    """The levels whose flag column is set (True, also as read back from levels.csv)."""
    if col not in levels.columns:
        return np.empty(0)
    mask = levels[col].map(lambda v: str(v) in ("True", "true", "1", "1.0")).to_numpy(bool)
    return levels["level"].astype(float).to_numpy()[mask]


def _bar_width(x: np.ndarray, levels: Sequence[float]) -> Any:
    """Bars a third of the gap to the next level: widths in data units, on a linear or a log2 axis."""
    if x.size == 0:
        return 0.5
    if use_log2(levels):
        return x * (2 ** 0.33 - 1)  # a third of a doubling, to the right of the point
    gaps = np.diff(sorted(set(float(v) for v in levels)))
    return float(gaps.min()) / 3 if gaps.size else 0.5


def throughput_figure(levels: pd.DataFrame, knee: float | None = None, mode: str = "concurrency",
                      title: str = "") -> Any:
    """The throughput plot: output tok/s per level, short windows circled, failed % as bars on a second
    y axis when any request failed (the figure then has two axes)."""
    lv = levels["level"].astype(float).tolist() if "level" in levels.columns else []
    fig, ax = _figure()
    x, y = _line(ax, levels, "output_throughput_tok_s", color="#1f77b4", label="output tok/s")
    short = _flag_levels(levels, "short_window")
    if short.size:
        k = np.isin(x, short)
        ax.plot(x[k], y[k], marker="o", markersize=11, markerfacecolor="none", color="#7f7f7f", linestyle="none",
                label="short window (not steady)")
    _level_axis(ax, lv, mode)
    _mark_level(ax, knee)
    ax.set_ylabel("Output throughput (tok/s)")
    _ylim0(ax)
    _title(ax, "Output throughput", title)
    handles, labels = ax.get_legend_handles_labels()
    fx, fy = _xy(levels, "failed_pct")
    if fy.size and (fy > 0).any():  # failures beside the throughput, on their own axis
        ax2 = ax.twinx()
        ax2.bar(fx, fy, width=_bar_width(fx, lv), color=FAIL_COLOR, alpha=0.35, label="failed %")
        for xi, yi in zip(fx, fy):
            if yi > 0:
                ax2.annotate(f"{yi:.1f} %", (xi, yi), fontsize=7, color=FAIL_COLOR, ha="center",
                             textcoords="offset points", xytext=(0, 2))
        ax2.set_ylabel("Failed (% of finished requests)", color=FAIL_COLOR)
        ax2.set_ylim(0, max(5.0, float(fy.max()) * 2.0))  # the bars in the lower half, under the legend
        ax2.tick_params(axis="y", colors=FAIL_COLOR)
        ax.set_zorder(ax2.get_zorder() + 1)  # the throughput line over the bars
        ax.patch.set_visible(False)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=8)
    return fig


def sweep_plots(levels: pd.DataFrame, out_dir: str, knee: float | None = None, mode: str = "concurrency",
                title: str = "") -> list[str]:
    """Write the plots of one sweep into ``out_dir`` (created): :data:`FILES`, then :data:`INTERACTIVITY`
    when the levels have TPOT p50 and output tok/s; returns their paths. ``title``: the run (engine, model,
    run id), the second line of every title."""
    os.makedirs(out_dir, exist_ok=True)
    lv = levels["level"].astype(float).tolist() if "level" in levels.columns else []
    paths = []

    fig = throughput_figure(levels, knee, mode, title)
    paths.append(_save(fig, os.path.join(out_dir, FILES[0])))

    for name, latency, label in ((FILES[1], "ttft", "TTFT"), (FILES[2], "tpot", "TPOT")):
        fig, ax = _figure()
        values = []
        for pct, style in (("p50", "-"), ("p99", "--")):
            values.append(_line(ax, levels, f"{latency}_{pct}_ms", linestyle=style, label=f"{label} {pct}")[1])
        _level_axis(ax, lv, mode)
        _mark_level(ax, knee)
        ax.set_ylabel(f"{label} (ms)")
        _value_axis(ax, np.concatenate(values) if values else [])
        _title(ax, f"{label} percentiles", title)
        ax.legend(fontsize=8)
        paths.append(_save(fig, os.path.join(out_dir, name)))

    fig = latency_vs_throughput_figure(levels, knee, title)
    paths.append(_save(fig, os.path.join(out_dir, FILES[3])))
    fig = interactivity_figure(levels, knee, title)
    if fig is not None:
        paths.append(_save(fig, os.path.join(out_dir, INTERACTIVITY)))
    return paths


def latency_vs_throughput_figure(levels: pd.DataFrame, knee: float | None = None, title: str = "") -> Any:
    """p99 TTFT and p99 TPOT (two axes) against output tok/s, each point labelled with its level
    (:func:`place_labels`); a latency axis spanning decades is logarithmic."""
    fig, axes = _figure(2)
    for ax, col, label in ((axes[0], "ttft_p99_ms", "p99 TTFT (ms)"), (axes[1], "tpot_p99_ms", "p99 TPOT (ms)")):
        cols = [c for c in ("level", "output_throughput_tok_s", col) if c in levels.columns]
        d = levels[cols].astype(float).dropna().sort_values("level") if len(cols) == 3 else pd.DataFrame()
        ax.set_xlabel("Output throughput (tok/s)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if not len(d):
            continue
        ax.plot(d["output_throughput_tok_s"], d[col], marker="o", color="#2c3e50")
        k = d[d["level"] == knee] if knee is not None else d.iloc[0:0]
        if len(k):
            ax.plot(k["output_throughput_tok_s"], k[col], marker="o", markersize=11, markerfacecolor="none",
                    color=KNEE_COLOR, linestyle="none", label=f"saturation ({knee:g})")
            ax.legend(fontsize=8)
        _value_axis(ax, d[col].to_numpy())
        _xlim0(ax)
        place_labels(ax, d["output_throughput_tok_s"].tolist(), d[col].tolist(), [f"{v:g}" for v in d["level"]])
    _title(axes[0], "Latency vs throughput (labels: levels)", title)
    _title(axes[1], "", "")
    return fig


def _xlim0(ax: Any) -> None:
    """Start a linear x axis at 0, with room on the right for the last point's label."""
    if ax.get_xscale() == "linear":
        _lo, hi = ax.get_xlim()
        ax.set_xlim(0, hi * 1.08 if hi > 0 else 1.0)


def per_user_tok_s(levels: pd.DataFrame) -> pd.DataFrame:
    """Per level: ``level``, ``per_user_tok_s`` (1000 / TPOT p50, the output tok/s one stream sees, as vLLM's
    and AIPerf's charts draw it) with its interval from TPOT p50's (``per_user_low``/``per_user_high``: 1000 /
    the interval's high and low ends; NaN where unknown), and ``output_throughput_tok_s`` with its interval
    (``total_low``/``total_high``); levels without both figures are left out."""
    need = {"level", "tpot_p50_ms", "output_throughput_tok_s"}
    if not need <= set(levels.columns):
        return pd.DataFrame(columns=["level", "per_user_tok_s", "per_user_low", "per_user_high",
                                     "output_throughput_tok_s", "total_low", "total_high"])

    def col(name: str) -> pd.Series:
        return levels[name].astype(float) if name in levels.columns else pd.Series(np.nan, index=levels.index)

    tpot = col("tpot_p50_ms")
    t_low, t_high = (col(c) for c in ci_columns("tpot_p50_ms"))
    o_low, o_high = (col(c) for c in ci_columns("output_throughput_tok_s"))
    with np.errstate(divide="ignore", invalid="ignore"):
        d = pd.DataFrame({
            "level": levels["level"].astype(float), "per_user_tok_s": 1000.0 / tpot,
            "per_user_low": 1000.0 / t_high, "per_user_high": (1000.0 / t_low).where(t_low > 0),
            "output_throughput_tok_s": col("output_throughput_tok_s"), "total_low": o_low, "total_high": o_high})
    d = d[(tpot > 0) & d["output_throughput_tok_s"].notna()]
    return d.replace([np.inf, -np.inf], np.nan).sort_values("level").reset_index(drop=True)


def _interval_err(d: pd.DataFrame, col: str, low: str, high: str) -> np.ndarray | None:
    """matplotlib's 2 x n error bars of ``col`` from its ``low``/``high`` columns (an unknown side 0); None
    when no side is known."""
    below = np.nan_to_num((d[col] - d[low]).to_numpy(float), nan=0.0).clip(0)
    above = np.nan_to_num((d[high] - d[col]).to_numpy(float), nan=0.0).clip(0)
    return np.vstack([below, above]) if (below.any() or above.any()) else None


def _interactivity_line(ax: Any, d: pd.DataFrame, **kw: Any) -> None:
    xerr = _interval_err(d, "per_user_tok_s", "per_user_low", "per_user_high")
    yerr = _interval_err(d, "output_throughput_tok_s", "total_low", "total_high")
    if xerr is not None or yerr is not None:
        ax.errorbar(d["per_user_tok_s"], d["output_throughput_tok_s"], xerr=xerr, yerr=yerr, marker="o",
                    capsize=3, elinewidth=1, **kw)
    else:
        ax.plot(d["per_user_tok_s"], d["output_throughput_tok_s"], marker="o", **kw)


def interactivity_figure(levels: pd.DataFrame, knee: float | None = None, title: str = "") -> Any | None:
    """The interactivity/throughput trade-off: per-user output tok/s (x, 1000 / TPOT p50) against total
    output tok/s (y), one point per level, labelled with it; error bars from the figures' 95 % intervals.
    None when fewer than one level has both figures."""
    d = per_user_tok_s(levels)
    if not len(d):
        return None
    fig, ax = _figure()
    _interactivity_line(ax, d, color="#1f77b4", label="one point per level")
    k = d[d["level"] == knee] if knee is not None else d.iloc[0:0]
    if len(k):
        ax.plot(k["per_user_tok_s"], k["output_throughput_tok_s"], marker="o", markersize=12,
                markerfacecolor="none", color=KNEE_COLOR, linestyle="none", label=f"saturation ({knee:g})")
    ax.set_xlabel("Per-user output tok/s (1000 / TPOT p50)")
    ax.set_ylabel("Total output tok/s")
    ax.grid(True, alpha=0.3)
    _ylim0(ax)
    _xlim0(ax)
    ax.legend(fontsize=8, loc="upper right")
    place_labels(ax, d["per_user_tok_s"].tolist(), d["output_throughput_tok_s"].tolist(),
                 [f"{v:g}" for v in d["level"]])
    _title(ax, "Interactivity vs throughput (labels: levels)", title)
    return fig


def compare_plots(runs: Sequence[tuple[str, pd.DataFrame, float | None]], out_dir: str, mode: str = "concurrency"
                  ) -> list[str]:
    """One line per run (label, levels, saturation level); the files of :data:`FILES` and
    :data:`INTERACTIVITY` prefixed ``compare_``, and ``compare_energy.png`` (J per output token against output
    tok/s, one line per run) when some run scraped a DCGM exporter."""
    os.makedirs(out_dir, exist_ok=True)
    all_levels = sorted({float(x) for _, d, _ in runs for x in d["level"].astype(float)})
    paths = []
    specs = (
        (FILES[0], (("output_throughput_tok_s", "-"),), "Output throughput (tok/s)", "Output throughput"),
        (FILES[1], (("ttft_mean_ms", "-"), ("ttft_p99_ms", "--")), "TTFT (ms)", "TTFT: mean (solid), p99 (dashed)"),
        (FILES[2], (("tpot_mean_ms", "-"), ("tpot_p99_ms", "--")), "TPOT (ms)", "TPOT: mean (solid), p99 (dashed)"),
    )
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for name, series, ylabel, title in specs:
        fig, ax = _figure()
        values = []
        for (label, d, knee), color in zip(runs, colors):
            for col, style in series:
                values.append(_line(ax, d, col, linestyle=style, color=color,
                                    label=label if style == "-" else None)[1])
            if knee is not None:
                x, y = _xy(d, series[0][0])
                k = y[x == knee]
                if k.size:
                    ax.plot([knee], [k[0]], marker="o", markersize=11, markerfacecolor="none", color=color,
                            linestyle="none")
        _level_axis(ax, all_levels, mode)
        ax.set_ylabel(ylabel)
        if name == FILES[0]:
            _ylim0(ax)
        else:
            _value_axis(ax, np.concatenate(values) if values else [])
        ax.set_title(title + " (circle: saturation)", fontsize=10)
        ax.legend(fontsize=8)
        paths.append(_save(fig, os.path.join(out_dir, "compare_" + name)))
    fig, axes = _figure(2)
    for ax, col, label in ((axes[0], "ttft_p99_ms", "p99 TTFT (ms)"), (axes[1], "tpot_p99_ms", "p99 TPOT (ms)")):
        for (run_label, d, _knee), color in zip(runs, colors):
            cols = [c for c in ("level", "output_throughput_tok_s", col) if c in d.columns]
            if len(cols) < 3:
                continue
            dd = d[cols].astype(float).dropna().sort_values("level")
            ax.plot(dd["output_throughput_tok_s"], dd[col], marker="o", color=color, label=run_label)
            values.append(dd[col].to_numpy())
        ax.set_xlabel("Output throughput (tok/s)")
        ax.set_ylabel(label)
        _value_axis(ax, np.concatenate(values) if values else [])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        values = []
    axes[0].set_title("Latency vs throughput", fontsize=10)
    paths.append(_save(fig, os.path.join(out_dir, "compare_" + FILES[3])))
    fig = compare_interactivity_figure(runs)
    if fig is not None:
        paths.append(_save(fig, os.path.join(out_dir, "compare_" + INTERACTIVITY)))
    energy = [(label, d) for label, d, _knee in runs
              if "energy_per_output_token_j" in d.columns and d["energy_per_output_token_j"].notna().any()]
    if energy:
        fig, ax = _figure()
        for (label, d), color in zip(energy, colors):
            dd = d[["level", "output_throughput_tok_s", "energy_per_output_token_j"]].astype(float).dropna()
            dd = dd.sort_values("level")
            ax.plot(dd["output_throughput_tok_s"], dd["energy_per_output_token_j"], marker="o", color=color,
                    label=label)
            for lvl, x, y in zip(dd["level"], dd["output_throughput_tok_s"], dd["energy_per_output_token_j"]):
                ax.annotate(f"{lvl:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=LABEL_SIZE)
        ax.set_xlabel("Output throughput (tok/s)")
        ax.set_ylabel("J per output token")
        _ylim0(ax)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("Energy per output token vs throughput (labels: levels)", fontsize=10)
        paths.append(_save(fig, os.path.join(out_dir, "compare_energy.png")))
    return paths


def compare_interactivity_figure(runs: Sequence[tuple[str, pd.DataFrame, float | None]]) -> Any | None:
    """:func:`interactivity_figure` with one line per run (label, levels, saturation level: circled), each
    point labelled with its level; None when no run has the figures."""
    frames = [(label, per_user_tok_s(d), knee) for label, d, knee in runs]
    if not any(len(d) for _, d, _ in frames):
        return None
    fig, ax = _figure()
    xs: list[float] = []
    ys: list[float] = []
    texts: list[str] = []
    for i, (label, d, knee) in enumerate(frames):
        if not len(d):
            continue
        color = f"C{i % 10}"
        _interactivity_line(ax, d, color=color, label=label)
        k = d[d["level"] == knee] if knee is not None else d.iloc[0:0]
        if len(k):
            ax.plot(k["per_user_tok_s"], k["output_throughput_tok_s"], marker="o", markersize=12,
                    markerfacecolor="none", color=color, linestyle="none")
        xs += d["per_user_tok_s"].tolist()
        ys += d["output_throughput_tok_s"].tolist()
        texts += [f"{v:g}" for v in d["level"]]
    ax.set_xlabel("Per-user output tok/s (1000 / TPOT p50)")
    ax.set_ylabel("Total output tok/s")
    ax.grid(True, alpha=0.3)
    _ylim0(ax)
    _xlim0(ax)
    ax.legend(fontsize=8, loc="upper right")
    place_labels(ax, xs, ys, texts)
    ax.set_title("Interactivity vs throughput (labels: levels; circle: saturation)", fontsize=9.5)
    return fig


def engine_gauges_plot(levels: pd.DataFrame, out_dir: str, mode: str, title: str = "") -> str | None:
    """plots/server_metrics.png: the engine's gauges per level (``server_running``, ``server_waiting``:
    requests; ``server_kv_cache_usage_pct``: percent), from its scraped /metrics; None when the levels have none.
    """
    if not any(c in levels.columns and levels[c].notna().any()
               for c in ("server_running", "server_waiting", "server_kv_cache_usage_pct")):
        return None
    os.makedirs(out_dir, exist_ok=True)
    fig, ax = _figure()
    lv = levels["level"].astype(float).tolist()
    for col, label, style in (("server_running", "running", "-"), ("server_waiting", "waiting", "--")):
        x, y = _xy(levels, col)
        if len(x):
            ax.plot(x, y, marker="o", linestyle=style, label=f"requests {label}")
    _level_axis(ax, lv, mode)
    ax.set_ylabel("Requests at the engine (mean)")
    _ylim0(ax)
    _right_axis(ax, levels, "server_kv_cache_usage_pct", "KV cache used (%)", "#8e44ad", (0, 105))
    _title(ax, "Engine metrics (server_metrics.csv)", title)
    return _save(fig, os.path.join(out_dir, ENGINE_PLOT))


def _right_axis(ax: Any, levels: pd.DataFrame, col: str, label: str, color: str,
                ylim: tuple[float, float | None]) -> None:
    """Draw ``col`` against the level on a right-hand axis (when the levels have it), and one legend for both
    axes' lines."""
    x, y = _xy(levels, col)
    handles: list[Any] = []
    if len(x):
        ax2 = ax.twinx()
        handles = ax2.plot(x, y, marker="s", color=color, label=label)
        ax2.set_ylabel(label)
        ax2.set_ylim(*ylim)
    lines = ax.get_legend_handles_labels()[0] + handles
    ax.legend(lines, [h.get_label() for h in lines], fontsize=8, loc="upper left")


def gpu_plot(levels: pd.DataFrame, out_dir: str, mode: str, title: str = "") -> str | None:
    """plots/gpu.png: what the GPU spent per level (``gpu_power_w``: W summed over the GPUs, left axis;
    ``energy_per_output_token_j``: J per output token, right axis), from a DCGM exporter scraped during the run
    (:mod:`tokenswarm.report.gpu`); None when the levels have neither."""
    if not any(c in levels.columns and levels[c].notna().any()
               for c in ("gpu_power_w", "energy_per_output_token_j")):
        return None
    os.makedirs(out_dir, exist_ok=True)
    fig, ax = _figure()
    lv = levels["level"].astype(float).tolist()
    x, y = _xy(levels, "gpu_power_w")
    if len(x):
        ax.plot(x, y, marker="o", label="power (W, all GPUs)")
    _level_axis(ax, lv, mode)
    ax.set_ylabel("Power (W, mean over the window)")
    _ylim0(ax)
    _right_axis(ax, levels, "energy_per_output_token_j", "J per output token", "#27ae60", (0, None))
    _title(ax, "What the GPU spent (gpu_metrics.csv)", title)
    return _save(fig, os.path.join(out_dir, GPU_PLOT))
