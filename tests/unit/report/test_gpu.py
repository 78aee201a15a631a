"""report.gpu: what the GPU spent per level window, from gpu_metrics.csv rows."""

import math

import numpy as np
import pandas as pd
import pytest

from tokenswarm import gpumetrics
from tokenswarm.report import gpu
from tokenswarm.report.errors import ReportError
from tokenswarm.report.levels import Window

NAN = float("nan")


def frame(rows):
    """gpu_metrics.csv rows: (time, gpu, power_w, energy_j, util_pct, memory_used_mib)."""
    cols = {c: [NAN] * len(rows) for c in gpumetrics.CSV_COLUMNS}
    for i, c in enumerate(("time", "gpu", "power_w", "energy_j", "util_pct", "memory_used_mib")):
        cols[c] = [r[i] for r in rows]
    cols["host"] = ["h"] * len(rows)
    return pd.DataFrame(cols)


def two_gpus(t0, t1, step, p0, p1, with_energy=True):
    rows = []
    for t in np.arange(t0, t1 + 1e-9, step):
        e0, e1 = (p0 * (t - t0) + 1000.0, p1 * (t - t0) + 5000.0) if with_energy else (NAN, NAN)
        rows += [(float(t), "0", p0, e0, 90.0, 70000.0), (float(t), "1", p1, e1, 70.0, 60000.0)]
    return frame(rows)


def test_figures_over_a_window_sum_power_and_memory_and_average_utilisation():
    df = two_gpus(100.0, 120.0, 2.0, 400.0, 300.0)
    levels = pd.DataFrame({"level": [8.0], "output_throughput_tok_s": [1400.0]})
    out = gpu.gpu_levels(levels, df, [Window(8.0, 104.0, 116.0, 100.0)]).iloc[0]
    assert out["gpu_count"] == 2
    assert out["gpu_power_w"] == pytest.approx(700.0)
    assert out["gpu_util_pct"] == pytest.approx(80.0)
    assert out["gpu_memory_used_mib"] == pytest.approx(130000.0)
    assert out["energy_per_output_token_j"] == pytest.approx(700.0 / 1400.0)  # J/s over tok/s
    assert out["output_throughput_per_gpu_tok_s"] == pytest.approx(700.0)


def test_energy_comes_from_the_counter_not_the_power_samples():
    df = two_gpus(0.0, 20.0, 1.0, 400.0, 400.0)
    df["power_w"] = 100.0  # the gauge misses the peaks the counter saw
    levels = pd.DataFrame({"level": [1.0], "output_throughput_tok_s": [100.0]})
    out = gpu.gpu_levels(levels, df, [Window(1.0, 5.0, 15.0, 0.0)]).iloc[0]
    assert out["gpu_power_w"] == pytest.approx(200.0)
    assert out["energy_per_output_token_j"] == pytest.approx(800.0 / 100.0)


def test_without_a_counter_power_is_integrated_over_the_window():
    rows = [(t, "0", 100.0 if t < 10 else 300.0, NAN, NAN, NAN) for t in np.arange(0.0, 20.5, 1.0)]
    levels = pd.DataFrame({"level": [1.0], "output_throughput_tok_s": [50.0]})
    out = gpu.gpu_levels(levels, frame(rows), [Window(1.0, 0.0, 20.0, 0.0)]).iloc[0]
    # trapezoids: 100 W for 9 s, a 1 s ramp (200 W), 300 W for 10 s, over 20 s
    assert out["energy_per_output_token_j"] == pytest.approx((900 + 200 + 3000) / 20.0 / 50.0)
    assert math.isnan(out["gpu_util_pct"])


def test_a_counter_that_went_back_falls_back_to_power():
    rows = [(0.0, "0", 200.0, 5000.0, NAN, NAN), (5.0, "0", 200.0, 10.0, NAN, NAN),
            (10.0, "0", 200.0, 1010.0, NAN, NAN)]
    levels = pd.DataFrame({"level": [1.0], "output_throughput_tok_s": [20.0]})
    out = gpu.gpu_levels(levels, frame(rows), [Window(1.0, 0.0, 10.0, 0.0)]).iloc[0]
    assert out["energy_per_output_token_j"] == pytest.approx(200.0 / 20.0)


def test_a_level_without_scrapes_gets_nan_and_no_gpu_file_changes_nothing():
    df = two_gpus(0.0, 10.0, 1.0, 400.0, 300.0)
    levels = pd.DataFrame({"level": [1.0, 2.0], "output_throughput_tok_s": [100.0, 0.0]})
    out = gpu.gpu_levels(levels, df, [Window(1.0, 0.0, 10.0, 0.0), Window(2.0, 50.0, 60.0, 50.0)])
    assert out["gpu_count"].tolist()[0] == 2 and math.isnan(out["gpu_power_w"].iloc[1])
    assert math.isnan(out["energy_per_output_token_j"].iloc[1])
    assert gpu.gpu_levels(levels, None, []) is levels


def test_read_gpu_metrics_names_a_bad_cell(tmp_path):
    p = tmp_path / "gpu_metrics.csv"
    p.write_text(",".join(gpumetrics.CSV_COLUMNS) + "\n1.0,1,h,0,oops,,,,1.0,\n")
    with pytest.raises(ReportError, match=r"gpu_metrics.csv: column 'power_w', data row 1: 'oops'"):
        gpu.read_gpu_metrics(str(p))
    assert gpu.read_gpu_metrics(str(tmp_path / "absent.csv")) is None
    p.write_text(",".join(gpumetrics.CSV_COLUMNS) + "\n1.0,1,h,0,250.5,12.5,,,1.0,\n")
    df = gpu.read_gpu_metrics(str(p))
    assert df["gpu"].tolist() == ["0"] and df["power_w"].tolist() == [250.5]
