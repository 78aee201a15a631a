"""Real-world workloads end to end against the simulated engine (which has a prefix cache)."""

import json
import os

import pandas as pd
import pytest

TRACES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "traces")
# a batching engine where prefill costs time: long prompts make TTFT show the cache
ENGINE = ("--max-num-seqs", "64", "--prefill-tps", "20000", "--step-base-ms", "10", "--step-per-seq-ms", "0.2")


def sweep(cli, sim, out, *extra):
    p = cli("sweep", "--host", sim.url, "--levels", "1,4", "--level-duration", "5s", "--max-tokens", "8",
            "--out", out, *extra)
    assert p.returncode == 0, p.stderr[-3000:]
    return pd.read_csv(os.path.join(out, "levels.csv")).set_index("level")


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
def test_shared_prefixes_hit_the_cache_and_lower_ttft(cli, sim_factory, tmp_path):
    sim = sim_factory(*ENGINE)
    shared = sweep(cli, sim, str(tmp_path / "shared"), "--prefix-len", "1024", "--num-prefixes", "4",
                   "--input-len", "32")
    unique = sweep(cli, sim, str(tmp_path / "unique"), "--input-len", "1056")
    for level in (1, 4):
        assert shared.loc[level, "cache_hit_pct"] > 80  # 1024 of 1056 prompt tokens, in 16-token blocks
        assert unique.loc[level, "cache_hit_pct"] < 5  # random prompts differ from their first token
        assert shared.loc[level, "ttft_p50_ms"] < 0.6 * unique.loc[level, "ttft_p50_ms"]
        assert shared.loc[level, "mean_input_tokens"] == unique.loc[level, "mean_input_tokens"] == 1056
    df = pd.read_csv(os.path.join(tmp_path, "shared", "requests.csv"))
    assert set(df.prefix_id.dropna()) == {"prefix-0", "prefix-1", "prefix-2", "prefix-3"}
    with open(os.path.join(tmp_path, "shared", "report.md")) as fh:
        assert "## Prefix cache" in fh.read()


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
def test_multi_turn_carries_the_history_and_reports_ttft_by_turn(cli, sim_factory, tmp_path):
    sim = sim_factory(*ENGINE)
    out = str(tmp_path / "mt")
    p = cli("run", "--host", sim.url, "--users", "4", "--duration", "8s", "--turns", "4", "--turn-input-len",
            "200", "--max-tokens", "16", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    done = df[df.status == "ok"]
    by_turn = done.groupby("turn").input_tokens.mean()
    assert list(by_turn.index[:4]) == [1, 2, 3, 4]
    # each turn sends everything before it: the previous turn's prompt, its answer, and a new user turn
    for t in (2, 3, 4):
        assert by_turn[t] == by_turn[t - 1] + 16 + 200
    conv = done[done.conversation_id == done.conversation_id.iloc[0]].sort_values("turn")
    assert list(conv.turn) == list(range(1, len(conv) + 1))
    assert conv.cached_tokens.fillna(0).iloc[-1] > 0  # the history is served from the prefix cache
    with open(os.path.join(out, "summary.json")) as fh:
        turns = json.load(fh)["ttft_by_turn"]
    assert [t["turn"] for t in turns][:4] == [1, 2, 3, 4]
    with open(os.path.join(out, "report.md")) as fh:
        assert "## TTFT by turn" in fh.read()


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
@pytest.mark.parametrize("workers", ["0", "2"])
def test_trace_replay_reproduces_the_inter_arrival_times(cli, sim_factory, tmp_path, workers):
    sim = sim_factory("--ttft-ms", "20", "--tpot-ms", "5")
    out = str(tmp_path / "trace")
    trace = os.path.join(TRACES, "plain.jsonl")
    p = cli("run", "--host", sim.url, "--trace", trace, "--max-concurrency", "64", "--workers", workers,
            "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    with open(trace) as fh:
        entries = [json.loads(line) for line in fh]
    assert len(df) == len(entries) and (df.status == "ok").all()
    # the trace's lengths are the requests' lengths (the engine counts words)
    assert sorted(df.input_tokens) == sorted(e["input_len"] for e in entries)
    assert sorted(df.output_tokens) == sorted(e["output_len"] for e in entries)
    # and its inter-arrival times: every request left within 25 ms of its scheduled time, and the schedule is
    # the trace's own (each worker replays its share: gaps compared within a worker)
    lag = (df.start_time - df.scheduled_time) * 1000
    assert lag.min() > -1 and lag.quantile(0.9) < 25
    t0 = sorted(e["timestamp"] for e in entries)
    sched = (df.scheduled_time - df.scheduled_time.min()).sort_values().to_numpy()
    offsets = [t - t0[0] for t in t0]
    assert max(abs(a - b) for a, b in zip(sched, offsets)) < 0.025
    with open(os.path.join(out, "summary.json")) as fh:
        rep = json.load(fh)["trace_replay"]
    assert rep["requests"] == len(entries) and rep["gap_error_p50_ms"] < 5


def test_cancellations_are_counted_apart_from_failures(cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "10", "--tpot-ms", "5")
    out = str(tmp_path / "cx")
    p = cli("run", "--host", sim.url, "--users", "4", "--duration", "5s", "--max-tokens", "32",
            "--cancel-rate", "0.3", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]  # cancellations are not failures (--max-fail-ratio 0)
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    n = len(df)
    cancelled = (df.status == "cancelled").sum()
    assert (df.status.isin(["ok", "cancelled"])).all()
    assert 0.15 * n < cancelled < 0.45 * n
    c = df[df.status == "cancelled"]
    assert (c.output_events < 32).all() and c.error.str.startswith("cancelled by the client after").all()
    levels = pd.read_csv(os.path.join(out, "levels.csv"))
    assert levels.cancelled.iloc[0] == cancelled and levels.failed.iloc[0] == 0
    sim.stop()
    assert sim.final_stats()["cancelled"] >= cancelled - 2  # the engine saw its clients leave
