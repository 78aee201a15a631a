"""The client self-check's verdict: bad seconds are counted per process, so a live verdict over part of a
level never disagrees with the verdict over the whole level."""

from tokenswarm import selfcheck
from tokenswarm.selfcheck import Sample


def samples(worker, lags, cpu=10.0, t0=0.0):
    return [Sample(t0 + i, worker, cpu, lag, lag) for i, lag in enumerate(lags)]


def test_one_slow_second_is_not_saturation_two_are():
    calm = [1.0] * 60
    assert selfcheck.verdict(samples("w1", calm)) == (False, "")
    one = calm[:30] + [34.0] + calm[31:]
    assert selfcheck.verdict(samples("w1", one))[0] is False
    two = one[:40] + [21.0] + one[41:]
    bad, why = selfcheck.verdict(samples("w1", two))
    assert bad and "w1" in why and "2 s at >= 20 ms" in why and "34 ms" in why


def test_seconds_count_per_process_not_pooled():
    # one slow second on each of two workers is not two slow seconds of one
    mixed = samples("w1", [1.0, 25.0, 1.0]) + samples("w2", [1.0, 1.0, 25.0])
    assert selfcheck.verdict(mixed)[0] is False
    hot = samples("w3", [1.0] * 5, cpu=95.0)
    bad, why = selfcheck.verdict(mixed + hot)
    assert bad and why == "w3: CPU up to 95% of a core (5 s at >= 90%)"  # only what tripped it: no lag figure


def test_cpu_needs_two_hot_seconds():
    assert selfcheck.verdict(samples("w1", [1.0] * 10, cpu=50.0) + samples("w1", [1.0], cpu=99.0, t0=10))[0] is False
    assert selfcheck.verdict(samples("w1", [1.0] * 2, cpu=90.0))[0] is True


def test_a_verdict_on_part_of_a_level_holds_on_the_whole():
    lags = [1.0] * 200
    for i in (37, 150, 151):
        lags[i] = 30.0
    level = samples("w1", lags)
    for n in range(1, len(level) + 1):
        if selfcheck.verdict(level[:n])[0]:
            assert selfcheck.verdict(level)[0], n
    assert [n for n in range(1, 201) if selfcheck.verdict(level[:n])[0]][0] == 151  # the second slow second


def test_the_reason_names_only_what_tripped_the_flag():
    lagging = samples("w1", [1.0, 40.0, 35.0, 1.0], cpu=13.0)
    bad, why = selfcheck.verdict(lagging)
    assert bad and why == "w1: event-loop lag p99 up to 40 ms (2 s at >= 20 ms)"
    assert "CPU" not in why
