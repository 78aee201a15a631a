"""Preflight: a target that cannot take the test stops the run within seconds, with one line and exit code 2."""

import json
import os
import socket
import time

import pytest


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(p, t0, *needles, out=None):
    assert p.returncode == 2, p.stdout[-1500:] + p.stderr[-1500:]
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("tokenswarm: error:")]
    assert len(lines) == 1, p.stderr
    assert p.stderr.count(lines[0].split(": ", 2)[2]) == 1  # said once, not again by a logger
    for n in needles:
        assert n in lines[0], lines[0]
    assert "Response time percentiles" not in p.stdout + p.stderr  # no empty Locust tables
    assert time.monotonic() - t0 < 30  # seconds, not a test's worth of timeouts
    if out is not None:
        assert not os.path.exists(out)  # no run folder: nothing ran


def test_unreachable_host(cli, tmp_path):
    t0 = time.monotonic()
    p = cli("run", "--engine", "vllm", "--model", "m", "--host", f"http://127.0.0.1:{closed_port()}",
            "--out", str(tmp_path / "r"), timeout=120)
    check(p, t0, "cannot reach", "Connection refused", out=str(tmp_path / "r"))


def test_a_failed_start_leaves_no_run_folder_under_reports(cli, tmp_path):
    # the default run folder root: nothing is created there when the target cannot take the test
    p = cli("sweep", "--engine", "vllm", "--model", "m", "--host", f"http://127.0.0.1:{closed_port()}",
            "--levels", "1,2", cwd=str(tmp_path))
    check(p, time.monotonic() - 1, "cannot reach")
    assert os.listdir(tmp_path) == []


def test_wrong_path(cli, sim_fixed, tmp_path):
    t0 = time.monotonic()
    p = cli("run", "--host", sim_fixed.url, "--endpoint", "/v1/chat/complete", "--out", str(tmp_path / "r"))
    check(p, t0, "wrong path?", "HTTP 404", "/v1/chat/complete", out=str(tmp_path / "r"))


@pytest.mark.parametrize("suffix", ["/v1", "/v1/", "/v1/chat/completions"])
def test_a_host_written_with_v1_or_the_whole_path_works(cli, sim_fixed, tmp_path, suffix):
    # OpenAI clients take a base URL ending in /v1; some users paste the whole request URL
    out = str(tmp_path / "r")
    # the engine's name in any case (vLLM's own spelling)
    p = cli("run", "--engine", "vLLM", "--host", sim_fixed.url + suffix, "--requests", "2", "--out", out)
    assert p.returncode == 0, p.stderr[-2000:]
    with open(os.path.join(out, "run.json")) as fh:
        s = json.load(fh)["settings"]
    assert s["engine"] == "vllm"
    assert s["base_url"].rstrip("/") + s["endpoint"] == sim_fixed.url + "/v1/chat/completions"
    # the engine's /metrics is beside /v1, not under it: read, so the engine's opinion is in the run
    assert s["server_metrics"] == sim_fixed.url + "/metrics"
    assert "metrics" not in p.stderr, p.stderr
    with open(os.path.join(out, "server_metrics.csv")) as fh:
        assert len(fh.read().splitlines()) >= 2  # a header and at least one scrape


def test_a_wrong_base_path_says_where_the_path_belongs(cli, sim_fixed, tmp_path):
    p = cli("run", "--host", sim_fixed.url + "/api", "--out", str(tmp_path / "r"))
    check(p, time.monotonic(), "wrong path?", "--host is the server's base URL", "'/api'")


def test_a_rejected_key_is_said_rejected(cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "1", "--tpot-ms", "1", "--api-key", "sk-right-key-456")
    t0 = time.monotonic()
    p = cli("run", "--host", sim.url, "--out", str(tmp_path / "r"), env={"TOKENSWARM_API_KEY": "sk-wrong-key-123"})
    check(p, t0, "the server rejected the API key", "401")
    assert "sk-wrong-key-123" not in p.stdout + p.stderr


def test_no_key_at_all_says_none_was_given_and_how_to_give_one(cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "1", "--tpot-ms", "1", "--api-key", "sk-right-key-456")
    t0 = time.monotonic()
    p = cli("run", "--host", sim.url, "--out", str(tmp_path / "r"), env={"OPENAI_API_KEY": ""})
    check(p, t0, "the server asks for an API key and none was given", "HTTP 401", "--api-key KEY",
          "$TOKENSWARM_API_KEY", out=str(tmp_path / "r"))
    assert "rejected" not in p.stderr


def test_a_right_key_from_the_environment_passes(cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "1", "--tpot-ms", "1", "--api-key", "sk-right-key-456")
    p = cli("run", "--host", sim.url, "--requests", "3", "--out", str(tmp_path / "r"),
            env={"OPENAI_API_KEY": "sk-right-key-456"})
    assert p.returncode == 0, p.stderr[-2000:]


def test_unknown_model_shows_the_servers_text(cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "1", "--tpot-ms", "1", "--strict-model", "--model", "served-model")
    t0 = time.monotonic()
    p = cli("run", "--host", sim.url, "--model", "other-model", "--out", str(tmp_path / "r"))
    check(p, t0, "The model `other-model` does not exist.", "the server offers: served-model")


def test_model_is_asked_from_the_server_when_not_given(cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "1", "--tpot-ms", "1", "--strict-model", "--model", "served-model")
    out = str(tmp_path / "r")
    p = cli("run", "--engine", "vllm", "--host", sim.url, "--requests", "2", "--out", out)
    assert p.returncode == 0, p.stderr[-2000:]
    with open(f"{out}/run.json") as fh:
        assert json.load(fh)["settings"]["model"] == "served-model"
