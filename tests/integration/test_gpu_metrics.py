"""--gpu-metrics: a DCGM exporter's page, sampled during a run against the simulated engine, per level."""

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from tokenswarm import gpumetrics

POWER_W = (300.0, 200.0)  # what each GPU's gauge reads
ENERGY_W = (500.0, 250.0)  # how fast each GPU's energy counter rises (J/s): the counter, not the gauge, is energy


class FakeDcgm(BaseHTTPRequestHandler):
    """Serves dcgm-exporter's text for two GPUs whose energy counters rise with the wall clock."""

    t0 = time.time()

    def do_GET(self):  # noqa: N802 (http.server's name)
        now = time.time() - self.t0
        readings = {("gpu-node-1", str(i)): {"power_w": POWER_W[i], "energy_j": 1.0e6 + ENERGY_W[i] * now,
                                             "util_pct": 50.0 + 10 * i, "memory_used_mib": 70000.0 + i}
                    for i in range(2)}
        labels = {k: {"UUID": f"GPU-{k[1]}0000000-0000-0000-0000-000000000000", "device": f"nvidia{k[1]}",
                      "modelName": "NVIDIA H100 80GB HBM3"} for k in readings}
        body = gpumetrics.exposition(readings, labels).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def dcgm():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeDcgm)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/metrics"
    srv.shutdown()
    srv.server_close()


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
def test_a_sweep_reports_power_and_energy_per_token_per_level(cli, sim_factory, dcgm, tmp_path):
    sim = sim_factory("--ttft-ms", "20", "--tpot-ms", "5")
    out = str(tmp_path / "run")
    p = cli("sweep", "--host", sim.url, "--levels", "2,6", "--level-duration", "4s", "--max-tokens", "16",
            "--server-metrics-interval", "0.5", "--gpu-metrics", dcgm, "--out", out)
    assert p.returncode == 0, p.stderr[-2000:]
    gm = pd.read_csv(os.path.join(out, "gpu_metrics.csv"), dtype={"gpu": str})
    assert list(gm.columns) == list(gpumetrics.CSV_COLUMNS)
    assert set(gm.gpu) == {"0", "1"} and len(gm) >= 16 and set(gm.level.dropna().astype(int)) == {2, 6}
    assert gm.edge_time.notna().any()  # scraped at once at the levels' edges
    lv = pd.read_csv(os.path.join(out, "levels.csv")).set_index("level")
    for level in (2, 6):
        r = lv.loc[level]
        assert r.gpu_count == 2 and r.gpu_power_w == pytest.approx(sum(POWER_W))
        assert r.gpu_util_pct == pytest.approx(55.0) and r.gpu_memory_used_mib == pytest.approx(140001.0)
        # the counters' rise over the window, per output token: 750 J/s over the level's tok/s
        assert r.energy_per_output_token_j == pytest.approx(sum(ENERGY_W) / r.output_throughput_tok_s, rel=0.05)
        assert r.output_throughput_per_gpu_tok_s == pytest.approx(r.output_throughput_tok_s / 2)
    with open(os.path.join(out, "report.md"), encoding="utf-8") as fh:
        md = fh.read()
    assert "GPU (DCGM, --gpu-metrics)" in md and "J / output token" in md
    assert os.path.getsize(os.path.join(out, "plots", "gpu.png")) > 5000 and "plots/gpu.png" in md


def test_a_bad_gpu_metrics_url_is_one_line_and_exit_2(cli, tmp_path):
    p = cli("run", "--host", "http://127.0.0.1:9", "--gpu-metrics", "ftp://x/metrics", "--requests", "1",
            "--out", str(tmp_path / "run"))
    assert p.returncode == 2
    assert "bad --gpu-metrics" in p.stderr and "Traceback" not in p.stderr
    assert not os.path.exists(tmp_path / "run")
