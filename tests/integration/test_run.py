"""`tokenswarm run` end to end: a real Locust process against the simulated engine on 127.0.0.1."""

import json
import os

import pandas as pd
import pytest

from tokenswarm.requestscsv import COLUMNS


def run_dir_of(proc):
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
def test_fixed_timing_run_measures_exactly_and_books_every_request(cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "200", "--tpot-ms", "20")
    out = str(tmp_path / "run")
    p = cli("run", "--host", sim.url, "--users", "32", "--duration", "8s", "--max-tokens", "64",
            "--input-len", "32", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    assert run_dir_of(p) == out
    assert "Mean TTFT (ms)" in p.stdout and "Output Throughput (tok/s)" in p.stdout
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    assert tuple(df.columns) == COLUMNS
    ok = df[df.status == "ok"]
    assert len(ok) == len(df) > 100
    assert abs(ok.ttft_ms.median() - 200) <= 5
    assert abs(ok.tpot_ms.median() - 20) <= 1
    assert (ok.output_tokens == 64).all() and (ok.token_source == "usage").all()
    assert (ok.input_tokens == 32).all() and (df.level == 32).all()
    stats = pd.read_csv(os.path.join(out, "locust_stats.csv"))
    e2e = stats[stats.Name == "E2E"].iloc[0]
    assert e2e["Request Count"] == len(df)  # every request Locust counted has its row, and no more
    with open(os.path.join(out, "run.json")) as fh:
        run = json.load(fh)
    assert run["complete"] is True and run["records"] == len(df)
    assert run["settings"]["model"] == "tokenswarm-sim"
    levels = pd.read_csv(os.path.join(out, "levels.csv"))
    assert len(levels) == 1 and levels.level[0] == 32
    assert levels.achieved_concurrency[0] > 0.95 * 32
    for name in ("report.md", "locust_stats_history.csv", "locust_failures.csv"):
        assert os.path.exists(os.path.join(out, name))


def test_requests_budget_sends_exactly_that_many(cli, sim_fixed, tmp_path):
    out = str(tmp_path / "run")
    p = cli("run", "--host", sim_fixed.url, "--users", "4", "--requests", "23", "--max-tokens", "4", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    assert len(df) == 23 and (df.status == "ok").all()
    assert sim_fixed.stats()["requests"] == 23 + 1  # + the preflight request


def test_embedded_engine_starts_and_stops_by_itself(cli, tmp_path):
    out = str(tmp_path / "run")
    p = cli("run", "--users", "4", "--duration", "3s", "--max-tokens", "8", "--sim-args",
            "--ttft-ms 20 --tpot-ms 5", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "embedded simulated engine at http://127.0.0.1:" in p.stdout
    with open(os.path.join(out, "simengine.log")) as fh:
        assert "tokenswarm simengine stopped" in fh.read()
    assert len(pd.read_csv(os.path.join(out, "requests.csv"))) > 0


@pytest.mark.parametrize("args,msg", [
    (["--engine", "nope"], "unknown engine 'nope'"),
    (["--users", "0"], "bad --users 0"),
    (["--duration=-5s"], "bad --duration"),
    (["--host", "localhost:1"], "bad --host"),
])
def test_bad_input_exits_2_with_one_line(cli, args, msg, tmp_path):
    p = cli("run", *args, "--out", str(tmp_path / "x"))
    assert p.returncode == 2
    assert msg in p.stderr and "Traceback" not in p.stderr


def test_unreachable_host_fails_preflight_fast(cli, tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = cli("run", "--engine", "vllm", "--model", "m", "--host", f"http://127.0.0.1:{port}", "--duration", "5s",
            "--out", str(tmp_path / "x"), timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "cannot reach" in p.stderr and "Traceback" not in p.stderr


def test_failures_over_the_limit_exit_1_and_say_where_and_what(cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "5", "--tpot-ms", "1", "--fault", "http_500=0.3", "--fault-seed", "1")
    out = str(tmp_path / "run")
    p = cli("run", "--host", sim.url, "--users", "4", "--requests", "60", "--max-tokens", "4", "--no-preflight",
            "--max-fail-ratio", "0.05", "--out", out)
    assert p.returncode == 1, p.stderr[-3000:]
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    failed = int((df.status == "http_error").sum())
    share = failed / len(df)
    assert share > 0.05 and run_dir_of(p) == out  # the run folder stays the last line
    why = f"exit code 1: {share:.1%} of finished requests failed, above --max-fail-ratio 0.05: level 4: " \
          f"{share:.1%} failed (http_error {failed})"
    assert why in p.stderr
    with open(os.path.join(out, "run.json")) as fh:
        assert json.load(fh)["exit_reason"] == why
    levels = pd.read_csv(os.path.join(out, "levels.csv"))
    assert levels.failed_pct[0] == pytest.approx(100 * share, abs=0.01)
    assert "Failed %" in p.stdout


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
def test_every_run_draws_fresh_prompts_and_a_repeated_seed_is_flagged_as_cached(cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "20", "--tpot-ms", "2")  # with its prefix cache, as vLLM's

    def run(name, *extra, requests=40):
        out = str(tmp_path / name)
        p = cli("run", "--host", sim.url, "--users", "4", "--requests", str(requests), "--max-tokens", "4",
                "--input-len", "64", "--out", out, *extra)
        assert p.returncode == 0, p.stderr[-3000:]
        with open(os.path.join(out, "run.json")) as fh:
            seed = json.load(fh)["settings"]
        return p, seed, pd.read_csv(os.path.join(out, "levels.csv")).iloc[0]

    # the master draws the seed; its two workers must both send that seed's prompts
    _, first, lv = run("first", "--workers", "2")
    assert first["seed_drawn"] is True and lv.cache_hit_pct < 10 and not lv.served_from_cache
    _, fresh, lv = run("fresh")  # the same command again: new prompts, nothing cached
    assert fresh["seed"] != first["seed"] and lv.cache_hit_pct < 10 and not lv.served_from_cache
    # fewer requests than the first run: each worker sends a head of the prompts it sent then (the master
    # leases requests to workers as they ask, so a worker's share differs a little from run to run)
    p, again, lv = run("again", "--workers", "2", "--seed", str(first["seed"]), requests=20)
    assert again["seed"] == first["seed"] and again["seed_drawn"] is False
    assert lv.cache_hit_pct > 70 and lv.served_from_cache  # the very prompts of the first run
    table = p.stdout.splitlines()
    assert any(line.strip().startswith(("4^", "4*^")) for line in table)  # marks in MARKS order
    assert any(line.startswith("^ the engine served these prompts") for line in table)


def test_vllm_bench_shape_reads_what_vllm_bench_would_and_what_the_engine_did(cli, sim_factory, tmp_path):
    """docs/metrics.md "Beside vLLM bench and evalscope": `--users C --spawn-rate C --requests N --no-stagger` is
    vLLM bench's
    `--max-concurrency C --num-prompts N`, and its throughput is vLLM's formula (tokens over first send to
    last close); TPOT and E2E agree with the engine's own log."""
    truth = str(tmp_path / "truth.csv")
    sim = sim_factory("--ttft-ms", "150", "--tpot-ms", "15", "--truth-log", truth)
    out = str(tmp_path / "run")
    c, n = 4, 16
    p = cli("run", "--host", sim.url, "--users", str(c), "--spawn-rate", str(c), "--requests", str(n),
            "--max-tokens", "64", "--no-preflight", "--no-stagger", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    assert len(df) == n and (df.status == "ok").all()
    start, end = df.start_time.to_numpy(), (df.start_time + df.close_ms / 1000).to_numpy()
    in_flight = [((start <= t) & (end > t)).sum() for t in start]
    assert max(in_flight) == c  # never more than C at once
    assert sorted(start)[c - 1] - start.min() < 0.2  # all C users start at once, as vLLM's semaphore does
    duration = end.max() - start.min()  # vLLM bench: benchmark start .. all requests done
    lv = pd.read_csv(os.path.join(out, "levels.csv")).iloc[0]
    assert lv.output_throughput_tok_s == pytest.approx(df.output_tokens.sum() / duration, rel=0.01)
    assert lv.request_throughput_req_s == pytest.approx(n / duration, rel=0.01)
    sim.stop()  # flushes the truth log
    tr = pd.read_csv(truth)
    j = df.merge(tr, on="request_id")
    assert len(j) == n
    true_tpot = ((j.last_write - j.first_write) * 1000 / (j.tokens - 1)).mean()
    true_e2e = ((j.last_write - j.arrival) * 1000).mean()
    # bench/truth_check.py holds these to 0.1 % on a quiet machine; a busy one reads a first token late now and then
    assert j.tpot_ms.mean() == pytest.approx(true_tpot, rel=0.005)
    assert j.e2e_ms.mean() == pytest.approx(true_e2e, rel=0.01)  # + the client's send and read, a few ms


@pytest.mark.parametrize("workers", ["0", "2"])
def test_locusts_headline_request_count_is_the_number_of_requests(workers, cli, sim_fixed, tmp_path):
    out = str(tmp_path / "run")
    p = cli("run", "--host", sim_fixed.url, "--users", "4", "--requests", "60", "--max-tokens", "8", "--workers",
            workers, "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    stats = pd.read_csv(os.path.join(out, "locust_stats.csv")).set_index("Name")
    assert len(df) == 60 and (df.status == "ok").all()
    assert stats.loc["Aggregated", "Request Count"] == len(df) == stats.loc["E2E", "Request Count"]
    assert stats.loc["TTFT", "Request Count"] == len(df) and stats.loc["TPOT", "Request Count"] == len(df)
    # E2E's size is the bytes received (an event per token, each far longer than a token), not 8 tokens
    assert stats.loc["E2E", "Average Content Size"] > 20 * 8
    assert stats.loc["Aggregated", "Average Content Size"] == stats.loc["E2E", "Average Content Size"]
    history = pd.read_csv(os.path.join(out, "locust_stats_history.csv"))
    last = history.groupby("Name")["Total Request Count"].last()
    assert last["Aggregated"] == last["E2E"]  # the per-second history agrees with itself
    if workers == "2":  # local workers run beside the master (not forked by it), each with its log in the folder
        for i in range(2):
            with open(os.path.join(out, f"worker-{i}.log")) as fh:
                assert "connected to master" in fh.read()
        assert "local workers (pids " in p.stdout
