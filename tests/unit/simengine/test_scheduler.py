"""The simulated engine's schedulers (tokenswarm.simengine.scheduler): the stochastic mode's stated
distributions, and a fixed scheduler drawing each request's own TTFT and TPOT."""

import asyncio
import math
import random
import statistics

import pytest

from tokenswarm.simengine.scheduler import FixedScheduler, Lognormal


def test_a_lognormals_percentiles_and_mean_are_the_stated_ones():
    d = Lognormal(0.1, 0.3)
    assert d.percentile(50) == pytest.approx(0.1)
    assert d.percentile(90) == pytest.approx(0.1 * math.exp(0.3 * 1.2815516), rel=1e-6)
    assert d.mean == pytest.approx(0.1 * math.exp(0.045))
    rng = random.Random(1)
    draws = sorted(d.draw(rng) for _ in range(40_000))
    assert draws[20_000] == pytest.approx(d.percentile(50), rel=0.01)
    assert draws[36_000] == pytest.approx(d.percentile(90), rel=0.02)
    assert statistics.fmean(draws) == pytest.approx(d.mean, rel=0.01)
    assert Lognormal(0.05).draw(rng) == 0.05 and Lognormal(0.05).percentile(99) == 0.05  # sigma 0: fixed


class Seq:
    prompt_tokens = 8
    cached_tokens = 0

    def __init__(self, tokens):
        self.max_tokens, self.emitted, self.cancelled, self.times = tokens, 0, False, []

    def admitted(self, now):
        self.start = now

    def token(self, now, planned):
        self.times.append(planned)
        self.emitted += 1
        return self.emitted >= self.max_tokens


def test_each_request_draws_its_own_ttft_and_keeps_its_tpot_for_every_token():
    loop = asyncio.new_event_loop()
    try:
        sched = FixedScheduler(loop, 0.002, 0.001, ttft_sigma=0.5, tpot_sigma=0.5, seed=4)
        seqs = [Seq(5) for _ in range(20)]
        for s in seqs:
            sched.submit(s, loop.time())
        loop.run_until_complete(asyncio.sleep(0.2))
    finally:
        loop.close()
    ttfts = [s.times[0] - s.start for s in seqs]
    gaps = [[b - a for a, b in zip(s.times, s.times[1:])] for s in seqs]
    assert len(set(round(t, 9) for t in ttfts)) == 20  # each its own
    assert all(max(g) - min(g) < 1e-9 for g in gaps)  # one TPOT per request, planned exactly
    assert len(set(round(g[0], 9) for g in gaps)) == 20
