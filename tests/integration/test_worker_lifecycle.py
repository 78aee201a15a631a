"""What a master and its workers say as they come and go, on 127.0.0.1 (no Docker): a worker says it is
connecting, that it connected and to what, and its user count; the master says who joined, left or went
missing; Ctrl-C stops a worker cleanly, connected or not; a master stopped while it still waits for its
workers leaves no empty run folder."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time

import pytest

from procs import ROOT, Proc

LOCUST_WORKER_ARGS = ["--loglevel", "WARNING"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tokenswarm(*args: str, cwd: str = ROOT) -> Proc:
    return Proc([sys.executable, "-m", "tokenswarm", *args], cwd=cwd)


def locust_worker(port: int) -> Proc:
    import importlib.util

    spec = importlib.util.find_spec("tokenswarm.loadgen")
    assert spec is not None and spec.submodule_search_locations
    locustfile = os.path.join(list(spec.submodule_search_locations)[0], "locustfile.py")
    return Proc([sys.executable, "-m", "locust", "-f", locustfile, "--worker", "--master-host", "127.0.0.1",
                 "--master-port", str(port), *LOCUST_WORKER_ARGS])


def test_a_worker_says_what_it_connects_to_and_ctrl_c_stops_it_cleanly_before_it_connected():
    port = free_port()  # no master there
    w = tokenswarm("worker", "--master-host", "127.0.0.1", "--master-port", str(port))
    try:
        w.wait_for(rf"^tokenswarm: worker connecting to master 127\.0\.0\.1:{port}$", timeout=60)
        time.sleep(1.0)  # into Locust's connection attempts
        w.p.send_signal(signal.SIGINT)
        code = w.finish(timeout=30)
    finally:
        w.kill()
    assert code in (0, 130), w.text
    assert "Traceback" not in w.text and "KeyboardInterrupt" not in w.text, w.text


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
def test_master_and_workers_say_joins_users_leaves_and_losses(sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "50", "--tpot-ms", "20")
    port = free_port()
    master = tokenswarm("run", "--master", "--expect-workers", "3", "--master-bind-host", "127.0.0.1",
                        "--master-bind-port", str(port), "--host", sim.url, "--users", "6", "--duration", "20s",
                        "--max-tokens", "20", "--out", str(tmp_path / "run"))
    workers = []
    try:
        master.wait_for(r"master waiting for 3 worker", timeout=60)
        # two as users start them, one as a bare Locust worker (so that it can be killed without a goodbye)
        workers = [tokenswarm("worker", "--master-host", "127.0.0.1", "--master-port", str(port)) for _ in range(2)]
        workers.append(locust_worker(port))
        master.wait_for(r"^tokenswarm: worker w\d+ joined from \S+; 3 of 3 expected connected$", timeout=90)
        names = []
        for w in workers:
            m = w.wait_for(rf"^tokenswarm: worker (w\d+) connected to master 127\.0\.0\.1:{port} \(host \S+\)$",
                           timeout=60)
            names.append(m[1])
            w.wait_for(rf"^tokenswarm: worker {m[1]}: 2 users$", timeout=60)  # 6 users over 3 workers
        assert sorted(names) == ["w0", "w1", "w2"]
        assert workers[0].lines[0] == f"tokenswarm: worker connecting to master 127.0.0.1:{port}"

        # Ctrl-C on one: it says goodbye and exits cleanly; the master says it left
        leaver, killed = workers[0], workers[2]
        leaver.p.send_signal(signal.SIGINT)
        assert leaver.finish(timeout=60) == 0, leaver.text
        assert "Traceback" not in leaver.text and "KeyboardInterrupt" not in leaver.text, leaver.text
        assert leaver.lines[-1] == f"tokenswarm: worker {names[0]}: exiting"
        master.wait_for(rf"^tokenswarm: worker {names[0]} left; 2 of 3 expected connected$", timeout=30)
        # the others take over its users
        workers[1].wait_for(rf"^tokenswarm: worker {names[1]}: 3 users$", timeout=30)

        # SIGKILL on another: no goodbye, the master notices the missing heartbeats
        killed.p.send_signal(signal.SIGKILL)
        killed.finish(timeout=30)
        master.wait_for(rf"^tokenswarm: worker {names[2]} is missing \(no heartbeat\); 1 of 3 expected connected$",
                        timeout=30)
        workers[1].wait_for(rf"^tokenswarm: worker {names[1]}: 6 users$", timeout=30)

        assert master.finish(timeout=180) in (0, 1), master.text  # 1: requests lost with the killed worker
        # the master sends the last one away itself: no "left" line for it
        assert not re.search(rf"worker {names[1]} left", master.text), master.text
        assert workers[1].finish(timeout=60) == 0, workers[1].text
        assert workers[1].lines[-1] == f"tokenswarm: worker {names[1]}: exiting"
        for w in workers:
            assert "Traceback" not in w.text, w.text
    finally:
        for w in workers:
            w.kill()
        master.kill()


def test_a_master_stopped_while_waiting_for_workers_leaves_no_run_folder(sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "50", "--tpot-ms", "20")
    for sig, out in ((signal.SIGTERM, ""), (signal.SIGINT, str(tmp_path / "named"))):
        cwd = tmp_path / f"cwd-{sig}"
        cwd.mkdir()
        args = ["run", "--master", "--expect-workers", "2", "--master-bind-host", "127.0.0.1", "--master-bind-port",
                str(free_port()), "--host", sim.url, "--users", "2", "--duration", "5s"]
        master = tokenswarm(*args, *(["--out", out] if out else []), cwd=str(cwd))
        try:
            master.wait_for(r"master waiting for 2 worker", timeout=60)
            time.sleep(1.0)
            master.p.send_signal(sig)
            assert master.finish(timeout=60) == 130, master.text
        finally:
            master.kill()
        assert "interrupted while waiting for workers; no test ran" in master.text, master.text
        if out:
            assert not os.path.exists(out)
        # reports/ itself may stay, never a run folder in it
        assert not (cwd / "reports").exists() or os.listdir(cwd / "reports") == []


def test_a_named_run_folder_that_existed_is_kept(sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "50", "--tpot-ms", "20")
    out = tmp_path / "mine"
    out.mkdir()
    master = tokenswarm("run", "--master", "--expect-workers", "2", "--master-bind-host", "127.0.0.1",
                        "--master-bind-port", str(free_port()), "--host", sim.url, "--out", str(out))
    try:
        master.wait_for(r"master waiting for 2 worker", timeout=60)
        master.p.send_signal(signal.SIGTERM)
        assert master.finish(timeout=60) == 130, master.text
    finally:
        master.kill()
    assert out.is_dir()


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
def test_a_test_stopped_in_the_web_ui_sends_no_worker_away(sim_factory, tmp_path):
    """Locust drops a worker from its list at every test stop and adds it back when it is ready again: the
    master says nothing of it, the worker says it runs 0 users and stays."""
    import urllib.request

    from conftest import wait_http

    sim = sim_factory("--ttft-ms", "50", "--tpot-ms", "20")
    web, port = free_port(), free_port()
    master = tokenswarm("ui", "--master", "--expect-workers", "1", "--master-bind-host", "127.0.0.1",
                        "--master-bind-port", str(port), "--web-port", str(web), "--host", sim.url, "--max-tokens",
                        "20", "--stop-timeout", "2", "--out", str(tmp_path / "ui"))
    worker = None
    base = f"http://127.0.0.1:{web}"
    try:
        wait_http(base + "/")
        worker = tokenswarm("worker", "--master-host", "127.0.0.1", "--master-port", str(port))
        master.wait_for(r"^tokenswarm: worker w0 joined from \S+; 1 of 1 expected connected$", timeout=60)
        for _ in range(2):  # a test, stopped; then another with the same worker
            urllib.request.urlopen(urllib.request.Request(base + "/swarm", data=b"user_count=2&spawn_rate=2"),
                                   timeout=10)
            worker.wait_for(r"^tokenswarm: worker w0: 2 users$", timeout=30)
            time.sleep(1.0)
            urllib.request.urlopen(urllib.request.Request(base + "/stop", data=b""), timeout=10)
            worker.wait_for(r"^tokenswarm: worker w0: 0 users$", timeout=30)
            time.sleep(3.0)  # past --stop-timeout: the worker is ready again
            worker.lines.clear()
        assert worker.p.poll() is None, worker.text
        said = [ln for ln in master.lines if re.match(r"tokenswarm: worker w\d+ ", ln)]
        assert said == ["tokenswarm: worker w0 joined from " + said[0].split(" from ", 1)[1]], said
    finally:
        master.p.terminate()
        master.finish(timeout=60)
        if worker is not None:
            worker.finish(timeout=60)
            worker.kill()
        master.kill()
    assert "Traceback" not in master.text
