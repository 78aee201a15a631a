"""The report's parts by job: the client self-check, the engine's gauges, workload tables, composition helpers."""

import math
import os

import numpy as np
import pandas as pd
import pytest

from tokenswarm.report import compose, engine, plots, selfcheck, workloads
from tokenswarm.report.analysis import level_warmups, tokenizer_check
from tokenswarm.report.levels import Window

WINDOWS = [Window(1.0, 110.0, 120.0, 100.0), Window(2.0, 130.0, 140.0, 120.0)]
LEVELS = pd.DataFrame({"level": [1.0, 2.0, 4.0]})  # level 4 has no window


def test_fold_health_judges_only_the_samples_inside_each_window(tmp_path):
    rows = ["time,worker,cpu_pct,loop_lag_p99_ms,loop_lag_max_ms"]
    rows += [f"{t},w1,30,2,3" for t in range(110, 121)]  # level 1: calm
    rows += [f"{t},w1,99,2,3" for t in range(121, 130)]  # hot, but between the windows
    rows += [f"{t},w1,40,{25 if t in (133, 134) else 2},30" for t in range(130, 141)]  # level 2: two lagging s
    (tmp_path / "client_health.csv").write_text("\n".join(rows) + "\n")
    got, reasons = selfcheck.fold_selfcheck(LEVELS, str(tmp_path), WINDOWS)
    assert got["client_strained"].tolist()[:2] == [False, True] and math.isnan(got["client_strained"][2])
    assert got["client_cpu_max_pct"].tolist()[:2] == [30.0, 40.0]  # the 99 % seconds lie outside both windows
    assert got["client_lag_p99_ms"][0] == pytest.approx(2.0) and got["client_lag_p99_ms"][1] >= 2.0
    assert [lvl for lvl, v in reasons.items() if v["evidence"]] == [2.0]  # CPU and lag: evidence, not a verdict
    assert "event-loop lag p99 up to 25 ms" in reasons[2.0]["evidence"]
    assert not any(v["timing_uncertain"] or v["load_short"] for v in reasons.values())  # no figures: no flag
    assert "client_strained" not in LEVELS.columns  # the input is left alone
    assert selfcheck.fold_selfcheck(LEVELS, str(tmp_path / "none"), WINDOWS)[0] is LEVELS


def test_engine_gauges_are_window_means_with_the_kv_cache_in_percent():
    server = pd.DataFrame({"time": [105.0, 112.0, 118.0, 125.0, 135.0],
                           "running": [9.0, 2.0, 4.0, 9.0, 8.0], "waiting": [9.0, 0.0, 1.0, 9.0, 3.0],
                           "kv_cache_usage": [0.9, 0.10, 0.30, 0.9, 0.75]})
    got = engine.engine_gauges(LEVELS, server, WINDOWS)
    assert got["server_running"].tolist()[:2] == [3.0, 8.0] and got["server_waiting"].tolist()[:2] == [0.5, 3.0]
    assert got["server_kv_cache_usage_pct"].tolist()[:2] == pytest.approx([20.0, 75.0])
    assert got[["server_running", "server_kv_cache_usage_pct"]].iloc[2].isna().all()  # no window for level 4
    assert engine.engine_gauges(LEVELS, None, WINDOWS) is LEVELS
    no_kv = engine.engine_gauges(LEVELS, server.drop(columns="kv_cache_usage"), WINDOWS)
    assert no_kv["server_kv_cache_usage_pct"].isna().all() and no_kv["server_running"][0] == 3.0


def test_engine_gauges_plot_draws_only_when_there_are_gauges(tmp_path):
    levels = pd.DataFrame({"level": [1.0, 2.0], "server_running": [1.0, 2.0], "server_waiting": [0.0, 1.0],
                           "server_kv_cache_usage_pct": [10.0, 40.0]})
    path = plots.engine_gauges_plot(levels, str(tmp_path), "concurrency")
    assert path == str(tmp_path / plots.ENGINE_PLOT) and os.path.getsize(path) > 1000
    assert plots.engine_gauges_plot(LEVELS, str(tmp_path / "x"), "concurrency") is None


def write_requests(path, **cols):
    pd.DataFrame(cols).to_csv(path, index=False)
    return str(path)


def test_turn_table_per_turn_with_the_cache_share_in_percent(tmp_path):
    p = write_requests(tmp_path / "requests.csv", status=["ok", "ok", "ok", "timeout", "ok"],
                       turn=[1, 1, 2, 2, np.nan], ttft_ms=[100.0, 200.0, 50.0, np.nan, 999.0],
                       input_tokens=[100, 100, 400, 400, 10], cached_tokens=[0, 50, 300, 0, 0])
    t = workloads.turn_table(p).set_index("turn")
    assert t.loc[1, "requests"] == 2 and t.loc[2, "requests"] == 1  # failed and turn-less requests left out
    assert t.loc[1, "ttft_p50_ms"] == 150.0 and t.loc[1, "ttft_p99_ms"] == pytest.approx(199.0)
    assert t.loc[1, "cache_hit_pct"] == 25.0 and t.loc[2, "cache_hit_pct"] == 75.0
    assert t.loc[2, "mean_input_tokens"] == 400.0
    no_turns = write_requests(tmp_path / "plain.csv", status=["ok"], turn=[np.nan], ttft_ms=[1.0],
                              input_tokens=[1], cached_tokens=[0])
    assert workloads.turn_table(no_turns) is None


def test_trace_check_lags_and_gap_errors_per_worker(tmp_path):
    p = write_requests(tmp_path / "requests.csv", worker=["a", "a", "a", "b"],
                       scheduled_time=[10.0, 11.0, 13.0, 10.5], start_time=[10.001, 11.003, 13.002, 10.510])
    t = workloads.trace_check(p)
    assert t["requests"] == 4 and t["send_lag_max_ms"] == pytest.approx(10.0)
    assert t["send_lag_p50_ms"] == pytest.approx(2.5)
    # worker a's gaps: 1.002 s vs 1 s, 1.999 s vs 2 s -> 2 ms and 1 ms; b has one send, so no gap
    assert t["gap_error_p50_ms"] == pytest.approx(1.5) and t["gap_error_p99_ms"] == pytest.approx(1.99)
    one = write_requests(tmp_path / "one.csv", worker=["a"], scheduled_time=[1.0], start_time=[1.0])
    assert workloads.trace_check(one) == {}


def test_tokenizer_check_in_percent_of_usage(tmp_path):
    p = write_requests(tmp_path / "requests.csv", status=["ok", "ok", "ok", "timeout"],
                       token_source=["usage", "usage", "events", "usage"], output_tokens=[100, 100, 50, 10],
                       output_tokens_tokenizer=[103, 102, 10, 10])
    got = tokenizer_check(p)
    assert got == {"requests": 2, "output_tokens_usage": 200.0, "output_tokens_tokenizer": 205.0,
                   "difference_pct": pytest.approx(2.5), "disagree": True}
    close = write_requests(tmp_path / "close.csv", status=["ok"], token_source=["usage"], output_tokens=[100],
                           output_tokens_tokenizer=[101])
    assert tokenizer_check(close)["disagree"] is False


def test_level_warmups_pair_levels_and_warmups():
    assert level_warmups({"levels": [1, 4], "warmups_s": [2, 6.5]}) == {1.0: 2.0, 4.0: 6.5}
    assert level_warmups({"rates": [0.5], "warmups_s": [3]}) == {0.5: 3.0}
    assert level_warmups({"levels": [1, 4], "warmups_s": [2]}) is None
    assert level_warmups({"levels": [1], "warmups_s": ["x"]}) is None
    assert level_warmups({}) is None


def test_flagged_details_lists_the_flagged_levels_only():
    levels = pd.DataFrame({"level": [1, 2, 4], "late": [False, "True", True], "lag": [1.0, 2.0, 4.0]})
    got = compose.flagged_details(levels, "late", lambda x, r: f"{x:g}: {r['lag']:.0f}")
    assert got == "2: 2; 4: 4"
    assert compose.flagged_details(levels, "under_target", lambda x, r: "?") == ""
    assert compose.fmt_level(2.5, "rate") == "2.5 req/s" and compose.levels_list([1, 2], "rate") == "1, 2 req/s"
