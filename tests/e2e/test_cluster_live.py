"""The distributed cluster on 127.0.0.1: a master and worker processes, 1024 streams, a worker lost mid-run."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from tokenswarm.simengine import SimProcess


def env_clean():
    return {k: v for k, v in os.environ.items() if not k.startswith(("TOKENSWARM_", "LOCUST_"))}


@pytest.mark.slow
def test_1024_users_on_a_master_and_two_workers(cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "200", "--tpot-ms", "100")
    out = str(tmp_path / "run")
    p = cli("run", "--host", sim.url, "--workers", "2", "--users", "1024", "--duration", "15s", "--max-tokens",
            "32", "--input-len", "16", "--out", out, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    assert (df.status == "ok").all() and len(df) > 1024
    stats = pd.read_csv(os.path.join(out, "locust_stats.csv"))
    assert stats[stats.Name == "E2E"]["Request Count"].iloc[0] == len(df)  # the master's count = rows
    assert set(df.worker) == {"w0", "w1"}
    with open(os.path.join(out, "run.json")) as fh:
        run = json.load(fh)
    assert sorted(w["id"] for w in run["workers"]) == ["w0", "w1"]
    assert sum(w["records"] for w in run["workers"]) == len(df)
    levels = pd.read_csv(os.path.join(out, "levels.csv"))
    # closed-loop pacing on 2 shared cores: synchronized waves of 1024 completions leave gaps between requests
    assert levels.achieved_concurrency.iloc[0] > 0.8 * 1024


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_reported_and_every_request_accounted_for(tmp_path):
    port = 5700 + os.getpid() % 200
    out = str(tmp_path / "run")
    with SimProcess(["--ttft-ms", "50", "--tpot-ms", "20"]) as sim:
        master = subprocess.Popen(
            [sys.executable, "-m", "tokenswarm", "run", "--master", "--expect-workers", "3", "--master-bind-host",
             "127.0.0.1", "--master-bind-port", str(port), "--host", sim.url, "--users", "30", "--duration", "14s",
             "--max-tokens", "20", "--out", out], env=env_clean(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        workers = [subprocess.Popen([sys.executable, "-m", "locust", "-f", _locustfile(), "--worker",
                                     "--master-host", "127.0.0.1", "--master-port", str(port)],
                                    env=env_clean(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for _ in range(3)]
        try:
            # kill a worker once every user has finished about 3 requests (0.43 s each) and a shipment of records
            # (each second) has passed since: a fixed 6 s after the start once came before the victim had shipped
            # any on a loaded machine
            deadline = time.monotonic() + 60
            while sim.stats()["finished"] < 90:
                assert time.monotonic() < deadline and master.poll() is None, "the load did not start"
                time.sleep(0.2)
            time.sleep(2.0)
            victim = workers[0]
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            output, _ = master.communicate(timeout=120)
        finally:
            for w in workers:
                if w.poll() is None:
                    w.terminate()
                    w.wait(timeout=30)
    received = sim.final_stats()["requests"] - 1  # all but the preflight
    assert master.returncode in (0, 1), output[-3000:]  # 1: the lost worker's requests in flight count as failed
    with open(os.path.join(out, "run.json")) as fh:
        run = json.load(fh)
    assert run["complete"] is True
    assert len(run["lost_workers"]) == 1
    lost = run["lost_workers"][0]
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    # every record the lost worker shipped before it died is in requests.csv
    assert (df.worker == lost["id"]).sum() == lost["records"] > 0
    # exact books: every request the engine received is a row, or was started by the lost worker and counted
    # lost with it (the master granted each before it was sent); SIGKILL'd with 10 streams in flight
    assert lost["lost_in_flight"] > 0
    assert len(df) + lost["lost_in_flight"] == received
    # the others carried on after the loss
    after = df[df.start_time > lost["lost_at"]]
    assert len(after) > 0 and lost["id"] not in set(after.worker)
    with open(os.path.join(out, "report.md")) as fh:
        assert lost["id"] in fh.read()
    assert master.returncode == 1  # the lost worker's requests count as failed against --max-fail-ratio 0


def _locustfile():
    import importlib.util

    spec = importlib.util.find_spec("tokenswarm.loadgen")
    return os.path.join(list(spec.submodule_search_locations)[0], "locustfile.py")


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_requests_outlasting_the_stop_timeout_are_cancelled_and_recorded(cli, sim_factory, tmp_path, workers):
    # every request takes 20 s; the test ends after 2 s and gives those in flight 1 s more
    sim = sim_factory("--ttft-ms", "50", "--tpot-ms", "200")
    out = str(tmp_path / "run")
    p = cli("run", "--host", sim.url, "--workers", str(workers), "--users", "8", "--duration", "2s",
            "--max-tokens", "100", "--stop-timeout", "1", "--out", out, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]  # cancelled requests are not failures
    assert "cancelling them" in p.stderr
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    assert len(df) == 8 and (df.status == "cancelled").all()
    assert df.error.str.contains("stopped at test end").all()
    assert df.output_events.between(1, 99).all()  # cut mid-stream, nobody waited for the 100 tokens
    sim.stop()
    assert sim.final_stats()["requests"] == len(df) + 1  # every request the engine saw is a row (+ preflight)
