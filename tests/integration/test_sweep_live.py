"""Sweeps end to end against the simulated engine: levels, request-count levels, rate mode, the web UI."""

import json
import os
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest

from conftest import wait_http


def load(out):
    with open(os.path.join(out, "run.json")) as fh:
        run = json.load(fh)
    return run, pd.read_csv(os.path.join(out, "requests.csv"))


def test_level_requests_sweep_stamps_each_record_with_its_level(cli, sim_fixed, tmp_path):
    out = str(tmp_path / "run")
    p = cli("sweep", "--host", sim_fixed.url, "--levels", "1,2,4", "--level-requests", "6", "--max-tokens", "4",
            "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    run, df = load(out)
    assert run["mode"] == "concurrency" and [seg["level"] for seg in run["timeline"]] == [1, 2, 4]
    counts = df.groupby("level").size()
    assert (counts >= 6).all() and list(counts.index) == [1, 2, 4]
    for seg in run["timeline"]:
        started = df[df.level == seg["level"]].start_time
        # every request of a level was sent after the level began and before it ended
        assert started.min() >= seg["start"] - 0.01 and started.max() <= seg["end"] + 0.01
    levels = pd.read_csv(os.path.join(out, "levels.csv"))
    assert list(levels.level) == [1, 2, 4]
    assert (df.status == "ok").all()


def test_a_level_ends_within_moments_of_its_request_count(cli, sim_fixed, tmp_path):
    # 16 users of 4-token requests (about 70 ms each) finish some 200 a second. Locust ticks a shape once a second,
    # and a level ended at the tick after its count: 109 requests where 40 were asked. The run controller's
    # watcher now steps such a level: its count, the users' requests in flight then, and what ~50 ms adds
    out = str(tmp_path / "run")
    p = cli("sweep", "--host", sim_fixed.url, "--levels", "4,16", "--level-requests", "10,40", "--max-tokens", "4",
            "--progress-interval", "0", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    _, df = load(out)
    counts = df.groupby("level").size()
    assert 10 <= counts[4] <= 10 + 4 + 12 and 40 <= counts[16] <= 40 + 16 + 30, counts.to_dict()


def test_rate_sweep_keeps_schedule_and_send_times(cli, sim_fixed, tmp_path):
    out = str(tmp_path / "run")
    p = cli("sweep", "--host", sim_fixed.url, "--rates", "10,40", "--level-duration", "3s", "--arrival", "constant",
            "--max-concurrency", "32", "--max-tokens", "4", "--warmup", "0", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    run, df = load(out)
    assert run["mode"] == "rate" and run["settings"]["rates"] == ["10", "40"]
    assert df.scheduled_time.notna().all()
    lag = (df.start_time - df.scheduled_time) * 1000
    assert lag.min() > -1.0  # never sent before its time
    for rate in (10, 40):
        seg = next(s for s in run["timeline"] if s["level"] == rate)
        n = int((df.level == rate).sum())
        expected = rate * (seg["end"] - seg["start"])
        assert abs(n - expected) <= 2, (rate, n, expected)  # constant arrivals: one per 1/rate seconds
        sched = df[df.level == rate].scheduled_time.sort_values().diff().dropna()
        assert sched.median() == pytest.approx(1 / rate, rel=0.01)


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
def test_sweep_in_the_web_ui_advances_levels(tmp_path):
    """The sweep shape drives the user count in web-UI mode too: started from the UI's API, it steps 1 -> 2 -> 4.
    (Locust caches /stats/requests for 2 s: each level lasts longer, or a poll could miss it.)"""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENSWARM_", "LOCUST_"))}
    out = str(tmp_path / "ui")
    proc = subprocess.Popen([sys.executable, "-m", "tokenswarm", "ui", "--levels", "1,2,4", "--level-duration", "3s",
                             "--max-tokens", "4", "--sim-args", "--ttft-ms 10 --tpot-ms 5", "--web-port", str(port),
                             "--out", out], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/")
        data = b"user_count=1&spawn_rate=1"
        urllib.request.urlopen(urllib.request.Request(base + "/swarm", data=data), timeout=5)
        seen = set()
        deadline = time.time() + 30
        while time.time() < deadline and not {1, 2, 4} <= seen:
            with urllib.request.urlopen(base + "/stats/requests", timeout=5) as r:
                seen.add(json.loads(r.read())["user_count"])
            time.sleep(0.2)
        assert {1, 2, 4} <= seen, seen
        deadline = time.time() + 30
        while not os.path.exists(os.path.join(out, "levels.csv")) and time.time() < deadline:
            time.sleep(0.3)  # the shape ends the test after the last level; the run folder is finished
        levels = pd.read_csv(os.path.join(out, "levels.csv"))
        assert list(levels.level) == [1, 2, 4]
        # a second sweep from the same web UI steps through its levels again, into a sibling folder
        urllib.request.urlopen(urllib.request.Request(base + "/swarm", data=data), timeout=5)
        again = out + "-2"
        deadline = time.time() + 40
        while not os.path.exists(os.path.join(again, "levels.csv")) and time.time() < deadline:
            time.sleep(0.3)
        assert list(pd.read_csv(os.path.join(again, "levels.csv")).level) == [1, 2, 4]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_locustfiles_shape_attributes_are_its_defaults(sim_fixed, tmp_path):
    # a locustfile of one's own: the shape's class attributes give the levels; the command line gives the rest
    lf = tmp_path / "mine.py"
    lf.write_text("from tokenswarm.loadgen import ChatUser, ConcurrencySweep\n\n\nclass Chat(ChatUser):\n    pass\n\n\n"
                  "class Sweep(ConcurrencySweep):\n    levels = \"1,3\"\n    level_requests = \"4\"\n")
    out = str(tmp_path / "run")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENSWARM_", "LOCUST_"))}
    p = subprocess.run([sys.executable, "-m", "locust", "-f", str(lf), "--headless", "-H", sim_fixed.url,
                        "--max-tokens", "4", "--out", out], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    run, df = load(out)
    assert [seg["level"] for seg in run["timeline"]] == [1, 3]
    assert run["settings"]["level_requests"] == 4 and (df.groupby("level").size() >= 4).all()
    bad = subprocess.run([sys.executable, "-m", "locust", "-f", str(lf), "--headless", "-H", sim_fixed.url,
                          "--rates", "2", "--out", str(tmp_path / "bad")], capture_output=True, text=True,
                         timeout=120, env=env)
    assert bad.returncode == 2 and "load shape Sweep takes --levels" in bad.stderr
    assert "Traceback" not in bad.stderr and not os.path.exists(tmp_path / "bad")
