"""One window accounting for every per-level rate, and where a level's window opens and closes.

The records here are what an exact-timing engine gives a closed loop: every request takes TTFT then
(n - 1) x TPOT, users send their next request at once, so requests run in waves (the hardest case for a
window: whole waves start and end together at its edges).
"""

import numpy as np
import pandas as pd
import pytest

from tokenswarm.report.levels import (
    MIN_COMPLETED,
    MIN_LIFETIMES,
    Window,
    level_stats,
    window_rates,
    window_weights,
    windows_from,
)


def waves(users: int, t0: float, until: float, ttft_s: float, tpot_s: float, n_out: int, n_in: int,
          gap_s: float = 0.0005, level: float | None = None, stagger_s: float = 0.0) -> pd.DataFrame:
    """Closed-loop records: ``users`` users from ``t0`` (user u at t0 + u * stagger_s), each sending its next
    request ``gap_s`` after the last ended, until ``until``."""
    life = ttft_s + (n_out - 1) * tpot_s
    rows = []
    for u in range(users):
        t = t0 + u * stagger_s
        while t < until:
            rows.append((t, u))
            t += life + gap_s
    start = np.array([r[0] for r in rows])
    k = len(rows)
    return pd.DataFrame({
        "start_time": start, "level": float(level if level is not None else users), "user": [r[1] for r in rows],
        "status": "ok", "ttft_ms": ttft_s * 1000, "tpot_ms": tpot_s * 1000, "e2e_ms": life * 1000,
        "close_ms": life * 1000 + 0.3, "input_tokens": float(n_in), "output_tokens": float(n_out),
        "cached_tokens": np.nan, "scheduled_time": np.nan, "itl_ms": [""] * k,
    }).sort_values("start_time", ignore_index=True)


def true_tokens(df: pd.DataFrame, lo: float, hi: float) -> float:
    """Output tokens written inside [lo, hi): token k of a request at its first token + k x TPOT."""
    total = 0
    for s, ttft, tpot, n in zip(df.start_time, df.ttft_ms, df.tpot_ms, df.output_tokens):
        t = s + ttft / 1000 + np.arange(int(n)) * tpot / 1000
        total += int(((t >= lo) & (t < hi)).sum())
    return float(total)


@pytest.mark.parametrize("users, n_out, n_in", [(4, 128, 145), (16, 128, 100), (1, 64, 32), (16, 1, 300)])
def test_every_rate_uses_one_window_so_req_s_times_lengths_equal_the_token_rates(users, n_out, n_in):
    # TTFT 150 ms, TPOT 15 ms: a 2.055 s request; windows of about 6 lifetimes placed anywhere in the waves
    df = waves(users, 1000.0, 1060.0, 0.150, 0.015, n_out, n_in)
    rng = np.random.default_rng(users * 1000 + n_out)
    for lo in 1005.0 + rng.uniform(0, 20, 8):
        hi = lo + 12.8
        row = level_stats(df, [Window(users, lo, hi, 1000.0)]).iloc[0]
        req_s = row["request_throughput_req_s"]
        assert req_s * row["mean_input_tokens"] == pytest.approx(row["input_throughput_tok_s"], rel=0.01)
        assert req_s * row["mean_output_tokens"] == pytest.approx(row["output_throughput_tok_s"], rel=0.01)
        total = row["input_throughput_tok_s"] + row["output_throughput_tok_s"]
        assert row["total_throughput_tok_s"] == pytest.approx(total)
        if n_out > 1:  # the output rate is the engine's own token writes in the window
            assert row["output_throughput_tok_s"] == pytest.approx(true_tokens(df, lo, hi) / (hi - lo), rel=0.01)


def test_a_request_crossing_the_edge_counts_for_its_share_inside():
    # spans first..last token: [0, 10] half inside [5, 20); [6, 8] whole; [19, 29] a tenth; one-token at 7 inside
    w = window_weights(np.array([0.0, 6.0, 19.0, 7.0, 30.0]), np.array([10.0, 8.0, 29.0, 7.0, 30.0]), 5.0, 20.0)
    assert w.tolist() == pytest.approx([0.5, 1.0, 0.1, 1.0, 0.0])
    r = window_rates(np.array([0.0, 6.0]), np.array([10.0, 8.0]), np.array([100.0, 40.0]),
                     np.array([11.0, 3.0]), 5.0, 20.0, good=np.array([False, True]))
    assert r.request_s == pytest.approx(1.5 / 15) and r.goodput_req_s == pytest.approx(1.0 / 15)
    assert r.input_tok_s == pytest.approx((50 + 40) / 15) and r.output_tok_s == pytest.approx((5.5 + 3) / 15)
    assert np.isnan(window_rates(np.array([1.0]), np.array([2.0]), np.array([1.0]), np.array([1.0]), 5.0, 5.0)
                    .request_s)


def test_a_single_runs_window_opens_at_its_first_request_not_at_the_level_start():
    # the level starts at 1000.0 and its users are up 0.8 s later (spawning, connecting); the load runs 20 s
    df = waves(8, 1000.8, 1020.8, 0.150, 0.015, 128, 128, stagger_s=0.01)
    timeline = [{"level": 8, "start": 1000.0, "end": 1020.8}]
    (w,) = windows_from(df, timeline)
    assert w.start == pytest.approx(1000.8) and w.end == 1020.8 and w.level_start == 1000.0
    row = level_stats(df, [w]).iloc[0]
    truth = true_tokens(df, w.start, w.end) / (w.end - w.start)
    assert row["output_throughput_tok_s"] == pytest.approx(truth, rel=0.001)
    # the level start (the old window) would have read 0.8 s of nothing: 20 / 20.8 = -3.8 %
    old = level_stats(df, [Window(8, 1000.0, 1020.8, 1000.0)]).iloc[0]
    assert old["output_throughput_tok_s"] / truth - 1 == pytest.approx(-0.8 / 20.8, abs=0.002)
    # a warm-up counts from the first send
    (w2,) = windows_from(df, timeline, warmup_s=2.0)
    assert w2.start == pytest.approx(1002.8)


def test_a_timed_closed_loops_window_opens_once_its_last_user_has_sent():
    # 16 users whose first sends are spread over 1.6 s (0.1 s apart): until the last has sent, the level runs
    # below its concurrency, so its rates and its achieved concurrency would read low
    df = waves(16, 1000.0, 1020.0, 0.150, 0.015, 64, 64, stagger_s=0.1)
    timeline = [{"level": 16, "start": 1000.0, "end": 1020.0}]
    (w,) = windows_from(df, timeline, closed_loop=True)
    assert w.start == pytest.approx(1001.5)  # user 15's first send
    row = level_stats(df, [w]).iloc[0]
    assert row["achieved_concurrency"] == pytest.approx(16, rel=0.01)
    (ramp,) = windows_from(df, timeline)  # from the first send: the ramp is inside and reads low
    assert level_stats(df, [ramp]).iloc[0]["achieved_concurrency"] < 0.97 * 16
    # a warm-up that ends later still rules; a --requests run (budget) keeps its first send
    (later,) = windows_from(df, timeline, warmup_s=3.0, closed_loop=True)
    assert later.start == pytest.approx(1003.0)
    (budget,) = windows_from(df, timeline, closed_loop=True, budget=True)
    assert budget.start == pytest.approx(1000.0)


def test_a_level_below_the_one_before_opens_once_the_earlier_requests_have_ended():
    # 8 users, then 4: the 8's last requests (2 s long) still hold the server well into the 4's level
    high = waves(8, 1000.7, 1010.0, 0.5, 0.05, 31, 10)
    low = waves(4, 1010.0, 1030.0, 0.5, 0.05, 31, 10)
    df = pd.concat([high, low], ignore_index=True)
    timeline = [{"level": 8, "start": 1000.0, "end": 1010.0}, {"level": 4, "start": 1010.0, "end": 1030.0}]
    _, w = windows_from(df, timeline)
    last_end = float((high.start_time + high.close_ms / 1000).max())
    assert last_end > 1010.5 and w.start == pytest.approx(last_end)
    # a level above the one before opens at its start, as before
    up = [{"level": 4, "start": 1000.0, "end": 1010.0}, {"level": 8, "start": 1010.0, "end": 1030.0}]
    df_up = pd.concat([waves(4, 1000.0, 1010.0, 0.5, 0.05, 31, 10), waves(8, 1010.0, 1030.0, 0.5, 0.05, 31, 10)],
                      ignore_index=True)
    assert windows_from(df_up, up)[1].start == pytest.approx(1010.0)


def test_a_requests_budget_run_closes_its_window_at_the_last_close():
    df = waves(4, 1000.2, 1010.0, 0.150, 0.015, 64, 64)
    last_close = float((df.start_time + df.close_ms / 1000).max())
    timeline = [{"level": 4, "start": 1000.0, "end": last_close + 0.05}]  # the run noticed 50 ms later
    (budget,) = windows_from(df, timeline, budget=True)
    assert budget.end == pytest.approx(last_close) and budget.start == pytest.approx(1000.2)
    (timed,) = windows_from(df, timeline)  # a --duration run keeps its end: idle users are part of the load
    assert timed.end == pytest.approx(last_close + 0.05)


def test_later_levels_of_a_sweep_keep_their_start_and_requests_carried_over_count():
    one = waves(2, 1000.0, 1010.0, 0.1, 0.01, 50, 10)
    two = waves(4, 1010.0, 1020.0, 0.1, 0.01, 50, 10)
    df = pd.concat([one, two], ignore_index=True)
    timeline = [{"level": 2, "start": 1000.0, "end": 1010.0}, {"level": 4, "start": 1010.0, "end": 1020.0}]
    w1, w2 = windows_from(df, timeline)
    assert (w1.start, w1.end, w2.start, w2.end) == (1000.0, 1010.0, 1010.0, 1020.0)
    rows = level_stats(df, [w1, w2])
    # level 2's last requests end inside level 4's window and count there, for their share
    carried = one[one.start_time + one.e2e_ms / 1000 > 1010.0]
    assert len(carried) and rows.loc[1, "output_throughput_tok_s"] == pytest.approx(
        true_tokens(df, 1010.0, 1020.0) / 10.0, rel=0.01)


def test_a_window_of_few_request_lifetimes_or_completions_is_flagged_short():
    df = waves(16, 1000.0, 1100.0, 0.150, 0.015, 128, 128)
    life = 0.150 + 127 * 0.015
    long_row = level_stats(df, [Window(16, 1010.0, 1010.0 + 6 * life, 1000.0)]).iloc[0]
    assert long_row["window_lifetimes"] == pytest.approx(6.0, rel=0.01) and not long_row["short_window"]
    short = level_stats(df, [Window(16, 1010.0, 1010.0 + 2 * life, 1000.0)]).iloc[0]
    assert short["window_lifetimes"] < MIN_LIFETIMES and short["short_window"]
    few = waves(1, 1000.0, 1000.0 + (MIN_COMPLETED - 2) * life, 0.150, 0.015, 128, 128)
    row = level_stats(few, [Window(1, 1000.0, 1000.0 + (MIN_COMPLETED - 2) * life, 1000.0)]).iloc[0]
    assert row["window_lifetimes"] >= MIN_LIFETIMES and row["short_window"]  # lifetimes enough, completions not


def test_failed_pct_is_failed_over_finished():
    df = waves(4, 1000.0, 1020.0, 0.1, 0.01, 20, 10)
    k = len(df)
    df.loc[: 9, "status"] = "http_error"
    df.loc[10: 12, "status"] = "cancelled"
    row = level_stats(df, [Window(4, 1000.0, 1020.0, 1000.0)]).iloc[0]
    assert row["failed"] == 10 and row["cancelled"] == 3
    assert row["failed_pct"] == pytest.approx(100.0 * 10 / (k - 3))


def test_a_high_cache_hit_ratio_is_flagged_unless_the_workload_shares_prompts():
    df = waves(4, 1000.0, 1020.0, 0.1, 0.01, 20, 100)
    w = [Window(4, 1000.0, 1020.0, 1000.0)]
    df["cached_tokens"] = 96.0
    row = level_stats(df, w).iloc[0]
    assert row["cache_hit_pct"] == pytest.approx(96.0) and row["served_from_cache"]
    assert not level_stats(df, w, expect_cache=True).iloc[0]["served_from_cache"]
    df["cached_tokens"] = 16.0  # a chat template's first block: fresh prompts
    assert not level_stats(df, w).iloc[0]["served_from_cache"]
    # short prompts behind a long chat template: over half the tokens cached, yet each prompt's own part not
    df["input_tokens"], df["cached_tokens"] = 46.0, 24.0
    row = level_stats(df, w).iloc[0]
    assert row["cache_hit_pct"] > 50 and not row["served_from_cache"]
    df["cached_tokens"] = 32.0  # vLLM's blocks over all but the last part of the prompt: served again
    assert level_stats(df, w).iloc[0]["served_from_cache"]
    df["cached_tokens"] = np.nan  # a server that reports nothing
    assert not level_stats(df, w).iloc[0]["served_from_cache"]
