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


def test_whole_answers_get_their_own_columns_and_say_ttft_is_not_a_figure():
    import numpy as np

    from tokenswarm.report import tables as t

    whole = pd.DataFrame({"level": [2.0], "ttft_mean_ms": [np.nan], "e2e_mean_ms": [41.0], "e2e_p99_ms": [60.0],
                          "request_throughput_req_s": [30.0], "batch_size": [4], "inputs_throughput_s": [120.0],
                          "output_throughput_tok_s": [0.0], "completed": [10], "failed": [0]})
    heads, body = t.rows(whole)
    assert heads[:2] == ["Concurrency", "Mean Latency (ms)"] and "Inputs/s" in heads and "Batch" in heads
    assert "Mean TTFT (ms)" not in heads and "Output Throughput (tok/s)" not in heads
    assert body[0][heads.index("Inputs/s")] == "120.0"
    assert t.notes(whole) == [t.NOT_STREAMED_NOTE]
    chat = whole.drop(columns=["batch_size", "inputs_throughput_s"]).assign(output_throughput_tok_s=[90.0])
    heads, _ = t.rows(chat)  # stream: false chat: no batch, output throughput kept
    assert "Batch" not in heads and "Output Throughput (tok/s)" in heads
    streamed = chat.assign(ttft_mean_ms=[12.0])
    assert t.published(streamed) == t.PUBLISHED and t.notes(streamed) == []


def test_a_capacity_searchs_probes_print_in_ascending_level_order():
    # levels.csv holds a capacity search's probes in the order they ran (40, 20, 30, 25): the tables read up
    levels = pd.DataFrame({"level": [40.0, 20.0, 30.0, 25.0], "output_throughput_tok_s": [750.0, 520.0, 749.0, 630.0]})
    heads, body = tables.rows(levels, mode="rate")
    assert heads[0] == "Rate (req/s)" and [r[0].strip() for r in body] == ["20", "25", "30", "40"]
    assert [r[1] for r in body] == ["520.0", "630.0", "749.0", "750.0"]  # each row keeps its own figures
    assert list(levels["level"]) == [40.0, 20.0, 30.0, 25.0]  # the frame itself is left as it was
