"""compare(): several run folders side by side, levels outer-joined, one self-contained HTML page."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tokenswarm.report import ReportError, analyse, compare
from tokenswarm.report.compare import default_labels, parse_labels
from tokenswarm.report.synthetic import write_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    a, b = str(root / "vllm-run"), str(root / "sglang-run")
    write_run(a, levels=(1, 2, 4, 8), capacity=4, seed=1, settings={"engine": "vllm"})
    write_run(b, levels=(2, 4, 8, 16), capacity=8, seed=2,
              settings={"engine": "sglang", "run_name": "sglang-fp8"})
    return a, b, root


def test_levels_are_outer_joined_and_values_match_each_run(runs):
    a, b, root = runs
    out = str(root / "out")
    res = compare([a, b], None, out)
    assert res.labels == ["vllm", "sglang-fp8"]  # engine, and run_name where set
    t = res.table
    assert t["level"].tolist() == [1, 1, 2, 2, 4, 4, 8, 8, 16, 16]
    assert t["run"].tolist() == ["vllm", "sglang-fp8"] * 5
    la, lb = analyse(a).levels.set_index("level"), analyse(b).levels.set_index("level")
    for rec in t.to_dict("records"):
        src = la if rec["run"] == "vllm" else lb
        for col in ("output_throughput_tok_s", "ttft_mean_ms", "ttft_p99_ms", "tpot_mean_ms", "tpot_p99_ms"):
            if rec["level"] in src.index:
                assert rec[col] == pytest.approx(src.loc[rec["level"], col])
            else:
                assert np.isnan(rec[col])  # that run has no such level
    pivot = res.pivot()
    assert list(pivot.columns) == ["vllm", "sglang-fp8"] and np.isnan(pivot.loc[16, "vllm"])
    assert np.isnan(pivot.loc[1, "sglang-fp8"]) and pivot.loc[8].notna().all()
    back = pd.read_csv(os.path.join(out, "compare.csv"))
    assert len(back) == 10 and back["output_throughput_tok_s"].isna().sum() == 2
    text = res.text()
    assert text.splitlines()[0].split() == ["Concurrency", "vllm", "tok/s", "sglang-fp8", "tok/s"]


def test_compare_writes_md_html_and_one_line_per_run_plots(runs):
    a, b, root = runs
    out = str(root / "out2")
    res = compare([a, b], ["A", "B"], out)
    names = sorted(os.path.basename(f) for f in res.files)
    assert names == ["compare.csv", "compare.html", "compare.json", "compare.md", "compare_interactivity.png",
                     "compare_latency_vs_throughput.png", "compare_throughput.png", "compare_tpot.png",
                     "compare_ttft.png"]
    for f in res.files:
        assert os.path.getsize(f) > 200, f
    md = Path(os.path.join(out, "compare.md")).read_text(encoding="utf-8")
    assert "| Concurrency | A | B |" in md and "| 16 | - |" in md
    assert ("| Concurrency | Run | Output tok/s | Mean TTFT (ms) | P99 TTFT (ms) | Mean TPOT (ms) | "
            "P99 TPOT (ms) |") in md
    html = Path(os.path.join(out, "compare.html")).read_text(encoding="utf-8")
    srcs = re.findall(r"""\bsrc\s*=\s*["']?([^"'\s>]+)""", html)
    assert len(srcs) == 5 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"""\b(?:href|srcset)\s*=|url\(|@import|<script|<link""", html, re.I)
    # nothing was written into the run folders
    assert not os.path.exists(os.path.join(a, "compare.md")) and not os.path.exists(os.path.join(a, "levels.csv"))


def test_labels_default_and_errors(runs, tmp_path):
    a, b, _ = runs
    twin = str(tmp_path / "vllm-again")
    write_run(twin, levels=(1, 2), requests_per_level=20, settings={"engine": "vllm"})
    assert default_labels([analyse(a), analyse(twin)]) == ["vllm-run", "vllm-again"]  # same engine: folder names
    assert parse_labels("x, y") == ["x", "y"] and parse_labels("") is None
    with pytest.raises(ReportError, match="2 labels for 3 run folders"):
        compare([a, b, twin], ["x", "y"], str(tmp_path / "o"))
    with pytest.raises(ReportError, match="'x' appears twice"):
        compare([a, b], ["x", "x"], str(tmp_path / "o"))
    not_a_run = tmp_path / "photos"
    not_a_run.mkdir()
    (not_a_run / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ReportError, match=r"photos is not a tokenswarm run folder"):
        compare([a, str(not_a_run)], None, str(tmp_path / "o"))
    with pytest.raises(ReportError, match="no such folder"):
        compare([a, str(tmp_path / "missing")], None, str(tmp_path / "o"))
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with pytest.raises(ReportError, match="a-file: is a file, not a folder"):  # was FileExistsError's traceback
        compare([a, b], None, str(a_file))
    for margin in (-3.0, float("nan")):  # a negative margin left every verdict undecided, with exit 0
        with pytest.raises(ReportError, match="--margin .*: must be 0 or more"):
            compare([a, b], None, str(tmp_path / "o"), margin_pct=margin)


def test_a_fresh_levels_csv_is_reused_and_a_stale_one_is_not(tmp_path):
    run = str(tmp_path / "r")
    write_run(run, levels=(1, 2), requests_per_level=30)
    fresh = analyse(run).levels
    fake = fresh.assign(output_throughput_tok_s=12345.0)
    fake.to_csv(os.path.join(run, "levels.csv"), index=False)
    assert analyse(run, prefer_levels_csv=True).levels["output_throughput_tok_s"].tolist() == [12345.0, 12345.0]
    past = os.path.getmtime(os.path.join(run, "requests.csv")) - 100
    os.utime(os.path.join(run, "levels.csv"), (past, past))
    again = analyse(run, prefer_levels_csv=True).levels["output_throughput_tok_s"]
    assert again.tolist() == pytest.approx(fresh["output_throughput_tok_s"].tolist())


SAME = {"engine": "vllm", "dialect": "openai-chat", "endpoint": "/v1/chat/completions", "max_tokens": 128,
        "input_len": 128, "dataset": {"name": "random"}, "workload": {"kind": "single"}}


def test_compare_warns_where_runs_measured_different_work_and_notes_the_seeds(tmp_path):
    a, b, c = (str(tmp_path / n) for n in ("a", "b", "c"))
    write_run(a, levels=(1, 2), seed=1, itl=(40, 40), input_len=(145, 146), cached_share=0.0,
              settings={**SAME, "seed": 11, "seed_drawn": True})
    write_run(b, levels=(1, 2), seed=2, itl=(40, 40), input_len=(145, 146), cached_share=0.0,
              settings={**SAME, "engine": "sglang", "seed": 22, "seed_drawn": True})
    same = compare([a, b], None, str(tmp_path / "ab"))
    assert same.warnings == []  # the engines differ, not the work
    assert len(same.notes) == 1 and "a: 11, b: 22" not in same.notes[0] and "vllm: 11, sglang: 22" in same.notes[0]
    md = Path(tmp_path / "ab" / "compare.md").read_text()
    assert "## Comparable?" in md and "11 (drawn)" in md and "The runs agree in dialect" in md
    # the same seed again, on an engine that kept the prompts: cached; and other settings and lengths
    write_run(c, levels=(1, 2), seed=3, itl=(40, 40), input_len=(128, 129), cached_share=0.98,
              settings={**SAME, "engine": "vllm-again", "dialect": "openai-completions",
                        "endpoint": "/v1/completions", "max_tokens": 256, "seed": 11, "seed_drawn": False,
                        "dataset": {"name": "sharegpt", "path": "/data/sg.json"}})
    res = compare([a, c], ["first", "repeat"], str(tmp_path / "ac"))
    text = "\n".join(res.warnings)
    for what, values in (("API dialect", "first: openai-chat, repeat: openai-completions"),
                         ("endpoint", "first: /v1/chat/completions, repeat: /v1/completions"),
                         ("max_tokens", "first: 128, repeat: 256"),
                         ("dataset", "first: random, repeat: sharegpt (sg.json)")):
        assert f"differ in {what} ({values})" in text, what
    assert "Measured mean input lengths differ by more than 5% (first: 145.0, repeat: 128.0 tokens)" in text
    assert "Prefix-cache hits differ (first: 0%, repeat: 98% of prompt tokens at most; served from the prefix " \
           "cache: repeat)" in text
    assert res.notes == []  # the same seed: nothing to note (the cache warning says what it did)
    assert "**Warning:** The runs differ in API dialect" in Path(tmp_path / "ac" / "compare.md").read_text()


def test_the_runs_table_names_each_engine_with_its_version(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    write_run(a, levels=(1, 2), seed=1, settings={"engine": "vllm"})
    write_run(b, levels=(1, 2), seed=2, settings={"engine": "sglang"})
    with open(os.path.join(a, "run.json"), encoding="utf-8") as fh:
        meta = json.load(fh)
    meta["provenance"] = {"engine": {"version": "0.8.5", "version_source": "GET /version"}}
    with open(os.path.join(a, "run.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh)
    res = compare([a, b], ["A", "B"], str(tmp_path / "out"))
    md = Path(res.out_dir, "compare.md").read_text(encoding="utf-8")
    assert f"| A | {a} | vllm 0.8.5 |" in md and f"| B | {b} | sglang |" in md


def write_gpu_metrics(run, watts):
    """gpu_metrics.csv for a synthetic run: one GPU drawing ``watts``, scraped every second of its timeline."""
    with open(os.path.join(run, "run.json"), encoding="utf-8") as fh:
        timeline = json.load(fh)["timeline"]
    t0, t1 = timeline[0]["start"], timeline[-1]["end"]
    times = np.arange(t0, t1 + 1.0, 1.0)
    pd.DataFrame({"time": times, "level": "", "host": "h", "gpu": "0", "power_w": watts,
                  "energy_j": watts * (times - t0), "util_pct": 90.0, "memory_used_mib": 70000.0,
                  "scrape_ms": 1.0, "edge_time": ""}).to_csv(os.path.join(run, "gpu_metrics.csv"), index=False)


def test_what_the_gpu_spent_is_compared_when_a_run_has_it(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    write_run(a, levels=(1, 2), seed=1, settings={"engine": "vllm"})
    write_run(b, levels=(1, 2), seed=2, settings={"engine": "sglang"})
    write_gpu_metrics(a, 400.0)
    res = compare([a, b], None, str(tmp_path / "out"))
    t = res.table.set_index(["level", "run"])
    lvl_a = analyse(a).levels.set_index("level")
    for level in (1.0, 2.0):
        r = t.loc[(level, "vllm")]
        assert r["gpu_power_w"] == pytest.approx(400.0)
        assert r["energy_per_output_token_j"] == pytest.approx(400.0 / lvl_a.loc[level, "output_throughput_tok_s"])
        assert np.isnan(t.loc[(level, "sglang"), "gpu_power_w"])  # that run had no DCGM exporter
    assert not any(v["figure"].startswith("gpu_") for v in res.verdicts)
    md = Path(tmp_path / "out" / "compare.md").read_text()
    assert "## What the GPU spent" in md and "J / output token" in md
    assert "compare_energy.png" in {os.path.basename(f) for f in res.files}
    assert "energy_per_output_token_j" in pd.read_csv(tmp_path / "out" / "compare.csv").columns
    plain = compare([str(tmp_path / "b")], None, str(tmp_path / "out2"))
    assert "gpu_power_w" not in plain.table.columns
    assert "What the GPU spent" not in Path(tmp_path / "out2" / "compare.md").read_text()
    assert "compare_energy.png" not in {os.path.basename(f) for f in plain.files}


def test_a_concurrency_run_beside_a_rate_run_is_warned_about(tmp_path):
    # level 4 is 4 users in one and 4 req/s in the other: compare once said "the runs agree"
    users, rate = str(tmp_path / "users"), str(tmp_path / "rate")
    write_run(users, levels=(2, 4), requests_per_level=30)
    write_run(rate, levels=(2, 4), mode="rate")
    result = compare([users, rate], ["users", "rate"], str(tmp_path / "o"))
    assert result.warnings and result.warnings[0].startswith(
        "The runs step through different axes (users: concurrency, rate: rate)"), result.warnings
    assert "The runs agree" not in (tmp_path / "o" / "compare.md").read_text()
    same = compare([users, users], ["a", "b"], str(tmp_path / "o2"))
    assert not any("different axes" in w for w in same.warnings)
