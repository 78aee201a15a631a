"""gpu-exporter: NVML's readings (a fake pynvml) served under DCGM's names parse back to the same figures."""

import sys
import threading
import types
import urllib.error
import urllib.request

import pytest

from tokenswarm import cli, gpuexporter, gpumetrics


class NVMLError(Exception):
    pass


def fake_nvml(energy=True):
    """A pynvml with two GPUs (the second without an energy counter when ``energy`` is False)."""
    m = types.ModuleType("pynvml")
    m.NVMLError = NVMLError
    m.calls = []
    m.nvmlInit = lambda: m.calls.append("init")
    m.nvmlShutdown = lambda: m.calls.append("shutdown")
    m.nvmlDeviceGetCount = lambda: 2
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetPowerUsage = lambda h: (441287, 125004)[h]  # mW

    def energy_mj(h):
        if h == 1 and not energy:
            raise NVMLError("Not Supported")
        return (93847123512, 90112038745)[h]

    m.nvmlDeviceGetTotalEnergyConsumption = energy_mj
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=(97, 0)[h], memory=40)
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=(79385, 512)[h] * 1024 * 1024, total=81559 << 20)
    m.nvmlDeviceGetUUID = lambda h: f"GPU-{h}a2d9e0b-51c4-3f8e-b6d2-7e4a1c9f0b35"
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"  # older bindings answer bytes
    return m


def serve(nvml):
    srv = gpuexporter.make_server("127.0.0.1", 0, nvml)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def test_the_served_text_parses_back_into_nvmls_figures():
    srv, base = serve(fake_nvml())
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            text = r.read().decode()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(base + "/other", timeout=5)
    finally:
        srv.shutdown()
        srv.server_close()
    assert 'modelName="NVIDIA H100 80GB HBM3"' in text and 'device="nvidia1"' in text
    r = gpumetrics.parse(text)
    assert len(r) == 2
    (g0, v0), (g1, v1) = sorted(r.items(), key=lambda kv: kv[0][1])
    assert g0[1] == "0" and g0[0]  # keyed by the host's name and the index
    assert v0 == pytest.approx({"power_w": 441.287, "energy_j": 93847123.512, "util_pct": 97.0,
                                "memory_used_mib": 79385.0})
    assert v1 == pytest.approx({"power_w": 125.004, "energy_j": 90112038.745, "util_pct": 0.0,
                                "memory_used_mib": 512.0})


def test_a_field_the_gpu_does_not_support_is_left_out():
    readings, labels = gpuexporter.read(fake_nvml(energy=False), "h")
    assert "energy_j" in readings[("h", "0")] and "energy_j" not in readings[("h", "1")]
    assert labels[("h", "1")]["UUID"].startswith("GPU-1")


def test_no_package_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    assert cli.main(["gpu-exporter", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "tokenswarm: error: gpu-exporter needs NVML's Python binding: pip install nvidia-ml-py"


def test_no_driver_is_one_line_and_exit_2(monkeypatch, capsys):
    nvml = fake_nvml()

    def no_driver():
        raise NVMLError("Driver Not Loaded")

    nvml.nvmlInit = no_driver
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert cli.main(["gpu-exporter", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "NVML did not start (Driver Not Loaded)" in err
