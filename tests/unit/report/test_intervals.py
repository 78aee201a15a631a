"""Confidence intervals (tokenswarm.report.intervals): the pieces, and their coverage of a known truth through the
report's own level_stats. The coverage tests are seeded (deterministic): the rates they assert were measured
with margin (bench/interval_coverage.py prints them for any number of levels)."""

import math

import numpy as np
import pytest

from tokenswarm.report import intervals
from tokenswarm.report.intervals import Interval, Units, ci_columns
from tokenswarm.report.levels import level_stats, window_rates
from tokenswarm.report.synthetic import stochastic_level, stochastic_truth


def test_students_t_table_and_its_expansion():
    assert intervals.t975(1) == 12.706 and intervals.t975(19) == 2.093 and intervals.t975(30) == 2.042
    assert intervals.t975(40) == pytest.approx(2.0211, abs=0.001)  # exact 2.02108
    assert intervals.t975(120) == pytest.approx(1.9799, abs=0.001)
    assert intervals.t975(0) == math.inf


def test_blocks_are_a_lifetime_long_at_least_and_at_most_twenty():
    assert intervals.block_count(100.0, 1.0) == 20
    assert intervals.block_count(7.5, 1.0) == 7
    assert intervals.block_count(1.0, 5.0) == intervals.MIN_BLOCKS
    b = intervals.block_of(np.array([-1.0, 0.0, 4.99, 5.0, 9.99, 12.0]), 0.0, 10.0, 2)
    assert b.tolist() == [0, 0, 0, 1, 1, 1]  # before and after the window: its first and last block


def test_interval_columns_keep_the_unit_last():
    assert ci_columns("ttft_p99_ms") == ("ttft_p99_ci_low_ms", "ttft_p99_ci_high_ms")
    assert ci_columns("output_throughput_tok_s") == ("output_throughput_ci_low_tok_s",
                                                     "output_throughput_ci_high_tok_s")
    assert ci_columns("slo_attainment_pct") == ("slo_attainment_ci_low_pct", "slo_attainment_ci_high_pct")


def test_exact_values_give_a_point_and_too_few_requests_no_upper_bound_for_a_p99():
    same = np.full(200, 50.0)
    blocks = intervals.block_of(np.linspace(0, 10, 200), 0, 10, 10)
    iv = intervals.mean_interval(same, blocks, 10)
    assert (iv.estimate, iv.low, iv.high) == (50.0, 50.0, 50.0)
    rng = np.random.default_rng(1)
    few = rng.lognormal(0, 0.5, 100)
    p50, p99 = intervals.percentile_intervals(few, intervals.block_of(np.linspace(0, 10, 100), 0, 10, 10), 10,
                                              (50, 99))
    assert p50.low < p50.estimate < p50.high
    assert p99.low < p99.estimate and math.isnan(p99.high)  # 0.99 + t * se is past the data: unknown, not invented
    assert Interval(10.0, 9.0, 12.0).relative_half_width() == pytest.approx(0.15)


def test_a_requests_gaps_move_to_a_block_together():
    # two requests, one per block: ITL values 1,1,1 (block 0) and 5,5 (block 1)
    units = Units(np.array([0, 1]), 2, np.array([3, 2]))
    assert units.block_means(np.array([1.0, 1, 1, 5, 5])).tolist() == [1.0, 5.0]
    iv = intervals.mean_interval(np.array([1.0, 1, 1, 5, 5]), units, 2)
    assert iv.estimate == pytest.approx(2.6) and iv.low < 1.0 and iv.high > 5.0  # two blocks: a wide interval


def test_block_rates_average_to_the_window_rate_exactly():
    rng = np.random.default_rng(2)
    first = rng.uniform(0, 100, 3000)
    last = first + rng.exponential(3, 3000)
    last[:40] = first[:40]  # one-instant spans (one output token)
    n_in, n_out = rng.integers(1, 100, 3000).astype(float), rng.integers(1, 100, 3000).astype(float)
    whole = window_rates(first, last, n_in, n_out, 10.0, 90.0)
    for k in (2, 7, 20):
        req, inp, out = intervals.block_rates(first, last, [np.ones(3000), n_in, n_out], 10.0, 90.0, k)
        assert (req.mean(), inp.mean(), out.mean()) == pytest.approx((whole.request_s, whole.input_tok_s,
                                                                       whole.output_tok_s), rel=1e-12)


COVERED = ("ttft_mean_ms", "ttft_p50_ms", "ttft_p90_ms", "tpot_mean_ms", "tpot_p50_ms", "tpot_p90_ms", "itl_p50_ms",
           "request_throughput_req_s", "output_throughput_tok_s")


def _coverage(levels: int, sigma_state: float, naive: bool = False) -> dict[str, float]:
    truth = stochastic_truth(sigma_state=sigma_state)
    hits = dict.fromkeys(COVERED, 0)
    for seed in range(levels):
        df, w = stochastic_level(seed, sigma_state=sigma_state)
        row = level_stats(df, [w]).iloc[0]
        for f in COVERED:
            low, high = (row[c] for c in ci_columns(f))
            if naive and "_mean_" in f:  # what treating the requests as independent would give
                x = df.loc[df["start_time"] >= w.start, f.replace("_mean", "")].to_numpy()
                low, high = x.mean() - 1.96 * x.std(ddof=1) / math.sqrt(x.size), x.mean() + 1.96 * x.std(
                    ddof=1) / math.sqrt(x.size)
            hits[f] += bool(low <= truth[f] <= high)
    return {f: n / levels for f, n in hits.items()}


def test_intervals_cover_the_truth_when_neighbouring_requests_are_alike():
    # 150 seeded levels of ~600 requests whose server state correlates over 0.25 s; measured 0.94-0.97 per
    # figure (bench/interval_coverage.py, 300 levels); the bound 0.90 is 2.5 binomial sd below 0.94
    cov = _coverage(150, sigma_state=0.3)
    assert min(cov.values()) >= 0.90, cov
    naive = _coverage(150, sigma_state=0.3, naive=True)
    assert naive["ttft_mean_ms"] < 0.7 and naive["tpot_mean_ms"] < 0.7, naive  # measured 0.49 and 0.53


def test_intervals_cover_the_truth_for_independent_requests():
    cov = _coverage(150, sigma_state=0.0)  # measured 0.95-0.99
    assert min(cov.values()) >= 0.92, cov
