"""Ctrl-C / SIGTERM mid-run: outputs complete and parseable, marked incomplete, exit code 130."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest


def start(args, out):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENSWARM_", "LOCUST_"))}
    return subprocess.Popen([sys.executable, "-m", "tokenswarm", *args, "--out", out], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_records(out, p, timeout=90.0):
    """Until requests.csv holds a record (the load is on: a busy machine may take seconds to start it)."""
    path = os.path.join(out, "requests.csv")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and p.poll() is None:
        if os.path.exists(path) and os.path.getsize(path) > 0 and len(pd.read_csv(path)) > 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"no record in {path} within {timeout:g}s")


#: the extra wait before the signal, once the load is on: seeded, so a failure replays at the same moment
RNG = random.Random(20261207)


def check_incomplete(out, output):
    with open(os.path.join(out, "run.json")) as fh:
        run = json.load(fh)
    assert run["complete"] is False and run["ended"] is not None
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    assert len(df) == run["records"] > 0
    assert set(df.status) <= {"ok", "cancelled"}
    assert run["status_counts"] == df.status.value_counts().to_dict()
    levels = pd.read_csv(os.path.join(out, "levels.csv"))
    assert len(levels) >= 1
    with open(os.path.join(out, "report.md")) as fh:
        assert "did not complete" in fh.read()
    assert "Traceback" not in output


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_at_a_random_moment_single_process(sig, tmp_path):
    out = str(tmp_path / "run")
    p = start(["sweep", "--levels", "2,4,8", "--level-duration", "4s", "--max-tokens", "32",
               "--sim-args", "--ttft-ms 50 --tpot-ms 20"], out)
    wait_for_records(out, p)
    time.sleep(RNG.uniform(0.0, 5.0))
    p.send_signal(sig)
    output, _ = p.communicate(timeout=120)
    assert p.returncode == 130, output[-3000:]
    check_incomplete(out, output)


@pytest.mark.slow
def test_sigint_on_a_distributed_master(tmp_path):
    out = str(tmp_path / "run")
    # lengths spread +-90%: the users fall out of step, so requests are mid-stream whenever the signal lands
    # (with equal lengths all 16 finish together, and a worker starved for ~100 ms right then could see its
    # requests complete before it read the stop: all ok, none cancelled)
    p = start(["run", "--workers", "2", "--users", "16", "--duration", "60s", "--output-len", "64",
               "--range-ratio", "0.9", "--sim-args", "--ttft-ms 50 --tpot-ms 20"], out)
    wait_for_records(out, p)
    time.sleep(RNG.uniform(0.0, 4.0))
    p.send_signal(signal.SIGINT)
    output, _ = p.communicate(timeout=120)
    assert p.returncode == 130, output[-3000:]
    check_incomplete(out, output)
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    assert set(df.worker) == {"w0", "w1"}
    with open(os.path.join(out, "run.json")) as fh:
        workers = json.load(fh)["workers"]
    # every request a worker started is a record: those in flight at the stop were cancelled, not dropped
    assert sum(w["sent"] for w in workers) == len(df), (workers, output[-3000:])
    assert all(w.get("final") for w in workers), workers
    assert (df.status == "cancelled").sum() > 0, output[-3000:]


@pytest.mark.slow
def test_a_second_ctrl_c_exits_at_once(tmp_path):
    out = str(tmp_path / "run")
    launched = time.monotonic()
    p = start(["run", "--users", "4", "--duration", "60s", "--sim-args", "--ttft-ms 50 --tpot-ms 20"], out)
    wait_for_records(out, p)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=60)
    assert p.returncode == 130
    # at once: in less time than the same process took to start and record its first request (both slow down
    # alike on a busy machine); a first Ctrl-C alone waits for the in-flight requests and writes the reports
    assert time.monotonic() - t0 < t0 - launched


@pytest.mark.slow
def test_sigint_in_a_sweep_with_workers_keeps_the_records_of_requests_in_flight(tmp_path):
    # Ctrl-C in a sweep ends it by Locust's quit, which sends the workers no stop: they stop on the master's
    # Abort themselves, and the master takes their last records while its test end waits for them
    out = str(tmp_path / "run")
    p = start(["sweep", "--workers", "2", "--levels", "4,8,16", "--level-duration", "4s", "--output-len", "64",
               "--range-ratio", "0.9", "--sim-args", "--ttft-ms 50 --tpot-ms 20"], out)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # level 8 has begun and its requests are mid-stream
        path = os.path.join(out, "requests.csv")
        if os.path.exists(path) and (pd.read_csv(path).level == 8).any():
            break
        time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    output, _ = p.communicate(timeout=120)
    assert p.returncode == 130, output[-3000:]
    check_incomplete(out, output)
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    with open(os.path.join(out, "run.json")) as fh:
        workers = json.load(fh)["workers"]
    assert sum(w["sent"] for w in workers) == len(df), (workers, output[-3000:])
    assert all(w.get("final") for w in workers), workers
    assert (df.status == "cancelled").sum() > 0, output[-3000:]
    assert "arrived with no test running" not in output and "sent no final records" not in output
