"""The report's tables (tokenswarm.report.tables): figures with their intervals, and every flag's mark."""

import math

import pandas as pd

from tokenswarm.report import tables


def test_a_figure_prints_with_its_intervals_larger_side_and_an_unknown_bound_as_a_question_mark():
    rec = {"ttft_p99_ms": 100.0, "ttft_p99_ci_low_ms": 95.0, "ttft_p99_ci_high_ms": 112.0,
           "tpot_p99_ms": 10.0, "tpot_p99_ci_low_ms": 9.0, "tpot_p99_ci_high_ms": math.nan, "completed": 5}
    assert tables.with_interval(rec, "ttft_p99_ms", "{:.1f}") == "100.0 ±12.0"
    assert tables.with_interval(rec, "tpot_p99_ms", "{:.2f}") == "10.00 ±?"
    assert tables.with_interval(rec, "completed", "{:d}") == "5"  # no interval: the figure alone


def test_every_flag_carries_its_mark_and_the_legend_explains_it():
    levels = pd.DataFrame([
        {"level": 8.0, "short_window": True, "served_from_cache": False, "timing_uncertain": False,
         "load_short": True, "lockstep": True, "imprecise": False, "completed": 10},
        {"level": 16.0, "short_window": False, "served_from_cache": False, "timing_uncertain": True,
         "load_short": False, "lockstep": False, "imprecise": True, "completed": 10},
    ])
    heads, body = tables.rows(levels, (("level", "Concurrency", "{:g}"), ("completed", "OK", "{:d}")))
    assert [r[0].strip() for r in body] == ["8*<~", "16!?"]
    assert [line[0] for line in tables.legend(levels)] == ["*", "!", "<", "~", "?"]
