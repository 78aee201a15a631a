"""gpumetrics: a DCGM exporter's page per GPU (the recorded dcgm-exporter text), and the same text written back."""

import os

import pytest

from tokenswarm import enginemetrics, gpumetrics

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "metrics", "dcgm-exporter-h100x2.prom")


def page():
    with open(FIXTURE, encoding="utf-8") as fh:
        return fh.read()


def test_the_recorded_dcgm_page_gives_each_gpus_power_energy_util_and_memory():
    r = gpumetrics.parse(page())
    assert set(r) == {("gpu-node-1", "0"), ("gpu-node-1", "1")}
    g0 = r[("gpu-node-1", "0")]
    assert g0["power_w"] == pytest.approx(441.287)
    assert g0["energy_j"] == pytest.approx(93847123.512)  # the counter is in mJ, written without _total
    assert g0["util_pct"] == 97.0 and g0["memory_used_mib"] == 79385.0
    assert r[("gpu-node-1", "1")]["power_w"] == pytest.approx(312.5)


def test_a_repeated_series_of_one_gpu_is_not_summed():
    text = ('DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-1",GPU_I_ID="1",Hostname="h"} 300\n'
            'DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-1",GPU_I_ID="2",Hostname="h"} 300\n'
            'DCGM_FI_DEV_POWER_USAGE{UUID="GPU-2"} 200\n')
    r = gpumetrics.parse(text)
    assert r == {("h", "0"): {"power_w": 300.0}, ("", "GPU-2"): {"power_w": 200.0}}


def test_what_the_exporter_writes_parses_back_to_the_same_figures():
    r = gpumetrics.parse(page())
    text = gpumetrics.exposition(r, {k: {"UUID": f"GPU-{k[1]}", "modelName": 'A "quoted" name'} for k in r})
    assert "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter" in text
    back = gpumetrics.parse(text)
    assert back.keys() == r.keys()
    for k in r:
        assert back[k] == pytest.approx(r[k])


def test_csv_rows_are_one_per_gpu_in_order_with_blanks_for_missing_fields():
    rows = gpumetrics.csv_rows({("h", "10"): {"power_w": 1.5}, ("h", "2"): {"power_w": 2.0, "energy_j": 3.0}})
    assert rows == [["h", "2", "2", "3", "", ""], ["h", "10", "1.5", "", "", ""]]
    assert len(gpumetrics.CSV_COLUMNS) == 4 + len(rows[0])  # time, level ... scrape_ms, edge_time


def test_the_gpu_feed_reads_the_page_the_engine_feed_ignores():
    assert enginemetrics.GPU_FEED.parse(page()) == gpumetrics.parse(page())
    assert enginemetrics.ENGINE_FEED.parse(page()) == {}  # no engine metric on a DCGM page


def test_a_page_that_is_not_an_exposition_is_a_value_error():
    with pytest.raises(ValueError):
        gpumetrics.parse('DCGM_FI_DEV_POWER_USAGE{gpu="0" 1\n')
