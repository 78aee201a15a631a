"""Watching a test live: Prometheus, the engine's /metrics, the client self-check, progress lines (the web UI:
test_web_ui.py)."""

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pandas as pd
import pytest

from conftest import wait_http

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_clean():
    return {k: v for k, v in os.environ.items() if not k.startswith(("TOKENSWARM_", "LOCUST_"))}


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
@pytest.mark.skipif(not shutil.which("prometheus"), reason="Debian's prometheus is not installed (.ci/run installs it)")
def test_prometheus_scrapes_the_exporter_and_promql_answers(cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "50", "--tpot-ms", "10")
    mport, pport = free_port(), free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tokenswarm\n"
                   f"    static_configs:\n      - targets: ['127.0.0.1:{mport}']\n")
    prom = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{pport}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{pport}"
    try:
        wait_http(base + "/-/ready")
        t0 = time.time()
        p = cli("run", "--host", sim.url, "--users", "8", "--duration", "15s", "--max-tokens", "16",
                "--metrics-port", str(mport), "--out", str(tmp_path / "run"))
        assert p.returncode == 0, p.stderr[-2000:]
        t1 = time.time()
        query = "histogram_quantile(0.5, sum(rate(tokenswarm_ttft_seconds_bucket[10s])) by (le))"
        url = base + "/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": query, "start": t0, "end": t1, "step": "1"})
        values = json.loads(wait_http(url))["data"]["result"]
        assert values, "PromQL over the TTFT histogram returned nothing"
        medians = [float(v) for _, v in values[0]["values"] if v not in ("NaN",)]
        assert medians and all(0.025 <= m <= 0.1 for m in medians)  # the engine's TTFT is 50 ms
        count = json.loads(wait_http(base + "/api/v1/query?" + urllib.parse.urlencode(
            {"query": "max_over_time(tokenswarm_requests_total{status=\"ok\"}[1m])", "time": t1})))
        assert count["data"]["result"] and float(count["data"]["result"][0]["value"][1]) > 0
    finally:
        prom.terminate()
        prom.wait(timeout=30)


def _requests_total(text: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(r'^tokenswarm_requests_total\{status="[a-z_]+"\} (\S+)$',
                                                        text, re.M))


def test_the_last_scrape_of_a_headless_run_equals_requests_csv(sim_factory, tmp_path):
    # a scraper polling once a second, as Prometheus would; the run ends by its duration, requests in flight
    sim = sim_factory("--ttft-ms", "30", "--tpot-ms", "5")
    mport = free_port()
    run = tmp_path / "run"
    env = {**env_clean(), "PYTHONPATH": os.path.join(ROOT, "src")}
    proc = subprocess.Popen([os.sys.executable, "-m", "tokenswarm", "run", "--host", sim.url, "--users", "8",
                             "--duration", "4s", "--max-tokens", "16", "--metrics-port", str(mport),
                             "--out", str(run)], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    last, answers = None, 0
    try:
        while proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=2) as r:
                    last = r.read().decode()
                    answers += 1
            except OSError:
                pass
            time.sleep(1.0)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    rows = len(pd.read_csv(run / "requests.csv"))
    assert answers >= 2 and last is not None and rows > 0
    assert _requests_total(last) == rows  # the last word is the final count


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
def test_a_sweep_samples_the_engines_metrics_per_level(cli, sim_factory, tmp_path):
    sim = sim_factory("--max-num-seqs", "4", "--step-base-ms", "10", "--step-per-seq-ms", "1")
    out = str(tmp_path / "run")
    p = cli("sweep", "--host", sim.url, "--levels", "2,8", "--level-duration", "4s", "--max-tokens", "16",
            "--server-metrics-interval", "0.5", "--out", out)
    assert p.returncode == 0, p.stderr[-2000:]
    sm = pd.read_csv(os.path.join(out, "server_metrics.csv"))
    assert len(sm) >= 8 and set(sm.level.dropna().astype(int)) == {2, 8}
    levels = pd.read_csv(os.path.join(out, "levels.csv")).set_index("level")
    # 8 users on 4 slots: 4 running, about 4 waiting; 2 users: 2 running, none waiting
    assert levels.loc[8, "server_running"] > levels.loc[2, "server_running"]
    assert levels.loc[8, "server_waiting"] > 1.0 and levels.loc[2, "server_waiting"] < 0.5
    assert os.path.getsize(os.path.join(out, "plots", "server_metrics.png")) > 5000


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
def test_an_overloaded_worker_is_flagged_and_a_light_run_is_not(cli, sim_factory, tmp_path):
    light = str(tmp_path / "light")
    sim = sim_factory("--ttft-ms", "20", "--tpot-ms", "20")
    p = cli("run", "--host", sim.url, "--users", "4", "--duration", "6s", "--max-tokens", "16", "--out", light)
    assert p.returncode == 0, p.stderr[-2000:]
    with open(os.path.join(light, "summary.json")) as fh:
        summ = json.load(fh)
    assert not summ["timing_uncertain_levels"] and not summ["load_short_levels"]
    assert summ["client_checks"]["4"]["timing"].startswith("timings exact within")
    assert "warning: level" not in p.stdout
    # one process, 400 streams of 1 ms tokens: far more than one core can time
    hot = sim_factory("--ttft-ms", "5", "--tpot-ms", "1")
    heavy = str(tmp_path / "heavy")
    p = cli("run", "--host", hot.url, "--users", "400", "--duration", "8s", "--max-tokens", "64", "--out", heavy,
            "--max-fail-ratio", "1")
    assert p.returncode == 0, p.stderr[-2000:]
    with open(os.path.join(heavy, "summary.json")) as fh:
        summ = json.load(fh)
    flagged = {**summ["timing_uncertain_levels"], **summ["load_short_levels"]}
    assert list(flagged) == ["400"]
    assert "warning: level 400:" in p.stdout  # said live, too
    levels = pd.read_csv(os.path.join(heavy, "levels.csv"))
    assert bool(levels.timing_uncertain.iloc[0]) or bool(levels.load_short.iloc[0])
    with open(os.path.join(heavy, "report.md")) as fh:
        text = fh.read()
    assert "Timings not exact" in text or "Load short" in text


def test_headless_runs_print_progress_lines_with_the_final_tables_definitions(cli, sim_fixed, tmp_path):
    out = str(tmp_path / "run")
    p = cli("run", "--host", sim_fixed.url, "--users", "4", "--duration", "6s", "--progress-interval", "1",
            "--out", out)
    assert p.returncode == 0
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("tokenswarm 00:")]
    assert len(lines) >= 4
    assert all("level 4" in ln and "TTFT p50" in ln for ln in lines)
    # a rate appears once every request overlapping the window has reported; until then the line says so
    measured = [ln for ln in lines if "req/s" in ln]
    assert measured and all("measuring" in ln for ln in lines if ln not in measured)
    last = measured[-1]
    req_s = float(re.search(r"\| ([\d.]+) req/s", last).group(1))
    out_tok_s = float(re.search(r"out ([\d,]+)(?: ±[\d,.]+)? tok/s", last).group(1).replace(",", ""))
    levels = pd.read_csv(os.path.join(out, "levels.csv"))
    assert req_s == pytest.approx(levels.request_throughput_req_s[0], rel=0.1)
    assert out_tok_s == pytest.approx(levels.output_throughput_tok_s[0], rel=0.1)


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
def test_a_sweep_says_warming_up_during_a_levels_warm_up(cli, sim_fixed, tmp_path):
    p = cli("sweep", "--host", sim_fixed.url, "--levels", "2,4", "--level-duration", "5s", "--warmup", "2.5",
            "--max-tokens", "16", "--progress-interval", "1", "--out", str(tmp_path / "sweep"))
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("tokenswarm 00:")]
    warming = [ln for ln in lines if "warming up" in ln]
    assert any("level 2 (1/2)" in ln for ln in warming) and any("level 4 (2/2)" in ln for ln in warming)
    assert not any("0.0 req/s" in ln or "0.00 req/s" in ln for ln in lines)
