"""deploy/gpu/sglang/: the offline SGLang kit's scripts, without a GPU.

What can run here: syntax, the pinned requirement file, strip_kernel.py on a small wheel of sglang-kernel's
layout, each script's one-line refusal of bad input, and sweep.sh end to end (sweep and pack steps) against
the simulated engine on 127.0.0.1 with a DCGM exporter's page served beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from tokenswarm import gpumetrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "deploy", "gpu", "sglang")
SCRIPTS = ("build_kit.sh", "install.sh", "serve.sh", "bench.sh", "sweep.sh", "common.sh")


def run(script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENSWARM_", "LOCUST_"))}
    full.update(env or {})
    return subprocess.run(["bash", os.path.join(HERE, script), *args], capture_output=True, text=True,
                          timeout=timeout, env=full, cwd=ROOT)


def one_error_line(p: subprocess.CompletedProcess, pattern: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and re.search(pattern, lines[0]), p.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_valid_bash(script):
    p = subprocess.run(["bash", "-n", os.path.join(HERE, script)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr


def pins(path: str) -> dict[str, str]:
    out = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip() or line.startswith("#"):
                continue
            m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) --hash=sha256:([0-9a-f]{64})\n?", line)
            assert m, f"{path}: not pinned with a hash: {line!r}"
            out[m[1].lower()] = m[2]
    return out


def test_requirements_pin_sglang_0_5_17_and_what_its_server_imports():
    sg = pins(os.path.join(HERE, "requirements-sglang.txt"))
    client = pins(os.path.join(ROOT, "deploy", "gpu", "vllm", "requirements-client.txt"))
    assert (sg["sglang"], sg["sglang-kernel"], sg["transformers"], sg["tokenizers"]) == (
        "0.5.17", "0.4.5", "5.12.1", "0.22.2")
    assert {"xgrammar", "ipython", "soundfile", "cffi", "jsonschema", "dill", "flashinfer-python"} <= set(sg)
    assert len(sg) == 60 and not set(sg) & set(client), "a wheel pinned twice"
    # PyTorch comes with the image (2.11.0, which 0.5.17 pins); FlashAttention 4 and friends are not needed
    assert not {"torch", "torchvision", "torchaudio", "flash-attn-4", "deep-gemm", "vllm"} & set(sg)


def kernel_wheel(path, so_body: bytes = b"\x7fELF" + b"x" * 5000) -> None:
    members = ["sgl_kernel/__init__.py", "sgl_kernel/flash_ops.abi3.so", "sgl_kernel/sm90/common_ops.abi3.so",
               "sgl_kernel/sm100/common_ops.abi3.so", "sgl_kernel/flashmla_ops.abi3.so",
               "sgl_kernel/infllm_ops.abi3.so"]
    record = "".join(f"{m},sha256=x,1\n" for m in members) + "sglang_kernel-0.4.5.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for m in members:
            z.writestr(zipfile.ZipInfo(m, date_time=(2026, 11, 1, 12, 0, 0)), so_body if m.endswith(".so") else b"")
        z.writestr(zipfile.ZipInfo("sglang_kernel-0.4.5.dist-info/RECORD", date_time=(2026, 11, 1, 12, 0, 0)), record)


def strip(folder) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(HERE, "strip_kernel.py"), str(folder)], capture_output=True,
                          text=True, timeout=60)


def test_strip_kernel_drops_the_unused_libraries_and_their_record_lines_reproducibly(tmp_path):
    digests = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        kernel_wheel(folder / "sglang_kernel-0.4.5-cp310-abi3-manylinux2014_x86_64.whl")
        p = strip(folder)
        assert p.returncode == 0, p.stderr
        assert "4 libraries removed" in p.stdout
        whl = folder / "sglang_kernel-0.4.5-cp310-abi3-manylinux2014_x86_64.whl"
        digests.append(hashlib.sha256(whl.read_bytes()).hexdigest())
        with zipfile.ZipFile(whl) as z:
            names = z.namelist()
            record = z.read("sglang_kernel-0.4.5.dist-info/RECORD").decode()
        assert names == ["sgl_kernel/__init__.py", "sgl_kernel/sm90/common_ops.abi3.so",
                         "sglang_kernel-0.4.5.dist-info/RECORD"]
        assert "flash_ops" not in record and "sm90/common_ops.abi3.so" in record and "sm100" not in record
        assert digests[-1] in (folder / "STRIPPED.txt").read_text()
        time.sleep(1.1)  # a second later: the bytes must not depend on when it ran
    assert digests[0] == digests[1]


def test_strip_kernel_refuses_a_wheel_of_another_layout_in_one_line(tmp_path):
    whl = tmp_path / "sglang_kernel-9.9-cp310-abi3-manylinux2014_x86_64.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("sgl_kernel/__init__.py", b"")
    before = whl.read_bytes()
    p = strip(tmp_path)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "its layout changed" in p.stderr
    assert whl.read_bytes() == before
    p = strip(tmp_path / "none")
    assert p.returncode == 2 and "usage" in p.stderr


def test_bad_input_is_refused_in_one_line(tmp_path):
    one_error_line(run("serve.sh", env={"SITE": str(tmp_path)}), r"sglang is missing: run install.sh first")
    one_error_line(run("sweep.sh"), r"usage: .*OUT_DIR")
    one_error_line(run("sweep.sh", "--steps", "sweep,plot", str(tmp_path)), r"unknown step 'plot'")
    one_error_line(run("bench.sh", env={"BENCH_LEVELS": "1,x"}), r"BENCH_LEVELS=1,x")
    one_error_line(run("bench.sh", env={"PORT": "9"}), r"no server answers at http://127.0.0.1:9/health")
    one_error_line(run("install.sh", str(tmp_path / "none")), r"/none does not exist: copy the kit's parts")
    one_error_line(run("build_kit.sh", str(tmp_path / "kit"), env={"PART_MIB": "sixty"}), r"PART_MIB=sixty")
    p = subprocess.run(["bash", os.path.join(ROOT, "deploy", "gpu", "vllm", "build_kit.sh"), str(tmp_path / "k")],
                       capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env={**os.environ, "KIT_REQUIREMENTS": str(tmp_path / "absent.txt")})
    one_error_line(p, r"KIT_REQUIREMENTS: .*absent.txt does not exist")


class Dcgm(BaseHTTPRequestHandler):
    t0 = time.time()

    def do_GET(self):  # noqa: N802 (http.server's name)
        now = time.time() - self.t0
        body = gpumetrics.exposition({("h", "0"): {"power_w": 420.0, "energy_j": 5e6 + 420.0 * now,
                                                   "util_pct": 95.0, "memory_used_mib": 75000.0}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
def test_sweep_sh_dry_run_against_the_simulated_engine_with_gpu_metrics(sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "30", "--tpot-ms", "5")
    dcgm = ThreadingHTTPServer(("127.0.0.1", 0), Dcgm)
    threading.Thread(target=dcgm.serve_forever, daemon=True).start()
    model = tmp_path / "model"
    p = subprocess.run([sys.executable, os.path.join(ROOT, "deploy", "gpu", "vllm", "make_model.py"), str(model),
                        "--vocab", "600"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    work, out = tmp_path / "work", tmp_path / "out"
    env = {"PY": sys.executable, "PORT": sim.url.rsplit(":", 1)[1], "WORK": str(work), "MODEL_DIR": str(model),
           "SERVED_NAME": "tokenswarm-sim", "LEVELS": "1,2", "LEVEL_DURATION": "3s", "WORKERS": "1",
           "MAX_TOKENS": "16", "INPUT_LEN": "32", "RUN_NAME": "dry",
           "GPU_METRICS": f"http://127.0.0.1:{dcgm.server_address[1]}/metrics"}
    try:
        p = run("sweep.sh", "--no-bench", str(out), env=env, timeout=240)
    finally:
        dcgm.shutdown()
        dcgm.server_close()
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "tokenswarm finished (exit 0)" in p.stdout and "bench" not in p.stdout.replace("--no-bench", "")
    packs = sorted(os.listdir(out))
    assert len(packs) == 1 and re.fullmatch(r"dry-\d{6}\.tar\.gz", packs[0])
    with tarfile.open(out / packs[0]) as tf:
        names = set(tf.getnames())
    assert {"run/requests.csv", "run/run.json", "run/server_metrics.csv", "run/gpu_metrics.csv",
            "run/machine.txt", "run/levels.csv"} <= names
    lv = pd.read_csv(work / "run" / "levels.csv").set_index("level")
    assert lv.loc[2, "gpu_power_w"] == pytest.approx(420.0)
    assert lv.loc[2, "energy_per_output_token_j"] == pytest.approx(420.0 / lv.loc[2, "output_throughput_tok_s"],
                                                                    rel=0.05)
    assert "sglang: " in (work / "run" / "machine.txt").read_text()
    with open(work / "run" / "run.json", encoding="utf-8") as fh:
        settings = json.load(fh)["settings"]
    assert settings["engine"] == "sglang" and settings["gpu_metrics"] == env["GPU_METRICS"]
    # levels too short for 3 request lifetimes run on, into the budget's slack at most: 540 - 60 - 2 x 3 s
    assert settings["min_lifetimes"] == 3 and settings["max_level_duration_s"] == 3 + 540 - 60 - 6


FAKE_PYNVML = '''
"""A pynvml with one GPU whose energy counter rises 300 J/s with the wall clock."""
import time
from types import SimpleNamespace
T0 = time.time()
class NVMLError(Exception):
    pass
def nvmlInit(): pass
def nvmlShutdown(): pass
def nvmlDeviceGetCount(): return 1
def nvmlDeviceGetHandleByIndex(i): return i
def nvmlDeviceGetPowerUsage(h): return 300000
def nvmlDeviceGetTotalEnergyConsumption(h): return int(1e9 + 300000 * (time.time() - T0))
def nvmlDeviceGetUtilizationRates(h): return SimpleNamespace(gpu=90, memory=50)
def nvmlDeviceGetMemoryInfo(h): return SimpleNamespace(used=70000 << 20)
def nvmlDeviceGetUUID(h): return "GPU-00000000-0000-0000-0000-000000000000"
def nvmlDeviceGetName(h): return "NVIDIA H100 80GB HBM3"
'''


@pytest.mark.slow  # over ~10 s: make test runs it, make test-fast leaves it out
def test_sweep_sh_starts_a_gpu_exporter_where_nvml_imports(sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "30", "--tpot-ms", "5")
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "pynvml.py").write_text(FAKE_PYNVML)
    model = tmp_path / "model"
    p = subprocess.run([sys.executable, os.path.join(ROOT, "deploy", "gpu", "vllm", "make_model.py"), str(model),
                        "--vocab", "600"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    work = tmp_path / "work"
    env = {"PY": sys.executable, "PORT": sim.url.rsplit(":", 1)[1], "WORK": str(work), "MODEL_DIR": str(model),
           "SERVED_NAME": "tokenswarm-sim", "LEVELS": "1,2", "LEVEL_DURATION": "3s", "WORKERS": "1",
           "MAX_TOKENS": "16", "INPUT_LEN": "32", "RUN_NAME": "dry", "PYTHONPATH": str(fake),
           "GPU_EXPORTER_PORT": str(free_port())}
    p = run("sweep.sh", "--steps", "sweep", str(tmp_path / "out"), env=env, timeout=240)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "gpu-exporter (pid " in p.stdout and f"127.0.0.1:{env['GPU_EXPORTER_PORT']}/metrics" in p.stdout
    lv = pd.read_csv(work / "run" / "levels.csv").set_index("level")
    assert lv.loc[2, "gpu_power_w"] == pytest.approx(300.0) and lv.loc[2, "gpu_memory_used_mib"] == 70000.0
    assert lv.loc[2, "energy_per_output_token_j"] == pytest.approx(300.0 / lv.loc[2, "output_throughput_tok_s"],
                                                                    rel=0.05)
    # the exporter was stopped with the sweep: nothing answers on its port any more
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(env["GPU_EXPORTER_PORT"])), timeout=2).close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
