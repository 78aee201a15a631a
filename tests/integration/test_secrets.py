"""Secrets never leak: a sentinel API key and header value are searched for in every output and log."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import wait_http

KEY = "sk-SENTINEL-7f3a9c1e"
HDR = "hdr-SENTINEL-b2d4e6"


def grep_tree(root, needles):
    hits = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as fh:
                data = fh.read()
            hits += [f"{path}: {n}" for n in needles if n.encode() in data]
    return hits


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
@pytest.mark.parametrize("workers", ["0", "2"])
def test_no_output_file_or_log_holds_the_key(workers, cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "5", "--tpot-ms", "2", "--api-key", KEY)
    out = str(tmp_path / "ok")
    p = cli("run", "--host", sim.url, "--requests", "12", "--users", "3", "--workers", workers,
            "--header", f"X-Team-Token: {HDR}", "--loglevel", "DEBUG", "--out", out, env={"TOKENSWARM_API_KEY": KEY})
    assert p.returncode == 0, p.stderr[-3000:]
    with open(os.path.join(out, "requests.csv")) as fh:
        assert len(fh.read().splitlines()) == 13
    # a run whose key is rejected on every request: the server echoes the key in its error text
    bad = str(tmp_path / "bad")
    q = cli("run", "--host", sim.url, "--requests", "4", "--users", "2", "--no-preflight", "--max-fail-ratio", "1",
            "--workers", workers, "--out", bad, env={"OPENAI_API_KEY": KEY + "-WRONG"})
    assert q.returncode == 0, q.stderr[-3000:]
    with open(os.path.join(bad, "requests.csv")) as fh:
        assert "<redacted>" in fh.read()
    hits = grep_tree(str(tmp_path), [KEY, HDR])
    hits += [f"output: {n}" for n in (KEY, HDR) if n in p.stdout + p.stderr + q.stdout + q.stderr]
    assert not hits, hits


def test_the_web_ui_never_shows_the_key(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENSWARM_", "LOCUST_"))}
    env["TOKENSWARM_API_KEY"] = KEY
    proc = subprocess.Popen([sys.executable, "-m", "tokenswarm", "ui", "--web-port", str(port), "--header",
                             f"X-Team-Token: {HDR}", "--sim-args", "--ttft-ms 5 --tpot-ms 1", "--out",
                             str(tmp_path / "ui")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    base = f"http://127.0.0.1:{port}"
    pages = []
    try:
        wait_http(base + "/")
        urllib.request.urlopen(urllib.request.Request(base + "/swarm", data=b"user_count=2&spawn_rate=2"), timeout=5)
        time.sleep(2)
        for path in ("/", "/stats/requests", "/stats/report", "/stats/requests/csv", "/exceptions"):
            try:
                with urllib.request.urlopen(base + path, timeout=10) as r:
                    pages.append((path, r.read().decode("utf-8", "replace")))
            except OSError:
                pass
        urllib.request.urlopen(urllib.request.Request(base + "/stop", data=b""), timeout=5)
        time.sleep(2)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert len(pages) >= 3
    for path, body in pages:
        assert KEY not in body and HDR not in body, path
    assert KEY not in out and HDR not in out
    assert not grep_tree(str(tmp_path), [KEY, HDR])
