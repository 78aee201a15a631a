"""Answers with error bars, end to end against the simulated engine: intervals that cover the engine's stated
truth, a capacity known from the engine's settings found from three brackets (one with workers), a level that
does not depend on how it began, --precision, --min-lifetimes, verdicts and repeats."""

import json
import math
import os

import pandas as pd
import pytest

from tokenswarm.report.intervals import Interval, ci_columns
from tokenswarm.report.verdicts import WORSE, compare_figures
from tokenswarm.simengine.scheduler import Lognormal

TTFT, TPOT, SIGMA_TTFT, SIGMA_TPOT = 100.0, 10.0, 0.3, 0.2


def _levels(out):
    return pd.read_csv(os.path.join(out, "levels.csv"))


@pytest.mark.slow
def test_intervals_cover_the_stochastic_engines_stated_truth(cli, sim_factory, tmp_path):
    # 24 levels (8..31 users) of 4 s against an engine whose every request draws its TTFT and TPOT from stated
    # lognormal distributions (no slot limit: the truth does not depend on the load); of 48 intervals (TPOT p50 and
    # mean per level) at least 41 (85 %) must cover the truth. With the nominal 95 % and independent intervals a
    # false failure (8 or more misses) has probability 0.24 % (binomial; 0.7 % at a true coverage of 94 %), and
    # an interval that ignored the requests' dependence (about 50 % coverage) fails it every time; the runs
    # measured here covered 48 of 48. TPOT is the figure a busy machine
    # leaves alone (the engine plans every token from the one before): TTFT and single gaps carry the engine's
    # and the client's own delays there (measured with the engine's truth log at load 6 on 2 cores: TTFT +1.3 ms
    # mean from the client and up to +13 ms from the engine's late writes in a level; gaps off by up to 10 ms),
    # which is the client's accuracy, not the interval's coverage; tests/unit/report/test_intervals.py measures
    # the coverage of every figure on records with a known truth
    sim = sim_factory("--ttft-ms", str(TTFT), "--tpot-ms", str(TPOT), "--ttft-sigma", str(SIGMA_TTFT),
                      "--tpot-sigma", str(SIGMA_TPOT), "--seed", "11")
    out = str(tmp_path / "run")
    p = cli("sweep", "--host", sim.url, "--levels", ",".join(str(x) for x in range(8, 32)), "--level-duration",
            "4s", "--max-tokens", "32", "--progress-interval", "0", "--out", out, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    ttft, tpot = Lognormal(TTFT, SIGMA_TTFT), Lognormal(TPOT, SIGMA_TPOT)
    truth = {"tpot_p50_ms": tpot.percentile(50), "tpot_mean_ms": tpot.mean}
    assert ttft.percentile(50) == TTFT
    levels = _levels(out)
    assert len(levels) == 24
    covered = total = 0
    for _, row in levels.iterrows():
        for col, value in truth.items():
            low, high = (row[c] for c in ci_columns(col))
            total += 1
            covered += bool(low <= value <= high)
    assert covered >= 41 and total == 48, (covered, total)


def _capacity(cli, sim_url, out, bracket, *more):
    p = cli("capacity", "--host", sim_url, "--slo", "ttft=240", "--slo-attainment", "0.9", "--levels", bracket,
            "--level-duration", "5s", "--max-tokens", "16", "--progress-interval", "0", "--out", out, *more,
            timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    with open(os.path.join(out, "capacity.json")) as fh:
        return json.load(fh), p.stdout


@pytest.mark.slow
@pytest.mark.parametrize("bracket,more", [("4,64", ()), ("12,40", ("--workers", "2")), ("30,100", ())])
def test_capacity_finds_the_engines_slots_from_three_brackets(cli, sim_factory, tmp_path, bracket, more):
    # 16 slots, TTFT 200 ms, 16 tokens of 80 ms (a lifetime of 1.4 s): up to 16 users no request waits; at 17
    # the slots are always full, so a user's cycle is 17/16 lifetimes and every request waits about 88 ms for a
    # slot, past the 240 ms that 90 % of requests must meet. The 40 ms margin is for the client and the engine on
    # a busy machine (measured with 5 agents' work beside it: the 99 %-of-requests form of this test, with a
    # 30 ms margin, left a level-4 probe undecided for 10 minutes). 30,100 starts above the capacity and steps
    # down: each lower probe opens its window once the higher one's requests have ended.
    sim = sim_factory("--ttft-ms", "200", "--tpot-ms", "80", "--max-num-seqs", "16")
    c, stdout = _capacity(cli, sim.url, str(tmp_path / "cap"), bracket, *more)
    assert c["status"] == "found" and c["max_level"] == 16, c
    assert c["ci_low"] <= 16 <= c["ci_high"], c
    assert "max concurrency meeting TTFT <= 240 ms (for 90 % of requests): 16 (95 % CI" in stdout
    assert ": meets the SLOs" in stdout and ": misses the SLOs" in stdout  # each probe's verdict, in words


@pytest.mark.slow
def test_a_level_agrees_with_itself_whatever_came_before_and_waves_are_flagged(cli, sim_factory, tmp_path):
    # the batching engine (the default model): 40 users reached from nothing, from 32 and from 48
    sim = sim_factory()
    ttft = {}
    for name, levels, more in (("alone", "40", ()), ("from32", "32,40", ()), ("from48", "48,40", ()),
                               ("together", "40", ("--no-stagger",))):
        out = str(tmp_path / name)
        p = cli("sweep", "--host", sim.url, "--levels", levels, "--level-duration", "12s", "--progress-interval", "0",
                "--out", out, *more, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        row = _levels(out).set_index("level").loc[40.0]
        low, high = (row[c] for c in ci_columns("ttft_p50_ms"))
        ttft[name] = (Interval(row["ttft_p50_ms"], low, high), bool(row["lockstep"]))
    # the engine is deterministic, so the phases a level inherits persist: reached from 32 or 48 its TTFT p50 has
    # read 0.89-1.01 of the level alone (its 95 % interval did not always include 1; 0.89 with another test
    # process beside it), where all 40 starting at once read 5x; a level's history moves it by far less than
    # waves do
    for name in ("from32", "from48"):
        v = compare_figures(ttft["alone"][0], ttft[name][0], lower_is_better=True)
        assert 0.8 < v.ratio < 1.25, (name, v)
        assert not ttft[name][1]
    assert not ttft["alone"][1]
    # all 40 started at once: they stay in waves, flagged, and the level reads worse
    assert ttft["together"][1]
    # (in waves the level's p50 may get no interval: its blocks differ wave by wave, and the verdict is then
    # undecided; the ratio still says it, 5.6x in the run that had none)
    v = compare_figures(ttft["alone"][0], ttft["together"][0], lower_is_better=True)
    assert v.ratio > 2 and (v.verdict == WORSE or math.isnan(v.low)), v


def test_precision_runs_a_level_until_its_intervals_are_narrow_or_flags_it(cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "50", "--tpot-ms", "5", "--ttft-sigma", "0.3", "--tpot-sigma", "0.2")
    out = str(tmp_path / "loose")
    p = cli("sweep", "--host", sim.url, "--levels", "4,8", "--level-duration", "2s", "--max-level-duration", "4s",
            "--precision", "0.1", "--max-tokens", "8", "--progress-interval", "0", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    with open(os.path.join(out, "run.json")) as fh:
        timeline = json.load(fh)["timeline"]
    assert all(seg["imprecise"] for seg in timeline)  # 0.1 % is out of reach in 4 s: flagged
    assert all(3.9 <= seg["end"] - seg["start"] <= 6.0 for seg in timeline)
    assert _levels(out)["imprecise"].all()
    assert "?" in p.stdout  # the table's mark
    out = str(tmp_path / "easy")
    p = cli("sweep", "--host", sim.url, "--levels", "8", "--level-duration", "2s", "--max-level-duration", "60s",
            "--precision", "50", "--max-tokens", "8", "--progress-interval", "0", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    with open(os.path.join(out, "run.json")) as fh:
        seg = json.load(fh)["timeline"][0]
    assert seg["end"] - seg["start"] < 50 and not seg.get("imprecise")  # precise before its longest
    row = _levels(out).iloc[0]
    low, high = (row[c] for c in ci_columns("output_throughput_tok_s"))
    assert (high - low) / 2 <= 0.5 * row["output_throughput_tok_s"] * 1.2  # within 50 % (live vs final: a margin)


def test_min_lifetimes_runs_each_level_on_until_the_report_calls_it_steady(cli, sim_factory, tmp_path):
    # 16 batch slots: requests at 32 and 64 users queue (E2E about 1 and 2 s), so 2 s levels hold 1.6 and 0.8
    # lifetimes and the report marks them short; with --min-lifetimes 3 they run on until their windows hold 3 by
    # the live estimate over its margin (LIVE_LIFETIMES_OVER_REPORT), and the report's own count (which also holds
    # the level's last requests, finishing under the next level's longer queue) agrees. Measured here: 3.64 and
    # 3.86 lifetimes, the levels 4 and 8 s long (without the margin 3.63 and 3.34, 4 and 7 s).
    sim = sim_factory("--max-num-seqs", "16")
    runs = {}
    for name, extra in (("fixed", ()), ("steady", ("--min-lifetimes", "3"))):
        out = str(tmp_path / name)
        p = cli("sweep", "--host", sim.url, "--levels", "16,32,64", "--level-duration", "2s", "--max-tokens", "32",
                "--progress-interval", "0", "--out", out, *extra)
        assert p.returncode == 0, p.stderr[-3000:]
        with open(os.path.join(out, "run.json")) as fh:
            runs[name] = (_levels(out).set_index("level"), json.load(fh), p.stdout)
    fixed, _, _ = runs["fixed"]
    assert fixed.loc[[32, 64], "short_window"].all() and (fixed.loc[[32, 64], "window_lifetimes"] < 2.5).all()
    steady, meta, stdout = runs["steady"]
    assert meta["settings"]["min_lifetimes"] == 3 and meta["settings"]["max_level_duration_s"] == 120
    assert not steady["short_window"].any(), steady["window_lifetimes"]
    assert (steady["window_lifetimes"] >= 3.0).all() and (steady.loc[[32, 64], "window_lifetimes"] < 8).all()
    spans = {seg["level"]: seg["end"] - seg["start"] for seg in meta["timeline"]}
    assert spans[64] > 2 * spans[16], spans  # run on, not ended by time
    assert {seg["level"] for seg in meta["timeline"] if seg.get("lengthened")} >= {32, 64}
    assert steady.loc[[32, 64], "lengthened"].all() and not fixed["lengthened"].any()  # levels.csv says so too
    with open(os.path.join(tmp_path, "steady", "report.md")) as fh:
        item = next(ln for ln in fh if "**Lengthened**" in ln)
    assert "64: " in item and "held 3 request lifetimes" in item, item
    assert "level 64 runs on after" in stdout and "until its window holds 3 request lifetimes" in stdout
    # a level whose requests all fail has no lifetime to count: it ends by its duration, not at the 2 min cap
    failing = sim_factory("--fault", "http_500=1")
    out = str(tmp_path / "failing")
    p = cli("sweep", "--host", failing.url, "--levels", "2", "--level-duration", "1s", "--min-lifetimes", "3",
            "--max-tokens", "8", "--progress-interval", "0", "--out", out)
    assert p.returncode == 1, p.stderr[-3000:]  # every request failed: above --max-fail-ratio
    with open(os.path.join(out, "run.json")) as fh:
        meta = json.load(fh)
    seg = meta["timeline"][0]  # 1 s asked, the cap 120 s: ended well before the cap, and not lengthened
    assert seg["end"] - seg["start"] < meta["settings"]["max_level_duration_s"] / 4 and not seg.get("lengthened")


def test_compare_names_the_slower_engine_and_repeats_report_their_spread(cli, sim_factory, tmp_path):
    fast = sim_factory("--ttft-ms", "20", "--tpot-ms", "5")
    slow = sim_factory("--ttft-ms", "20", "--tpot-ms", "5.5")  # TPOT 10 % slower
    runs = []
    for name, sim in (("fast", fast), ("slow", slow)):
        out = str(tmp_path / name)
        p = cli("run", "--host", sim.url, "--users", "4", "--duration", "4s", "--max-tokens", "16",
                "--progress-interval", "0", "--repeat", "2" if name == "fast" else "1", "--out", out)
        assert p.returncode == 0, p.stderr[-3000:]
        runs.append(os.path.join(out, "repeat-1") if name == "fast" else out)
    with open(os.path.join(str(tmp_path / "fast"), "repeats.json")) as fh:
        rep = json.load(fh)
    assert len(rep["runs"]) == 2 and all(not math.isnan(f["mean"]) for f in rep["figures"])
    p = cli("compare", *runs, "--labels", "fast,slow", "--out", str(tmp_path / "cmp"))
    assert p.returncode == 0, p.stderr[-3000:]
    with open(str(tmp_path / "cmp" / "compare.json")) as fh:
        cmp = json.load(fh)
    tpot = next(v for v in cmp["verdicts"] if v["figure"] == "tpot_mean_ms")
    assert tpot["verdict"] == WORSE and 1.05 < tpot["ratio"] < 1.15 and tpot["ci_low"] > 1
    assert "4: slow vs fast: " in p.stdout and "Mean TPOT (ms) worse" in p.stdout


def test_a_probe_with_no_estimate_at_its_longest_counts_as_failing(cli, sim_factory, tmp_path):
    # TTFT 20 s against --max-level-duration 3 s: no request of the first probe ends, so at its longest it has
    # no estimate to judge by. It once reached the search as 'undecided' and raised (a traceback from the load
    # shape, twice); a probe that cannot show it holds now counts as failing, and the search goes on below it
    sim = sim_factory("--ttft-ms", "20000")
    out = str(tmp_path / "cap")
    p = cli("capacity", "--host", sim.url, "--slo", "ttft_mean=300", "--levels", "2,4", "--level-duration", "1s",
            "--max-level-duration", "3s", "--max-tokens", "4", "--read-timeout", "30", "--progress-interval", "0",
            "--out", out, timeout=300)
    assert "Traceback" not in p.stdout + p.stderr and "ValueError" not in p.stdout + p.stderr, p.stderr[-3000:]
    assert "counted as failing the SLOs: no estimate of them within --max-level-duration" in p.stdout, p.stdout
    with open(os.path.join(out, "capacity.json")) as fh:
        c = json.load(fh)
    assert c["status"] == "none", c  # the smallest level fails: no level meets the SLOs


@pytest.mark.slow
@pytest.mark.parametrize("more", [(), ("--workers", "2")])
def test_a_lower_rate_probe_starts_once_the_failing_probes_requests_have_ended(cli, sim_factory, tmp_path, more):
    # 16 slots and 0.55 s requests serve about 29 req/s. A probe at 40 req/s fails and leaves a queue; the
    # probe at 20 req/s after it once began behind that queue (its requests waited for the earlier ones) and
    # failed too: a search answered 19.4 req/s where, with the wait, it answers 25. Now no request is sent
    # between the two probes until every earlier one has ended; on a master, as its workers report.
    sim = sim_factory("--max-num-seqs", "16", "--ttft-ms", "50", "--tpot-ms", "20")
    out = str(tmp_path / "cap")
    p = cli("capacity", "--host", sim.url, "--slo", "ttft_p99=200", "--rates", "40,80", "--level-duration", "3s",
            "--max-level-duration", "6s", "--max-probes", "2", "--output-len", "25", "--progress-interval", "0",
            "--out", out, *more, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "no new requests until those in flight have ended" in p.stdout, p.stdout
    with open(os.path.join(out, "run.json")) as fh:
        timeline = json.load(fh)["timeline"]
    assert [seg["level"] for seg in timeline] == [40, 20] and timeline[0].get("verdict") == "fails", timeline
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    first, second = df[df["level"] == 40], df[df["level"] == 20]
    last_end = (first["start_time"] + first["close_ms"] / 1000.0).max()
    assert len(second) > 10 and second["start_time"].min() >= last_end, (second["start_time"].min(), last_end)
    assert sorted(df["level"].unique()) == [20, 40]  # none sent during the wait (a level 0), none lost
    assert timeline[1]["start"] >= last_end - 0.05  # the probe's clock and window begin after the wait
