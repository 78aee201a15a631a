"""The newcomer's command: `make loadtest` against the embedded simulated engine, true to docs/reports.md."""

import os
import re
import subprocess

import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGRESS = re.compile(r"^tokenswarm \d\d:\d\d \| level \d+ \(\d+/\d+\) \| users \d+ \| .+ \| ok \d+ failed \d+$")


def env():
    return {k: v for k, v in os.environ.items() if not k.startswith(("TOKENSWARM_", "LOCUST_", "MAKE"))}


def readme_sample() -> list[str]:
    """The lines of the sample output in docs/reports.md (the first code block under 'What a run prints and
    writes')."""
    with open(os.path.join(ROOT, "docs", "reports.md"), encoding="utf-8") as fh:
        text = fh.read()
    section = text.split("## What a run prints and writes", 1)[1]
    return section.split("```", 2)[1].strip("\n").splitlines()


@pytest.mark.slow
def test_make_loadtest_shows_a_knee_exactly_as_the_readme_says(tmp_path):
    p = subprocess.run(["make", "-s", "loadtest", f"ARGS=--out {tmp_path}/run"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600, env=env())
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    lines = p.stdout.strip().splitlines()
    sample = readme_sample()
    assert lines[-1] == f"{tmp_path}/run"  # the run folder, last
    # the same progress lines, table header, rows and verdict as docs/reports.md shows
    assert all(PROGRESS.match(ln) for ln in sample[:2]), sample[:2]
    assert sum(bool(PROGRESS.match(ln)) for ln in lines) >= 5
    header = next(ln for ln in sample if ln.startswith("Concurrency"))
    assert header in lines
    # cells are 2+ spaces apart (a figure and its interval, `17.6 ±0.7`, are one cell)
    rows = [re.split(r"\s{2,}", ln.strip()) for ln in lines[lines.index(header) + 2:]
            if ln.strip() and ln.split()[0][0].isdigit()]
    # no level marked short (*) or cached (^); a busy machine may flag the client (!) or its load (<)
    assert [r[0].rstrip("!<") for r in rows] == ["1", "2", "4", "8", "16", "32", "64"]
    assert not any(set(r[0]) & set("*^") for r in rows)
    assert {r[6] for r in rows} == {"32.0"}  # Mean Output Len, as in docs/reports.md
    saturation = next(ln for ln in sample if ln.startswith("Saturation:"))
    assert saturation == "Saturation: concurrency 16" and saturation in lines
    levels = pd.read_csv(f"{tmp_path}/run/levels.csv")
    assert (levels.failed == 0).all() and not levels.short_window.any()
    # the knee docs/reports.md describes: flat throughput past 16 streams while TTFT climbs
    by = levels.set_index("level")
    assert by.loc[64, "output_throughput_tok_s"] < 1.1 * by.loc[16, "output_throughput_tok_s"]
    assert by.loc[64, "ttft_mean_ms"] > 10 * by.loc[16, "ttft_mean_ms"]


@pytest.mark.slow
def test_make_loadtest_one_level(tmp_path):
    p = subprocess.run(["make", "-s", "loadtest", "DURATION=6s", "USERS=8", f"ARGS=--out {tmp_path}/run"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=env())
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    lines = p.stdout.strip().splitlines()
    assert lines[-1] == f"{tmp_path}/run"
    assert any("Output Throughput (tok/s)" in ln for ln in lines)
    levels = pd.read_csv(f"{tmp_path}/run/levels.csv")
    assert levels.completed.iloc[0] > 0 and levels.failed.iloc[0] == 0
