"""`docker compose --profile sim up --scale worker=4`, for real, through deploy/docker/up-local.sh.

The script installs or finds the Docker engine, makes the base image (debootstrap), builds the image once
and runs a headless test (MODE=run) with 4 worker containers, then tears down what it started. Checked:
every worker connected and shipped records, run.json is complete, requests.csv holds one row per request
the engine received (its own count), and `compose down` leaves no empty run folder; a worker container
killed mid-run (`docker kill`) is reported lost, and its books close: rows + requests lost in flight =
requests the engine received.

The first run takes a few minutes (Docker, the base image, the build); later ones reuse
${TOKENSWARM_CACHE:-~/.cache/tokenswarm}/docker. Under CI=true these tests must run; elsewhere they skip,
with the reason, where Docker cannot be set up (not root and no Docker engine running).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import time
from collections.abc import Iterator

import pandas as pd
import pytest

from procs import ROOT, Proc, env_clean

SCRIPT = os.path.join(ROOT, "deploy", "docker", "up-local.sh")
ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
PREFLIGHT_REQUESTS = 1  # the master's one tiny request before the test (tokenswarm.preflight)
SIM_ARGS = "--ttft-ms 50 --tpot-ms 20"  # 64 tokens: about 1.3 s a request


def docker_works() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=60).returncode == 0


@pytest.fixture(scope="module")
def can_set_up_docker() -> None:
    if os.environ.get("CI") == "true" or docker_works():
        return
    if os.geteuid() != 0:
        pytest.skip("no Docker engine runs, and only root can install and start one (CI does)")
    if shutil.which("dockerd") is None and shutil.which("apt-get") is None:
        pytest.skip("no Docker engine and no apt-get to install Debian's docker.io")


class Bringup(Proc):
    """deploy/docker/up-local.sh in a child process, its output read line by line as it comes."""

    def __init__(self, tmp_path, **env: str) -> None:
        self.reports = tmp_path / "reports"
        self.project = f"tokenswarm-test-{os.getpid()}-{int(time.time())}"
        full = env_clean()
        if "TOKENSWARM_CACHE" in os.environ:
            full["TOKENSWARM_CACHE"] = os.environ["TOKENSWARM_CACHE"]
        full.update({"REPORTS_DIR": str(self.reports), "COMPOSE_PROJECT_NAME": self.project, "SIM_ARGS": SIM_ARGS,
                     "MAX_TOKENS": "64", "TIMEOUT": "600", **env})
        full.pop("WEB_PASSWORD", None)
        super().__init__([SCRIPT], env=full, clean=lambda line: ESCAPES.sub("", line))

    def finish(self, timeout: float = 1500) -> int:
        try:
            return super().finish(timeout)
        except subprocess.TimeoutExpired:
            self.p.terminate()  # the script's trap tears down what it started
            self.p.wait(timeout=120)
            raise

    def master(self) -> list[str]:
        return [ln.split("| ", 1)[1] for ln in self.lines if re.match(r"^master-\d+\s+\| ", ln)]

    def engine_stats(self) -> dict:
        m = self.wait_for(r"^up-local\.sh: engine stats: (\{.*\})$", timeout=1)
        return json.loads(m[1])

    def run_dir(self) -> str:
        return self.wait_for(r"^up-local\.sh: run folder (\S+)$", timeout=1)[1]

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()  # not SIGKILL: the script's trap tears down what it started
            self.p.wait(timeout=180)


@pytest.fixture
def bringup(can_set_up_docker, tmp_path) -> Iterator:
    started: list[Bringup] = []

    def start(**env: str) -> Bringup:
        b = Bringup(tmp_path, **env)
        started.append(b)
        return b

    yield start
    for b in started:
        b.kill()


def read_run(run_dir: str) -> tuple[dict, pd.DataFrame]:
    with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as fh:
        run = json.load(fh)
    return run, pd.read_csv(os.path.join(run_dir, "requests.csv"))


def check_teardown(b: Bringup) -> None:
    """Only the test's run folder under REPORTS_DIR, no empty one; the script's dockerd (if any) is gone."""
    folders = [d for d in os.listdir(b.reports) if os.path.isdir(b.reports / d)]
    assert all(os.listdir(b.reports / d) for d in folders), f"empty run folder in {folders}"
    assert "up-local.sh: [" in b.text and f"compose down (project {b.project})" in b.text, b.tail()
    m = re.search(r"stopping the dockerd this script started \(pid (\d+)\)", b.text)
    if m:
        assert not os.path.exists(f"/proc/{m[1]}"), "the dockerd the script started still runs"
    elif docker_works():  # a Docker engine that was already running stays, without this project's containers
        ps = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={b.project}"],
                            capture_output=True, text=True, timeout=60)
        assert ps.stdout.strip() == "", ps.stdout


@pytest.mark.slow
def test_compose_up_with_4_workers_for_real(bringup):
    b = bringup(WORKERS="4", USERS="8", DURATION="15s")
    code = b.finish()
    assert code == 0, b.tail()
    master = b.master()
    joins = [ln for ln in master if re.match(r"tokenswarm: worker w\d+ joined from \S+; \d of 4 expected", ln)]
    assert len(joins) == 4 and joins[-1].endswith("4 of 4 expected connected"), master[:20]
    connected = set(re.findall(r"tokenswarm: worker (w\d+) connected to master master:5557", b.text))
    assert connected == {"w0", "w1", "w2", "w3"}, b.tail()

    run_dir = b.run_dir()
    run, df = read_run(run_dir)
    assert run["complete"] is True and run["lost_workers"] == []
    assert sorted(w["id"] for w in run["workers"]) == ["w0", "w1", "w2", "w3"]
    assert run["records"] == len(df) == sum(w["records"] for w in run["workers"])
    assert run["status_counts"] == {"ok": len(df)}
    assert set(df.worker) == {"w0", "w1", "w2", "w3"}  # records from every worker
    for name in ("levels.csv", "report.md", "locust_stats.csv"):
        assert os.path.isfile(os.path.join(run_dir, name)), name

    stats = b.engine_stats()
    # one row per request the engine received (and answered), beside the master's preflight request
    assert stats["requests"] == len(df) + PREFLIGHT_REQUESTS, (stats, len(df))
    assert stats["finished"] == stats["requests"] and stats["errors"] == 0, stats
    check_teardown(b)


@pytest.mark.slow
def test_compose_worker_killed_mid_run_closes_the_books(bringup, tmp_path):
    # output lengths spread +-90% (6 to 122 tokens): the users fall out of step, so requests start and end at
    # any moment, between the worker's once-a-second reports too, and the kill lands at a random one
    env_file = tmp_path / "tokenswarm.env"
    env_file.write_text("TOKENSWARM_OUTPUT_LEN=64\nTOKENSWARM_RANGE_RATIO=0.9\n", encoding="utf-8")
    b = bringup(WORKERS="4", USERS="16", DURATION="20s", ENV_FILE=str(env_file))
    b.wait_for(r"^master-\d+\s+\| tokenswarm: worker w\d+ joined from \S+; 4 of 4 expected connected$", timeout=1200)
    b.wait_for(r"^master-\d+\s+\| tokenswarm 00:0[5-9] \|", timeout=120)  # the test runs, requests in flight
    time.sleep(random.uniform(0.0, 3.0))
    ps = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={b.project}",
                         "--filter", "label=com.docker.compose.service=worker"],
                        capture_output=True, text=True, timeout=60)
    containers = ps.stdout.split()
    assert len(containers) == 4, (ps.stdout, ps.stderr)
    victim = containers[0]
    log = subprocess.run(["docker", "logs", victim], capture_output=True, text=True, timeout=60)
    victim_id = re.search(r"tokenswarm: worker (w\d+) connected", log.stdout + log.stderr)[1]
    subprocess.run(["docker", "kill", victim], check=True, capture_output=True, timeout=60)

    code = b.finish()
    assert code in (0, 1), b.tail()  # 1: the requests lost in flight count as failed
    assert any(re.match(rf"tokenswarm: worker {victim_id} is missing \(no heartbeat\)", ln) for ln in b.master()), \
        b.tail()
    run_dir = b.run_dir()
    run, df = read_run(run_dir)
    assert run["complete"] is True
    assert [w["id"] for w in run["lost_workers"]] == [victim_id], run["lost_workers"]
    lost = run["lost_workers"][0]
    assert (df.worker == victim_id).sum() == lost["records"] > 0  # what it shipped before it died is kept
    assert set(df.worker) >= {"w0", "w1", "w2", "w3"}
    stats = b.engine_stats()
    received = stats["requests"] - PREFLIGHT_REQUESTS
    print(f"books: rows {len(df)} (lost worker {victim_id}: {lost['records']}), lost_in_flight "
          f"{lost['lost_in_flight']}, engine received {received}, status {run['status_counts']}")
    # the books close: every request the engine received is a row, or counted as lost with the worker
    assert len(df) + lost["lost_in_flight"] == received, (
        f"rows {len(df)} + lost_in_flight {lost['lost_in_flight']} != engine received {received} "
        f"(lost worker {victim_id}: {lost}; engine {stats})")
    check_teardown(b)


@pytest.mark.slow
def test_compose_stopped_while_the_master_waits_leaves_no_run_folder(bringup):
    # the master waits for 2 workers, 1 container runs: the test never begins; the script's TIMEOUT stops it
    b = bringup(WORKERS="2", SCALE="1", TIMEOUT="20")
    b.wait_for(r"^master-\d+\s+\| tokenswarm: worker w0 joined from \S+; 1 of 2 expected connected$", timeout=1200)
    code = b.finish()
    assert code == 124, b.tail()
    assert "tokenswarm: interrupted while waiting for workers; no test ran" in b.text, b.tail()
    assert os.listdir(b.reports) == [], os.listdir(b.reports)
    check_teardown(b)
