"""Load strategies (tokenswarm.strategies): each one's next-send rule, their schedules, and which a level gets."""

import os
import random
import statistics
from argparse import Namespace

import pytest

from tokenswarm import strategies
from tokenswarm.options import namespace_defaults
from tokenswarm.settings import from_options
from tokenswarm.strategies import Concurrent, ConstantRate, GammaRate, PoissonRate, Trace
from tokenswarm.workloads import TracePrompts, load_trace

TRACES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "traces")


def sends(strategy, n, start=100.0, share=0, shares=1, seed=3):
    s = strategy.schedule(start, share, shares, random.Random(seed))
    return [s.take()[0] for _ in range(n)]


def test_poisson_sends_have_the_requested_rate_and_exponential_gaps():
    times = sends(PoissonRate(20.0), 20001)
    assert times[0] == 100.0
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert statistics.fmean(gaps) == pytest.approx(1 / 20.0, rel=0.03)
    assert statistics.pstdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, rel=0.05)  # exponential: CV 1


def test_gamma_burstiness_changes_the_spread_not_the_rate():
    def cv_and_mean(b):
        strategy, rng = GammaRate(10.0, burstiness=b), random.Random(5)
        gaps = [strategy.gap(10.0, rng) for _ in range(20000)]
        return statistics.pstdev(gaps) / statistics.fmean(gaps), statistics.fmean(gaps)

    bursty, m1 = cv_and_mean(0.25)
    regular, m2 = cv_and_mean(4.0)
    assert m1 == pytest.approx(0.1, rel=0.05) and m2 == pytest.approx(0.1, rel=0.05)
    assert bursty == pytest.approx(2.0, rel=0.1)  # CV of gamma = 1/sqrt(shape)
    assert regular == pytest.approx(0.5, rel=0.1)
    # burstiness 1 is Poisson, draw for draw
    assert sends(GammaRate(10.0, 1.0), 50) == sends(PoissonRate(10.0), 50)


def test_constant_sends_share_the_rate_among_processes_and_bad_arguments():
    assert sends(ConstantRate(4.0), 3, start=0.0) == [0.0, 0.25, 0.5]
    assert sends(ConstantRate(4.0), 3, start=0.0, shares=2) == [0.0, 0.5, 1.0]  # each of 2 sends half
    with pytest.raises(ValueError, match="unknown arrival kind"):
        strategies.rate_strategy("weibull", 1.0)
    with pytest.raises(ValueError, match="rate must be positive"):
        ConstantRate(0.0)
    with pytest.raises(ValueError, match="burstiness must be positive"):
        GammaRate(1.0, burstiness=0)
    with pytest.raises(ValueError, match="at least 1 stream"):
        Concurrent(0)


def test_a_closed_loop_has_no_schedule_and_runs_its_streams_as_users():
    c = Concurrent(16)
    assert not c.open_loop and c.users == 16 and c.schedule(0.0, 0, 1, random.Random()) is None
    r = PoissonRate(2.0, max_concurrency=64)
    assert r.open_loop and r.users == 64


def test_a_trace_sends_at_its_offsets_after_the_lead_and_shares_split_the_entries():
    entries = load_trace(os.path.join(TRACES, "mooncake.jsonl"))
    trace = Trace(entries, TracePrompts(seed=1))
    s = trace.schedule(100.0, 0, 1, random.Random())
    times, prompts = [], []
    while s.t != float("inf"):
        t, p = s.take()
        times.append(t)
        prompts.append(p)
    assert times == pytest.approx([100.0 + strategies.TRACE_LEAD_S + e.offset_s for e in entries])
    assert [p.input_tokens for p in prompts] == [e.input_len for e in entries]
    assert [p.max_tokens for p in prompts] == [e.output_len for e in entries]
    # entries 0 and 2 both start with hash id 0: the same first block of text (as far as both reach)
    n = min(entries[0].input_len, entries[2].input_len)
    assert prompts[0].text.split()[:n] == prompts[2].text.split()[:n]
    assert prompts[1].text.split()[:n] != prompts[0].text.split()[:n]
    second = trace.schedule(100.0, 1, 2, random.Random())  # process 1 of 2: entries 1, 3, ...
    assert second.t == pytest.approx(100.0 + strategies.TRACE_LEAD_S + entries[1].offset_s)


def test_each_level_gets_the_strategy_its_settings_ask_for():
    def settings(**kw):
        return from_options(Namespace(**{**vars(namespace_defaults()), **kw}), environ={})

    assert isinstance(strategies.for_level(settings(levels="1,8", level_duration="5s"), 8), Concurrent)
    assert strategies.for_level(settings(levels="1,8", level_duration="5s"), 8).users == 8
    rate = strategies.for_level(settings(rates="2", level_duration="5s", max_concurrency=32), 2)
    assert isinstance(rate, PoissonRate) and rate.rate == 2 and rate.users == 32
    const = strategies.for_level(settings(rates="2", level_duration="5s", arrival="constant"), 2)
    assert isinstance(const, ConstantRate)
    gamma = strategies.for_level(settings(rates="2", level_duration="5s", arrival="gamma", burstiness=0.5), 2)
    assert isinstance(gamma, GammaRate) and gamma.burstiness == 0.5
    assert isinstance(strategies.for_level(settings(), 16), Concurrent)  # one level: its user count
