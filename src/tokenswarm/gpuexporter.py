"""``tokenswarm gpu-exporter``: DCGM's metric names from NVML, where no dcgm-exporter runs.

A small HTTP server for the engine's host: ``GET /metrics`` reads every GPU through NVML (the
``nvidia-ml-py`` package, module ``pynvml``, imported only here and only when the command runs) and answers
the text dcgm-exporter would for the fields tokenswarm reads (:data:`tokenswarm.gpumetrics.FIELDS`), with
its labels (``gpu``, ``UUID``, ``device``, ``modelName``, ``Hostname``). ``--gpu-metrics
http://HOST:9400/metrics`` then samples it like a DCGM exporter.

NVML calls and units (NVML API reference, "Device Queries"): ``nvmlDeviceGetPowerUsage`` (mW, written in W),
``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded, Volta and later; the field is left out
where the GPU does not support it), ``nvmlDeviceGetUtilizationRates().gpu`` (percent of the last sample period
a kernel ran), ``nvmlDeviceGetMemoryInfo().used`` (bytes, written in MiB). Errors: :class:`NvmlMissing`, one
line, when the package or the driver's library is missing.
"""

from __future__ import annotations

import importlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tokenswarm import gpumetrics
from tokenswarm.errors import SettingsError

DEFAULT_PORT = 9400  # dcgm-exporter's
MIB = 1024 * 1024


class NvmlMissing(SettingsError):
    """NVML cannot be used here: the nvidia-ml-py package is not installed, or NVML did not start (no NVIDIA
    driver)."""


def load_nvml() -> Any:
    """The ``pynvml`` module, initialised. Raises :class:`NvmlMissing` (one line saying what to do)."""
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        raise NvmlMissing("gpu-exporter needs NVML's Python binding: pip install nvidia-ml-py") from None
    try:
        nvml.nvmlInit()
    except Exception as e:  # pynvml.NVMLError and its many subclasses: no driver, no library
        raise NvmlMissing(f"gpu-exporter: NVML did not start ({e}): is the NVIDIA driver installed?") from None
    return nvml


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read(nvml: Any, hostname: str = "") -> tuple[gpumetrics.Readings, dict[tuple[str, str], dict[str, str]]]:
    """Every GPU's readings (:func:`tokenswarm.gpumetrics.parse`'s shape: W, J, percent, MiB) and labels,
    from an initialised ``pynvml``. A field NVML refuses for a GPU (NVMLError: not supported) is left out."""
    hostname = hostname or socket.gethostname()
    readings: gpumetrics.Readings = {}
    labels: dict[tuple[str, str], dict[str, str]] = {}
    for i in range(nvml.nvmlDeviceGetCount()):
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        key = (hostname, str(i))
        calls = {
            "power_w": lambda h=h: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0,
            "energy_j": lambda h=h: nvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0,
            "util_pct": lambda h=h: float(nvml.nvmlDeviceGetUtilizationRates(h).gpu),
            "memory_used_mib": lambda h=h: nvml.nvmlDeviceGetMemoryInfo(h).used / MIB,
        }
        values: dict[str, float] = {}
        for col, call in calls.items():
            try:
                values[col] = float(call())
            except nvml.NVMLError:
                continue
        readings[key] = values
        lab = {"device": f"nvidia{i}"}
        for name, call in (("UUID", nvml.nvmlDeviceGetUUID), ("modelName", nvml.nvmlDeviceGetName)):
            try:
                lab[name] = _text(call(h))
            except nvml.NVMLError:
                continue
        labels[key] = lab
    return readings, labels


def make_server(host: str, port: int, nvml: Any) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) answering ``GET /metrics`` with :func:`read`'s figures as
    :func:`tokenswarm.gpumetrics.exposition` text; 404 elsewhere. NVML is read under a lock, once per request."""
    lock = threading.Lock()
    hostname = socket.gethostname()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "only /metrics is served")
                return
            with lock:
                readings, labels = read(nvml, hostname)
            body = gpumetrics.exposition(readings, labels).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
            pass

    return ThreadingHTTPServer((host, port), Handler)


def serve(host: str, port: int) -> None:
    """Serve until interrupted. Raises :class:`NvmlMissing`, or OSError when the address is taken."""
    nvml = load_nvml()
    srv = make_server(host, port, nvml)
    print(f"tokenswarm gpu-exporter: http://{host}:{srv.server_address[1]}/metrics "
          f"({nvml.nvmlDeviceGetCount()} GPUs)", flush=True)
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
        nvml.nvmlShutdown()
