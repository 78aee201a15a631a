"""reports/examples/gpu-sglang-h100: its README's figures are the run's own (levels.csv, peers/, dialects/)."""

import glob
import os
import re

import pandas as pd
import pytest

from tokenswarm.report.engine import read_peer_bench

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
EXAMPLE = os.path.join(ROOT, "reports", "examples", "gpu-sglang-h100")


def table(title: str) -> list[list[str]]:
    """The cells of the first markdown table after the heading ``title`` in the README."""
    with open(os.path.join(EXAMPLE, "README.md")) as fh:
        text = fh.read()
    rows = []
    for line in text[text.index(title):].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # header and alignment rows left out


def num(cell: str) -> float:
    return float("nan") if cell == "-" else float(re.sub(r"[,+%]", "", cell))


def close(cell: str, value: float) -> bool:
    """The printed cell is ``value`` as rounded for print (to the cell's own decimals)."""
    decimals = len(cell.split(".")[1].rstrip("%")) if "." in cell else 0
    return abs(num(cell) - value) <= 0.5 * 10 ** -decimals + 1e-9


def test_the_three_opinions_table_is_the_runs_own():
    lv = pd.read_csv(os.path.join(EXAMPLE, "levels.csv")).set_index("level")
    bench = read_peer_bench(os.path.join(EXAMPLE, "peers")).set_index("concurrency")
    rows = table("## Three opinions, and what the GPU spent")
    assert [int(r[0]) for r in rows] == [64, 256, 1024, 2048]
    for r in rows:
        level = lv.loc[float(r[0])]
        ours = (level.client_ttft_mean_ms, level.engine_ttft_mean_ms, level.outside_engine_ttft_ms)
        for cell, value in zip(r[1:4], ours):
            assert close(cell, value), (r[0], cell, value)
        for cell, col in zip(r[7:], ("output_throughput_tok_s", None, "gpu_power_w", "energy_per_output_token_j",
                                     "gpu_util_pct")):
            if col:
                assert close(cell, level[col]), (r[0], cell, col, level[col])
        if float(r[0]) in bench.index:
            b = bench.loc[float(r[0])]
            for cell, value in zip(r[4:7] + [r[8]], (b.bench_ttft_mean_ms, b.bench_engine_ttft_mean_ms,
                                                     b.bench_outside_engine_ttft_ms, b.bench_output_throughput_tok_s)):
                assert close(cell, value), (r[0], cell, value)
            # the README's claim: tokenswarm's TTFT sits nearer the engine's own than the bench's does
            assert level.outside_engine_ttft_ms < b.bench_outside_engine_ttft_ms
        else:
            assert r[4:7] == ["-", "-", "-"] and r[8] == "-"


def test_the_sweep_is_whole_and_its_energy_agrees_with_its_power():
    lv = pd.read_csv(os.path.join(EXAMPLE, "levels.csv")).set_index("level")
    assert list(lv.index) == [float(2 ** k) for k in range(12)] and (lv.failed == 0).all()
    assert (lv.gpu_count == 1).all() and not lv.timing_uncertain.any() and not lv.load_short.any()
    # two NVML readings of one thing: the energy counter's rise per token, and mean power over throughput
    from_power = lv.gpu_power_w / lv.output_throughput_tok_s
    assert ((lv.energy_per_output_token_j / from_power - 1).abs() < 0.05).all(), (lv.energy_per_output_token_j,
                                                                                 from_power)


@pytest.mark.parametrize("row", table("## The other APIs, at 64 streams"), ids=lambda r: r[0])
def test_the_other_apis_table_is_their_runs_own(row):
    (path,) = glob.glob(os.path.join(EXAMPLE, "dialects", row[0], "levels.csv"))
    lv = pd.read_csv(path).iloc[0]
    for cell, col in zip(row[2:], ("ttft_mean_ms", "engine_ttft_mean_ms", "tpot_mean_ms", "output_throughput_tok_s",
                                   "mean_output_tokens", "completed", "failed")):
        assert close(cell, lv[col]), (row[0], cell, col, lv[col])
