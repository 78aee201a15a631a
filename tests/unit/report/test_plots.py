"""The plots read well: level labels clear of each other, log latency axes where the figures span decades,
titles naming the run, and the interactivity chart's points and error bars."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from tokenswarm.report import plots
from tokenswarm.report.analysis import analyse
from tokenswarm.report.build import plot_title
from tokenswarm.report.synthetic import write_run

IDENT = "vllm · Qwen/Qwen2.5-0.5B-Instruct · 20261207-105802-vllm"


@pytest.fixture(scope="module")
def saturated(tmp_path_factory) -> pd.DataFrame:
    """A sweep past the engine's 16 slots: from 16 on the points crowd at one throughput."""
    run = str(tmp_path_factory.mktemp("sat") / "run")
    write_run(run, levels=(1, 2, 4, 8, 16, 32, 64), capacity=16, seed=3)
    return analyse(run).levels


def _text_box(t, renderer):
    """A label's own box (an Annotation's window extent also covers its leader line)."""
    from matplotlib.text import Text

    return Text.get_window_extent(t, renderer)


def _label_boxes(ax):
    renderer = ax.figure.canvas.get_renderer()
    return [(t.get_text(), _text_box(t, renderer)) for t in ax.texts]


def _overlaps(boxes):
    return [(a, b) for (a, ba), (b, bb) in itertools.combinations(boxes, 2) if ba.overlaps(bb)]


def test_latency_vs_throughput_labels_do_not_overlap(saturated):
    fig = plots.latency_vs_throughput_figure(saturated, knee=16.0, title=IDENT)
    for ax in fig.axes:
        boxes = _label_boxes(ax)
        assert sorted(t for t, _ in boxes) == sorted(f"{v:g}" for v in saturated["level"])
        assert _overlaps(boxes) == []
        inside = ax.get_window_extent(fig.canvas.get_renderer())
        assert all(inside.x0 <= b.x0 and b.x1 <= inside.x1 and inside.y0 <= b.y0 and b.y1 <= inside.y1
                   for _, b in boxes)
    # the old placement (every label 4 pt up and right) overlapped on the crowded TPOT axis
    ax = fig.axes[1]
    old = [ax.annotate(t, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=plots.LABEL_SIZE)
           for t, x, y in zip(saturated["level"], saturated["output_throughput_tok_s"], saturated["tpot_p99_ms"])]
    renderer = fig.canvas.get_renderer()
    assert _overlaps([(a.get_text(), _text_box(a, renderer)) for a in old])


def test_labels_of_points_on_one_spot_still_part():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([0, 100], [0, 100])
    anns = plots.place_labels(ax, [50.0] * 6, [50.0] * 6, ["1", "2", "4", "8", "16", "32"])
    renderer = fig.canvas.get_renderer()
    assert len(anns) == 6 and _overlaps([(a.get_text(), _text_box(a, renderer)) for a in anns]) == []


def test_a_latency_axis_spanning_decades_is_logarithmic(saturated):
    ttft = saturated["ttft_p99_ms"].astype(float)
    assert ttft.max() / ttft.min() > plots.LOG_SPAN  # 60 ms at low levels, thousands past saturation
    fig = plots.latency_vs_throughput_figure(saturated, 16.0)
    assert fig.axes[0].get_yscale() == "log"
    tpot = saturated["tpot_p99_ms"].astype(float)
    assert tpot.max() / tpot.min() < plots.LOG_SPAN and fig.axes[1].get_yscale() == "linear"
    assert fig.axes[1].get_ylim()[0] == 0  # a linear value axis starts at 0
    assert plots.spans_decades([16, 58, 2800]) and not plots.spans_decades([16, 58, 150])
    assert not plots.spans_decades([0, 5, 500]) or plots.spans_decades([5, 500])  # zeros are left out


def test_titles_name_engine_model_and_run(saturated, tmp_path):
    fig = plots.throughput_figure(saturated, 16.0, title=IDENT)
    assert fig.axes[0].get_title().splitlines() == ["Output throughput", IDENT]
    assert IDENT in plots.latency_vs_throughput_figure(saturated, 16.0, IDENT).axes[0].get_title()
    assert IDENT in plots.interactivity_figure(saturated, 16.0, IDENT).axes[0].get_title()
    run = str(tmp_path / "run")
    write_run(run, levels=(1, 2), settings={"engine": "vllm", "model": "Qwen/Qwen2.5-0.5B-Instruct"})
    a = analyse(run)
    assert plot_title(a) == f"vllm · Qwen/Qwen2.5-0.5B-Instruct · {a.run_id}"


def test_per_user_tok_s_is_1000_over_tpot_p50_with_its_interval(saturated):
    d = plots.per_user_tok_s(saturated)
    lv = saturated.set_index(saturated["level"].astype(float))
    for r in d.itertuples():
        row = lv.loc[r.level]
        assert r.per_user_tok_s == pytest.approx(1000.0 / row["tpot_p50_ms"])
        assert r.per_user_low == pytest.approx(1000.0 / row["tpot_p50_ci_high_ms"])  # a slower TPOT: fewer tok/s
        assert r.per_user_high == pytest.approx(1000.0 / row["tpot_p50_ci_low_ms"])
        assert r.output_throughput_tok_s == row["output_throughput_tok_s"]
        assert r.total_low == row["output_throughput_ci_low_tok_s"]
    assert d["per_user_tok_s"].is_monotonic_decreasing  # more users share the engine: each sees fewer tok/s
    assert plots.per_user_tok_s(saturated.drop(columns="tpot_p50_ms")).empty


def test_interactivity_chart_has_a_point_per_level_with_error_bars(saturated):
    from matplotlib.container import ErrorbarContainer

    fig = plots.interactivity_figure(saturated, 16.0, IDENT)
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1 and bars[0].has_xerr and bars[0].has_yerr
    line = bars[0].lines[0]
    assert np.allclose(line.get_xdata(), 1000.0 / saturated.sort_values("level")["tpot_p50_ms"].astype(float))
    assert sorted(t.get_text() for t in ax.texts) == sorted(f"{v:g}" for v in saturated["level"])
    assert "Per-user output tok/s" in ax.get_xlabel() and ax.get_ylabel() == "Total output tok/s"
    no_ci = saturated[[c for c in saturated.columns if "_ci_" not in c]]
    ax = plots.interactivity_figure(no_ci).axes[0]
    assert not [c for c in ax.containers if isinstance(c, ErrorbarContainer)]  # no intervals: no bars


def test_compare_draws_one_interactivity_line_per_run(saturated):
    other = saturated.copy()
    other["output_throughput_tok_s"] *= 1.2
    fig = plots.compare_interactivity_figure([("vllm", saturated, 16.0), ("sglang", other, 16.0)])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["vllm", "sglang"]
    assert len(ax.texts) == 2 * len(saturated) and _overlaps(_label_boxes(ax)) == []
