"""A full sweep against a simulated engine that saturates: throughput rises then flattens, TTFT p99 climbs,
and the report names the saturation level."""

import json
import os

import pandas as pd
import pytest


@pytest.mark.slow
def test_sweep_shows_the_saturation_curve(cli, sim_factory, tmp_path):
    # 16 batch slots: past 16 streams requests queue for a slot
    sim = sim_factory("--max-num-seqs", "16", "--step-base-ms", "20", "--step-per-seq-ms", "1")
    out = str(tmp_path / "sweep")
    p = cli("sweep", "--host", sim.url, "--levels", "1,2,4,8,16,32,64,128", "--level-duration", "5s",
            "--max-tokens", "16", "--input-len", "32", "--out", out, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    lv = pd.read_csv(os.path.join(out, "levels.csv")).set_index("level")
    tp, ttft99 = lv["output_throughput_tok_s"], lv["ttft_p99_ms"]
    # rises while the engine has free slots ...
    assert tp[1] < tp[2] < tp[4] < tp[8] < tp[16]
    assert tp[16] > 4 * tp[1]
    # ... then flattens: doubling the streams past saturation adds (almost) nothing
    assert abs(tp[128] - tp[64]) / tp[64] < 0.10
    # while TTFT p99 climbs sharply (requests wait for a slot)
    assert ttft99[128] > 4 * ttft99[16] and ttft99[128] > ttft99[64] > ttft99[16]
    with open(os.path.join(out, "summary.json")) as fh:
        summary = json.load(fh)
    knee = summary["saturation_level"]
    assert knee in (16, 32, 64)
    with open(os.path.join(out, "report.md")) as fh:
        report = fh.read()
    assert f"**Saturation:** concurrency {knee:g}" in report
    assert f"Saturation: concurrency {knee:g}" in p.stdout  # the printed summary says it too
    for plot in ("throughput.png", "ttft.png", "tpot.png", "latency_vs_throughput.png"):
        assert os.path.getsize(os.path.join(out, "plots", plot)) > 5000
