"""Exact books while the engine fails on purpose: every injected fault is one record of the right kind."""

import json
import os

import pandas as pd
import pytest

from tokenswarm.simengine.faults import EXPECTED_STATUS, FAULTS

RATES = {"http_429": 0.05, "http_500": 0.05, "slow_headers": 0.03, "disconnect": 0.05, "malformed": 0.05,
         "error_event": 0.05, "stall": 0.03, "truncate": 0.05}


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
@pytest.mark.parametrize("workers", [0, 2])
def test_fault_matrix_books_balance(workers, cli, sim_factory, tmp_path):
    args = ["--ttft-ms", "20", "--tpot-ms", "5", "--fault-delay", "2", "--fault-seed", str(7 + workers)]
    for kind, rate in RATES.items():
        args += ["--fault", f"{kind}={rate}"]
    sim = sim_factory(*args)
    out = str(tmp_path / "run")
    p = cli("sweep", "--host", sim.url, "--levels", "4,8", "--level-duration", "5s", "--max-tokens", "8",
            "--read-timeout", "1", "--max-fail-ratio", "1", "--workers", str(workers), "--out", out, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    stats = sim.stats()
    injected = stats["faults_injected"]
    assert set(injected) == set(FAULTS), injected  # every kind was exercised
    df = pd.read_csv(os.path.join(out, "requests.csv"))
    # every request the engine received (but the preflight) is exactly one row
    assert len(df) == stats["requests"] - 1
    assert (df.status != "cancelled").all()
    expected: dict[str, int] = {}
    for kind, n in injected.items():
        expected[EXPECTED_STATUS[kind]] = expected.get(EXPECTED_STATUS[kind], 0) + n
    got = df[df.status != "ok"].status.value_counts().to_dict()
    assert got == expected
    assert (df.status == "ok").sum() == len(df) - sum(injected.values())
    # per level: requests = ok + failed
    levels = pd.read_csv(os.path.join(out, "levels.csv"))
    for row in levels.itertuples():
        mine = df[df.level == row.level]
        assert row.requests == len(mine) == row.completed + row.failed
    # Locust's failure table agrees kind by kind
    fails = pd.read_csv(os.path.join(out, "locust_failures.csv"))
    by_kind = fails.assign(kind=fails.Error.str.split(":").str[0]).groupby("kind")["Occurrences"].sum().to_dict()
    assert by_kind == expected
    with open(os.path.join(out, "run.json")) as fh:
        assert json.load(fh)["status_counts"] == df.status.value_counts().to_dict()
