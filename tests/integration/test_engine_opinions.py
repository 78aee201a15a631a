"""The engine's own latency histograms, read at each level's edges, agree with the client's on loopback."""

import json
import os
import urllib.request

import pandas as pd
import pytest

from tokenswarm import enginemetrics
from tokenswarm.report.analysis import level_warmups
from tokenswarm.report.engine import engine_levels_for_run
from tokenswarm.report.levels import load_requests, windows_from

# client TTFT minus the engine's, per level: seen 0.4-0.7 ms on loopback (2 cores, other tests beside);
# the bound leaves room for a busy machine's scheduling delays in the client
OUTSIDE_MAX_MS = 25.0


def test_the_simulated_engine_serves_vllms_latency_histograms(sim_factory, cli, tmp_path):
    sim = sim_factory("--ttft-ms", "40", "--tpot-ms", "5")
    p = cli("run", "--host", sim.url, "--users", "2", "--requests", "6", "--max-tokens", "8", "--no-preflight",
            "--out", str(tmp_path / "run"))
    assert p.returncode == 0, p.stderr[-2000:]
    with urllib.request.urlopen(sim.url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    for name in ("vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds",
                 "vllm:request_queue_time_seconds", "vllm:inter_token_latency_seconds"):
        assert f"# TYPE {name} histogram" in text, name
        assert f'{name}_bucket{{le="+Inf",model_name="tokenswarm-sim"}}' in text
    v = enginemetrics.parse(text)
    assert v["engine_ttft_count"] == 6 and v["engine_e2e_count"] == 6 and v["engine_itl_count"] == 6 * 7
    assert v["engine_ttft_sum_s"] / 6 == pytest.approx(0.040, abs=0.005)
    assert v["engine_itl_sum_s"] / 42 == pytest.approx(0.005, abs=0.001)


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
def test_engine_and_client_ttft_agree_per_level(sim_factory, cli, tmp_path):
    # 4 slots: level 2 never queues, level 8 keeps 4 requests waiting
    sim = sim_factory("--ttft-ms", "150", "--tpot-ms", "10", "--max-num-seqs", "4")
    run = str(tmp_path / "run")
    p = cli("sweep", "--host", sim.url, "--levels", "2,8", "--level-duration", "5s", "--max-tokens", "16",
            "--server-metrics-interval", "0.5", "--out", run)
    assert p.returncode == 0, p.stderr[-2000:]
    with open(os.path.join(run, "run.json")) as fh:
        meta = json.load(fh)
    timeline = meta["timeline"]
    sm = pd.read_csv(os.path.join(run, "server_metrics.csv"))
    assert set(enginemetrics.CSV_COLUMNS) <= set(sm.columns)
    # a scrape at once at the second level's start and where the load stopped
    edges = sm.edge_time.dropna().round(3).tolist()
    assert round(timeline[1]["start"], 3) in edges and round(timeline[-1]["end"], 3) in edges
    df = load_requests(os.path.join(run, "requests.csv"))
    windows = windows_from(df, timeline, meta["settings"]["warmup_s"], level_warmups(meta["settings"]))
    eng = engine_levels_for_run(run, windows).set_index("level")
    for level in (2.0, 8.0):
        r = eng.loc[level]
        assert r.engine_ttft_count >= 20 and abs(r.client_ttft_count - r.engine_ttft_count) <= 2, r
        assert -1.0 <= r.outside_engine_ttft_ms <= OUTSIDE_MAX_MS, r
        assert -1.0 <= r.outside_engine_e2e_ms <= OUTSIDE_MAX_MS, r
        assert r.engine_itl_mean_ms == pytest.approx(10.0, abs=1.0)
        assert r.output_events_mean == 16 and r.coalesced_pct == 0
    assert eng.loc[2.0].engine_ttft_mean_ms == pytest.approx(150.0, abs=10.0)
    assert eng.loc[2.0].engine_queue_mean_ms < 5.0
    # 8 users on 4 slots: each waits about one request's life (150 + 15 * 10 ms) before it starts
    assert 200.0 < eng.loc[8.0].engine_queue_mean_ms < 400.0
    assert eng.loc[8.0].engine_ttft_mean_ms == pytest.approx(eng.loc[8.0].engine_queue_mean_ms + 150.0, abs=15.0)

    # the same figures in levels.csv and the report's three-opinion table
    lv = pd.read_csv(os.path.join(run, "levels.csv")).set_index("level")
    assert lv.loc[8.0].engine_queue_mean_ms == pytest.approx(eng.loc[8.0].engine_queue_mean_ms)
    assert lv.loc[2.0].output_events_mean == 16
    with open(os.path.join(run, "report.md")) as fh:
        md = fh.read()
    assert "## Three opinions per level" in md and "outside engine" in md
    # ours beside the engine's are over the engine's requests (E2E too, not the level's sample)
    table = md.split("## Three opinions per level", 1)[1]
    row = next(ln for ln in table.splitlines() if ln.startswith("| 8 |")).split("|")[1:-1]
    assert row[1].strip() == f"{lv.loc[8.0].client_ttft_mean_ms:,.1f}"
    assert row[4].strip() == f"{lv.loc[8.0].client_e2e_mean_ms:,.1f}", row
