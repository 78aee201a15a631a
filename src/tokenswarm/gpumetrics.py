"""What the GPU spends: DCGM exporter metrics, parsed per GPU, and written back in the same format.

NVIDIA's dcgm-exporter (and ``tokenswarm gpu-exporter``, :mod:`tokenswarm.gpuexporter`, where none runs)
serves one gauge or counter per field and GPU, labelled ``gpu`` (the index), ``UUID``, ``device``,
``modelName`` and ``Hostname``::

    DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-...",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="h"} 312

The fields read (:data:`FIELDS`; units from DCGM's field reference, ``dcgm_fields.h``):

* ``DCGM_FI_DEV_POWER_USAGE``: power draw, W (gauge) -> ``power_w``;
* ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION``: energy since the driver loaded, mJ (counter) -> ``energy_j`` (J);
* ``DCGM_FI_DEV_GPU_UTIL``: share of the last sample period a kernel ran, percent (gauge) -> ``util_pct``;
* ``DCGM_FI_DEV_FB_USED``: framebuffer memory used, MiB (gauge) -> ``memory_used_mib``.

A GPU is keyed by its ``Hostname`` and ``gpu`` labels (its ``UUID`` when it has no ``gpu`` label). Several
series of one field and GPU (MIG instances, Kubernetes pod labels) repeat the device's own reading: the first
is kept, never summed. During a run :class:`tokenswarm.loadgen.enginescrape.EngineMetricsSampler` writes
gpu_metrics.csv (:data:`CSV_COLUMNS`), one row per GPU and scrape; :mod:`tokenswarm.report.gpu` turns it into
per-level figures. Pure: no locust, no gevent.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

#: DCGM field -> (gpu_metrics.csv column, factor from DCGM's unit, HELP text, TYPE)
FIELDS: dict[str, tuple[str, float, str, str]] = {
    "DCGM_FI_DEV_POWER_USAGE": ("power_w", 1.0, "Power draw (in W).", "gauge"),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": ("energy_j", 0.001, "Total energy consumption since boot (in mJ).",
                                             "counter"),
    "DCGM_FI_DEV_GPU_UTIL": ("util_pct", 1.0, "GPU utilization (in %).", "gauge"),
    "DCGM_FI_DEV_FB_USED": ("memory_used_mib", 1.0, "Framebuffer memory used (in MiB).", "gauge"),
}
VALUES: tuple[str, ...] = tuple(col for col, *_ in FIELDS.values())
CSV_COLUMNS: tuple[str, ...] = ("time", "level", "host", "gpu", *VALUES, "scrape_ms", "edge_time")

#: one GPU's readings: (host, gpu) -> {column of :data:`VALUES`: value in its unit}
Readings = dict[tuple[str, str], dict[str, float]]


def parse(text: str) -> Readings:
    """Per GPU, the :data:`FIELDS` of a Prometheus text exposition, converted (energy in J).

    Keys are ``(Hostname, gpu)`` labels (``""`` for a missing Hostname; the ``UUID`` when there is no
    ``gpu`` label); a GPU has only the fields the page had. Raises ValueError for text that is not a
    Prometheus exposition (prometheus-client's parser).
    """
    out: Readings = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # prometheus-client names a counter's sample NAME_total even where the page wrote NAME (DCGM does)
            field = FIELDS.get(sample.name) or FIELDS.get(sample.name.removesuffix("_total"))
            if field is None:
                continue
            key = (sample.labels.get("Hostname", ""), sample.labels.get("gpu") or sample.labels.get("UUID", ""))
            values = out.setdefault(key, {})
            values.setdefault(field[0], float(sample.value) * field[1])  # the first series of a GPU's field
    return out


def exposition(readings: Mapping[tuple[str, str], Mapping[str, float]],
               labels: Mapping[tuple[str, str], Mapping[str, str]] | None = None) -> str:
    """The text exposition dcgm-exporter serves for ``readings`` (:func:`parse`'s shape; energy in J is
    written in mJ): ``# HELP``/``# TYPE`` and one sample per GPU for each field. ``labels`` adds each GPU's
    other labels (``UUID``, ``device``, ``modelName``). :func:`parse` of the result gives ``readings`` back."""
    lines: list[str] = []
    for name, (col, factor, help_text, kind) in FIELDS.items():
        rows = [(key, vals[col]) for key, vals in readings.items() if vals.get(col) is not None]
        if not rows:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for (host, gpu), value in rows:
            lab = {"gpu": gpu, **dict((labels or {}).get((host, gpu), {})), "Hostname": host}
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in lab.items() if v != "" or k == "gpu")
            lines.append(f"{name}{{{text}}} {value / factor:.12g}")
    return "\n".join(lines) + "\n"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def csv_rows(readings: Readings) -> list[list[str]]:
    """gpu_metrics.csv's cells for one scrape, one row per GPU (sorted), without the ``time``, ``level``,
    ``scrape_ms`` and ``edge_time`` the sampler adds: ``[host, gpu, power_w, energy_j, util_pct,
    memory_used_mib]``, ``""`` for a field the GPU did not report."""
    return [[host, gpu, *("" if vals.get(c) is None else f"{vals[c]:.12g}" for c in VALUES)]
            for (host, gpu), vals in sorted(readings.items(), key=lambda kv: (kv[0][0], _gpu_order(kv[0][1])))]


def _gpu_order(gpu: str) -> tuple[int, str]:
    return (int(gpu), "") if gpu.isdigit() else (1 << 30, gpu)
