"""The newcomer's command: `make loadtest` against the embedded simulated engine."""

import os
import subprocess

import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_make_loadtest_prints_the_table_and_ends_with_the_run_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENSWARM_", "LOCUST_", "MAKE"))}
    p = subprocess.run(["make", "-s", "loadtest", "DURATION=6s", "USERS=8", f"ARGS=--out {tmp_path}/run"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    lines = p.stdout.strip().splitlines()
    assert lines[-1] == f"{tmp_path}/run"
    assert any("Output Throughput (tok/s)" in ln for ln in lines)
    levels = pd.read_csv(f"{tmp_path}/run/levels.csv")
    assert levels.completed.iloc[0] > 0 and levels.failed.iloc[0] == 0
