"""Preflight: a target that cannot take the test stops the run within seconds, with one line and exit code 2."""

import socket
import time

import pytest


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(p, t0, *needles):
    assert p.returncode == 2, p.stdout[-1500:] + p.stderr[-1500:]
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("tokenswarm: error:")]
    assert len(lines) == 1, p.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    assert time.monotonic() - t0 < 30  # seconds, not a test's worth of timeouts


def test_unreachable_host(cli, tmp_path):
    t0 = time.monotonic()
    p = cli("run", "--engine", "vllm", "--model", "m", "--host", f"http://127.0.0.1:{closed_port()}",
            "--out", str(tmp_path / "r"), timeout=120)
    check(p, t0, "cannot reach", "Connection refused")


def test_wrong_path(cli, sim_fixed, tmp_path):
    t0 = time.monotonic()
    p = cli("run", "--host", sim_fixed.url, "--endpoint", "/v1/chat/complete", "--out", str(tmp_path / "r"))
    check(p, t0, "wrong path?", "HTTP 404", "/v1/chat/complete")


@pytest.mark.parametrize("key", ["", "sk-wrong-key-123"])
def test_rejected_or_missing_key(cli, sim_factory, tmp_path, key):
    sim = sim_factory("--ttft-ms", "1", "--tpot-ms", "1", "--api-key", "sk-right-key-456")
    t0 = time.monotonic()
    p = cli("run", "--host", sim.url, "--out", str(tmp_path / "r"), env={"TOKENSWARM_API_KEY": key} if key else {})
    check(p, t0, "rejected the API key", "401")
    assert "sk-wrong-key-123" not in p.stdout + p.stderr


def test_a_right_key_from_the_environment_passes(cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "1", "--tpot-ms", "1", "--api-key", "sk-right-key-456")
    p = cli("run", "--host", sim.url, "--requests", "3", "--out", str(tmp_path / "r"),
            env={"OPENAI_API_KEY": "sk-right-key-456"})
    assert p.returncode == 0, p.stderr[-2000:]


def test_unknown_model_shows_the_servers_text(cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "1", "--tpot-ms", "1", "--strict-model", "--model", "served-model")
    t0 = time.monotonic()
    p = cli("run", "--host", sim.url, "--model", "other-model", "--out", str(tmp_path / "r"))
    check(p, t0, "The model `other-model` does not exist.")


def test_model_is_asked_from_the_server_when_not_given(cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "1", "--tpot-ms", "1", "--strict-model", "--model", "served-model")
    out = str(tmp_path / "r")
    p = cli("run", "--engine", "vllm", "--host", sim.url, "--requests", "2", "--out", out)
    assert p.returncode == 0, p.stderr[-2000:]
    import json

    with open(f"{out}/run.json") as fh:
        assert json.load(fh)["settings"]["model"] == "served-model"
