"""Shared fixtures: the simulated engine in a child process, and a runner for the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # test helpers (streamserver)

from tokenswarm.simengine import SimProcess  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def sim_factory() -> Iterator:
    """Start simulated engines on free loopback ports; all are stopped at the end of the test."""
    procs: list[SimProcess] = []

    def start(*args: str) -> SimProcess:
        p = SimProcess(list(args)).start()
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


@pytest.fixture
def sim_fixed(sim_factory) -> SimProcess:
    """An engine with fixed timing: TTFT 50 ms, TPOT 5 ms."""
    return sim_factory("--ttft-ms", "50", "--tpot-ms", "5")


def run_cli(*args: str, timeout: float = 300, env: dict[str, str] | None = None,
            cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tokenswarm ARGS``; returns the completed process (text output)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENSWARM_", "LOCUST_"))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "tokenswarm", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or ROOT)


@pytest.fixture
def cli():
    return run_cli


def wait_http(url: str, timeout: float = 30) -> bytes:
    """GET ``url`` until it answers (a server a test started is coming up); its body. Raises after ``timeout``."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read()
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.3)
