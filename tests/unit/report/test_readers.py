"""report.readers: run folders written before levels.csv's names carried their unit are read under today's."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from tokenswarm.report import ReportError, analyse, build_report, compare, summary_text
from tokenswarm.report.readers import LEGACY_LEVELS_COLUMNS, read_json_object, read_levels_csv, upgrade_levels
from tokenswarm.report.synthetic import write_run

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "reports", "examples")


def as_old(levels: pd.DataFrame) -> pd.DataFrame:
    """A levels table as older versions wrote it: the legacy names, shares as fractions."""
    back = {new: (old, factor) for old, (new, factor) in LEGACY_LEVELS_COLUMNS.items()}
    out = levels.copy()
    for new, (_old, factor) in back.items():
        if new in out.columns and factor != 1.0:
            out[new] = out[new] / factor
    return out.rename(columns={new: old for new, (old, _f) in back.items()})


def test_every_legacy_name_maps_to_a_column_level_stats_writes_today(tmp_path):
    run = str(tmp_path / "r")
    write_run(run, levels=(1, 4), requests_per_level=40, cached_share=0.5, slo={"ttft": 200})
    today = set(build_report(run, with_plots=False).columns)
    engine_only = {"server_kv_cache_usage_pct", "coalesced_pct"}  # need server_metrics.csv / output events
    for old, (new, _f) in LEGACY_LEVELS_COLUMNS.items():
        assert old not in today, old
        assert new in today or new in engine_only, new


def test_an_old_levels_csv_reads_as_the_new_one_with_fractions_as_percentages(tmp_path):
    run = str(tmp_path / "r")
    write_run(run, levels=(1, 2, 4), requests_per_level=60, cached_share=0.25, slo={"ttft": 300})
    new = build_report(run, with_plots=False)
    old = as_old(new)
    assert "ttft_p99" in old.columns and old["cache_hit_ratio"].iloc[0] == pytest.approx(0.25, abs=0.01)
    path = str(tmp_path / "old-levels.csv")
    old.to_csv(path, index=False, float_format="%.4f")
    got = read_levels_csv(path)
    assert list(got.columns) == list(new.columns)
    for col in ("ttft_p99_ms", "output_throughput_tok_s", "mean_input_tokens", "cache_hit_pct", "slo_attainment_pct"):
        assert got[col].to_numpy(float) == pytest.approx(new[col].to_numpy(float), rel=1e-3), col
    assert got["cache_hit_pct"].iloc[0] == pytest.approx(25.0, abs=1.0)


def test_a_column_present_under_both_names_keeps_the_new_one():
    df = pd.DataFrame({"level": [1.0], "ttft_p99": [1.0], "ttft_p99_ms": [2.0], "backoff_share": [0.5]})
    got = upgrade_levels(df)
    assert list(got.columns) == ["level", "ttft_p99_ms", "backoff_pct"]
    assert got["ttft_p99_ms"].tolist() == [2.0] and got["backoff_pct"].tolist() == [50.0]
    assert upgrade_levels(got) is got  # nothing left to rename


def test_report_and_compare_read_a_committed_old_folder(tmp_path):
    """The H100 example's levels.csv predates the units; alone in a folder it is all there is to report on."""
    src = os.path.join(EXAMPLES, "gpu-transformers-h100")
    with open(os.path.join(src, "summary.json")) as fh:
        committed = json.load(fh)
    old = str(tmp_path / "h100")
    os.makedirs(old)
    for name in ("levels.csv", "run.json"):
        shutil.copy(os.path.join(src, name), old)
    assert "ttft_p99" in pd.read_csv(os.path.join(old, "levels.csv")).columns
    a = analyse(old)
    assert a.source == "levels.csv" and "ttft_p99_ms" in a.levels.columns and "ttft_p99" not in a.levels.columns
    assert a.knee.level == committed["saturation_level"]
    peak = committed["peak_output_throughput"]
    assert a.peak_output() == {"level": peak["level"], "output_throughput_tok_s": pytest.approx(
        peak["output_throughput"], rel=1e-4)}
    text = summary_text(old)
    assert "Output Throughput (tok/s)" in text and f"{peak['output_throughput']:.1f}" in text
    new = str(tmp_path / "new")
    write_run(new, levels=(1, 2), requests_per_level=30)
    res = compare([old, new], ["h100", "sim"], str(tmp_path / "cmp"))
    h100 = res.pivot().loc[:, "h100"].dropna()
    assert h100.loc[peak["level"]] == pytest.approx(peak["output_throughput"], rel=1e-4)
    assert not np.isnan(res.pivot().loc[1.0, "sim"])


def test_read_json_object_names_the_file_and_the_problem(tmp_path):
    p = tmp_path / "run.json"
    assert read_json_object(str(p), "run.json", missing_ok=True) == {}
    with pytest.raises(ReportError, match=r"run.json: cannot read run.json"):
        read_json_object(str(p), "run.json")
    p.write_text("{not json")
    with pytest.raises(ReportError, match=r"run.json: cannot read run.json"):
        read_json_object(str(p), "run.json")
    p.write_text("[1, 2]")
    with pytest.raises(ReportError, match=r"run.json: run.json is a JSON object, not list"):
        read_json_object(str(p), "run.json")
    p.write_text('{"a": 1}')
    assert read_json_object(str(p), "run.json") == {"a": 1}
