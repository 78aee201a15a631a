"""build(): levels.csv, summary.json, report.md, a self-contained report.html and the plots, on synthetic runs."""

import base64
import json
import os
import re
import struct
from pathlib import Path

import pandas as pd
import pytest

from tokenswarm.report import ReportError, analyse, build_report, summary_text
from tokenswarm.report.plots import FILES, INTERACTIVITY, use_log2
from tokenswarm.report.synthetic import write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


def resource_refs(html: str) -> list[str]:
    """Every place a browser would fetch something: src/href/srcset/poster/action, url(), @import, tags."""
    refs = re.findall(r"""\b(?:src|href|srcset|poster|action|data)\s*=\s*["']?([^"'\s>]+)""", html, re.I)
    refs += re.findall(r"url\(\s*['\"]?([^'\")]+)", html, re.I)
    refs += re.findall(r"@import\s+['\"]?([^'\";]+)", html, re.I)
    return refs


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A synthetic sweep, built once for the tests that only read its outputs."""
    run = str(tmp_path_factory.mktemp("report") / "sweep")
    write_run(run, levels=(1, 2, 4, 8, 16, 32), capacity=8, warmup_s=0.5,
              slo={"ttft": 300, "tpot": 20}, fail_share=0.01, seed=0,
              settings={"base_url": "http://gpu-box:8000", "endpoint": "/v1/chat/completions", "engine": "vllm",
                        "level_duration_s": 10})
    build_report(run)
    return run


def test_build_writes_every_file_with_knee_slo_and_flags(sweep):
    levels = analyse(sweep).levels  # what build() wrote, recomputed without writing
    for name in ("levels.csv", "summary.json", "report.md", "report.html",
                 *(f"plots/{f}" for f in (*FILES, INTERACTIVITY))):
        assert os.path.getsize(os.path.join(sweep, name)) > 0, name
    back = pd.read_csv(os.path.join(sweep, "levels.csv"))
    assert back["level"].tolist() == [1, 2, 4, 8, 16, 32]
    for col in ("goodput_req_s", "slo_attainment_pct", "meets_slo", "target", "under_target", "send_rate_req_s"):
        assert col in back.columns, col
    with open(os.path.join(sweep, "summary.json")) as fh:
        summary = json.load(fh)
    assert summary["saturation_level"] == 8.0  # the synthetic engine has 8 slots
    assert summary["slo"] == {"ttft": 300, "tpot": 20}
    # levels meeting the SLOs: no failure and 99 % within limits; the report names the highest
    meets = levels[levels["meets_slo"].astype(bool)]["level"]
    assert summary["max_level_meeting_slo"] == (float(meets.max()) if len(meets) else None)
    assert summary["failures_by_kind"] and sum(summary["failures_by_kind"].values()) == levels["failed"].sum()


def test_report_md_puts_the_published_table_first_then_the_verdicts(sweep):
    md = Path(os.path.join(sweep, "report.md")).read_text(encoding="utf-8")
    table = md.index("| Concurrency | Mean TTFT (ms) | Input Throughput (tok/s) | Output Throughput (tok/s) | "
                     "Mean TPOT (ms) | Mean Input Len | Mean Output Len | P99 TTFT (ms) | P99 TPOT (ms)")
    assert table < md.index("**Saturation:** concurrency 8") < md.index("## Per-level detail")
    assert "**SLOs:** TTFT ≤ 300 ms, TPOT ≤ 20 ms" in md
    assert md.index("## Per-level detail") < md.index("## Failures by kind") < md.index("## Plots")
    assert "TTFT p90" in md and "ITL p99" in md and "Goodput (req/s)" in md
    assert "![Output throughput](plots/throughput.png)" in md
    assert "did not complete" not in md


def test_report_html_is_one_self_contained_file(sweep):
    html = Path(os.path.join(sweep, "report.html")).read_text(encoding="utf-8")
    refs = resource_refs(html)
    imgs = [r for r in refs if r.startswith("data:image/png;base64,")]
    assert len(imgs) == len(FILES) + 1 and refs == imgs  # nothing but embedded PNGs (the four, interactivity)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert "http://gpu-box:8000" in html  # the target URL is text, not a resource
    assert "<th>Output Throughput (tok/s)</th>" in html and "<th>Concurrency</th>" in html
    for uri in imgs:
        w, h = png_size(base64.b64decode(uri.split(",", 1)[1]))
        assert w >= 600 and h >= 300
    # the checker is not vacuous: an external image or stylesheet is found
    assert resource_refs('<img src="https://cdn.example/x.png"><style>@import "http://x/y.css"</style>') == [
        "https://cdn.example/x.png", "http://x/y.css"]


def test_plots_are_real_pngs_and_the_axis_rule(sweep):
    for name in (*FILES, INTERACTIVITY):
        with open(os.path.join(sweep, "plots", name), "rb") as fh:
            data = fh.read()
        w, h = png_size(data)
        assert w >= 600 and h >= 300 and len(data) > 10_000, name
    assert use_log2([1, 2, 4, 8]) and use_log2([0.5, 1, 2]) and use_log2([1, 10, 100])
    assert not use_log2([10, 20, 30, 40]) and not use_log2([5])


def test_rate_mode_titles_and_late_flags(tmp_path):
    run = str(tmp_path / "rate")
    write_run(run, levels=(1, 2, 4, 8), mode="rate", capacity=4, requests_per_level=40, send_lag_ms=30, seed=2)
    levels = build_report(run, with_plots=False)
    assert "late" in levels.columns and "under_target" not in levels.columns
    md = Path(os.path.join(run, "report.md")).read_text(encoding="utf-8")
    assert "| Rate (req/s) | Mean TTFT (ms) |" in md
    late = levels[levels["late"]]["level"].tolist()
    assert late and "**Late sends**" in md and "Add workers" in md
    assert summary_text(run).splitlines()[0].startswith("Rate (req/s)")
    assert json.loads(Path(os.path.join(run, "summary.json")).read_text())["late_levels"] == late


def test_under_target_levels_are_flagged_with_advice(tmp_path):
    run = str(tmp_path / "limited")
    write_run(run, levels=(2, 4, 8, 16), capacity=64, client_limit=6, seed=1)
    levels = build_report(run, with_plots=False)
    assert levels.set_index("level")["under_target"].to_dict() == {2: False, 4: False, 8: True, 16: True}
    md = Path(os.path.join(run, "report.md")).read_text(encoding="utf-8")
    assert "**Under target** (8: " in md and "the client, not the server, set the pace" in md
    assert "Flagged under target: 8, 16" in summary_text(run)


def test_an_incomplete_run_says_so_and_names_the_levels_it_missed(tmp_path):
    run = str(tmp_path / "cut")
    write_run(run, levels=(1, 2), requests_per_level=50, complete=False, settings={"levels": [1, 2, 4, 8]})
    build_report(run, with_plots=False)
    md = Path(os.path.join(run, "report.md")).read_text(encoding="utf-8")
    assert "**This run did not complete**" in md and "not reached: 4, 8" in md
    assert json.loads(Path(os.path.join(run, "summary.json")).read_text())["complete"] is False


def test_bad_settings_name_the_field(tmp_path):
    run = str(tmp_path / "bad")
    write_run(run, levels=(1, 2), requests_per_level=20, settings={"knee_pct": "ten"})
    with pytest.raises(ReportError, match=r"settings.knee_pct = 'ten'"):
        analyse(run)
    write_run(run, levels=(1, 2), requests_per_level=20, slo={"ttft": 0})
    with pytest.raises(ReportError, match=r"settings.slo.ttft = 0"):
        build_report(run, with_plots=False)
    with pytest.raises(ReportError, match="no run folder"):
        build_report(str(tmp_path / "nowhere"))


def test_lost_workers_are_named_with_their_level(tmp_path):
    run = str(tmp_path / "lost")
    meta = write_run(run, levels=(1, 2, 4), requests_per_level=30)
    lost_at = meta["timeline"][1]["start"] + 0.1
    meta["lost_workers"] = [{"id": "w2", "lost_at": lost_at, "records": 17, "lost_in_flight": 2}]
    Path(os.path.join(run, "run.json")).write_text(json.dumps(meta))
    build_report(run, with_plots=False)
    md = Path(os.path.join(run, "report.md")).read_text(encoding="utf-8")
    assert "**1 worker lost:** `w2` during concurrency 2 (17 records kept, 2 requests lost with it)" in md
    assert json.loads(Path(os.path.join(run, "summary.json")).read_text())["lost_workers"][0]["id"] == "w2"


def test_failures_show_as_a_percentage_with_their_kinds_in_table_report_and_plot(tmp_path):
    from tokenswarm.report.plots import throughput_figure

    run = str(tmp_path / "failing")
    write_run(run, levels=(1, 2, 4, 8), fail_share=0.19, seed=3)
    levels = build_report(run)
    df = pd.read_csv(os.path.join(run, "requests.csv"))
    for r in levels.to_dict("records"):
        mine = df[df.level == r["level"]]
        failed = (~mine.status.isin(["ok", "cancelled"])).sum()
        assert r["failed_pct"] == pytest.approx(100 * failed / (failed + (mine.status == "ok").sum()))
    text = summary_text(run)
    assert "Failed %" in text.splitlines()[0]
    md = Path(run, "report.md").read_text()
    worst = levels.loc[levels["failed_pct"].idxmax()]
    kinds = df[(df.level == worst["level"]) & ~df.status.isin(["ok", "cancelled"])].status.value_counts()
    line = next(x for x in md.splitlines() if x.startswith("- **Failures** at"))
    top = kinds.index[0]
    assert f"{worst['level']:g}: {worst['failed_pct']:.1f} % ({int(worst['failed'])}: {top} {kinds[top]}" in line
    fig = throughput_figure(levels)
    assert len(fig.axes) == 2 and "Failed" in fig.axes[1].get_ylabel()
    heights = [p.get_height() for p in fig.axes[1].patches]
    assert heights == pytest.approx(levels["failed_pct"].tolist())
    clean = str(tmp_path / "clean")
    write_run(clean, levels=(1, 2), seed=3)
    assert len(throughput_figure(build_report(clean)).axes) == 1  # no failures, no second axis


def test_a_short_level_is_marked_in_every_table_and_flagged(tmp_path):
    run = str(tmp_path / "short")
    # level 4 sends 6 requests: under 10 completed, under 3 lifetimes
    write_run(run, levels=(1, 4, 8), requests_per_level=[40, 6, 160], seed=1)
    levels = build_report(run)
    assert levels.set_index("level")["short_window"].to_dict() == {1: False, 4: True, 8: False}
    text = summary_text(run)
    rows = {line.split()[0]: line for line in text.splitlines()[2:5]}
    assert set(rows) == {"1", "4*", "8"}
    assert any(line.startswith("* not steady") for line in text.splitlines())
    md = Path(run, "report.md").read_text()
    assert "| 4* |" in md and "**Short window** (4:" in md
    with open(os.path.join(run, "summary.json")) as fh:
        assert json.load(fh)["short_window_levels"] == [4.0]


def test_failures_table_keeps_the_servers_words(tmp_path):
    from tokenswarm.report.analysis import failure_messages

    path = tmp_path / "requests.csv"
    rows = ["status,error"] + ["http_error,HTTP 429: Rate limit reached"] * 3 + ["http_error,HTTP 502: Bad Gateway"]
    rows += ["server_error_event,HTTP 200 with an error body: litellm.ContextWindowExceededError"] + ["ok,"] * 5
    path.write_text("\n".join(rows) + "\n")
    got = failure_messages(str(path))
    assert got == {"http_error": [("HTTP 429: Rate limit reached", 3), ("HTTP 502: Bad Gateway", 1)],
                   "server_error_event": [("HTTP 200 with an error body: litellm.ContextWindowExceededError", 1)]}


def test_pushback_columns_per_level():
    import numpy as np
    import pandas as pd

    from tokenswarm.report.levels import Window, level_stats

    # level 2 for 10 s: of 4 requests, two 429s, after which the users waited 2.5 s in all
    df = pd.DataFrame({
        "start_time": [0.0, 1.0, 2.0, 3.0], "level": [2.0] * 4, "status": ["ok", "http_error", "http_error", "ok"],
        "http_status": [200.0, 429.0, 503.0, 200.0], "ttft_ms": [10.0, np.nan, np.nan, 10.0],
        "tpot_ms": [1.0, np.nan, np.nan, 1.0], "e2e_ms": [20.0, np.nan, np.nan, 20.0],
        "close_ms": [20.0, 1.0, 1.0, 20.0], "input_tokens": [5.0, np.nan, np.nan, 5.0],
        "output_tokens": [11.0, np.nan, np.nan, 11.0], "cached_tokens": [np.nan] * 4,
        "scheduled_time": [np.nan] * 4, "backoff_ms": [np.nan, 1000.0, 1500.0, np.nan], "itl_ms": [""] * 4,
    })
    row = level_stats(df, [Window(2.0, 0.0, 10.0, 0.0)]).iloc[0]
    assert row.rate_limited_pct == 50.0
    assert row.backoff_pct == 100 * 2.5 / (2 * 10.0)


def test_the_report_names_sglangs_benchmark_and_shows_what_the_gpu_spent(tmp_path):
    run = str(tmp_path / "r")
    write_run(run, levels=(1, 2), requests_per_level=30)
    with open(os.path.join(run, "run.json"), encoding="utf-8") as fh:
        timeline = json.load(fh)["timeline"]
    os.makedirs(os.path.join(run, "peers"))
    result = {"max_concurrency": 2, "completed": 6, "duration": 2.0, "output_throughput": 321.0,
              "mean_ttft_ms": 42.0, "mean_e2e_latency_ms": 900.0}
    with open(os.path.join(run, "peers", "sglang-bench-c2.jsonl"), "w", encoding="utf-8") as fh:
        fh.write(json.dumps(result) + "\n")
    t0, t1 = timeline[0]["start"], timeline[-1]["end"]
    rows = [f"{t:.3f},,h,0,300,{300 * (t - t0):.3f},80,1000,1.0," for t in
            [t0 + i * 0.5 for i in range(int((t1 - t0) / 0.5) + 1)]]
    with open(os.path.join(run, "gpu_metrics.csv"), "w", encoding="utf-8") as fh:
        fh.write("time,level,host,gpu,power_w,energy_j,util_pct,memory_used_mib,scrape_ms,edge_time\n")
        fh.write("\n".join(rows) + "\n")
    levels = build_report(run, with_plots=False)
    assert levels["gpu_power_w"].tolist() == pytest.approx([300.0, 300.0])
    with open(os.path.join(run, "report.md"), encoding="utf-8") as fh:
        md = fh.read()
    assert "SGLang bench_serving TTFT mean (ms)" in md and "| 42.0 |" in md  # its TTFT beside ours
    assert "GPU (DCGM, --gpu-metrics)" in md and "J / output token" in md
    back = pd.read_csv(os.path.join(run, "levels.csv"))
    assert back["energy_per_output_token_j"].tolist() == pytest.approx(
        (300.0 / back["output_throughput_tok_s"]).tolist(), rel=1e-3)


def test_contradicted_usage_lingering_streams_and_clumps_are_flagged_in_summary_and_report(tmp_path):
    run = str(tmp_path / "faults")
    write_run(run, levels=(1, 2, 4), capacity=8, seed=1)
    path = os.path.join(run, "requests.csv")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    ok = df["status"] == "ok"
    level = df["level"].astype(float)
    lv2, lv4 = ok & (level == 2), ok & (level == 4)
    df.loc[df.index[lv2][:3], "token_check"] = "reasoning_outside_completion"
    df.loc[lv4, "lingered"] = "1"
    df.to_csv(path, index=False)
    build_report(run)
    summary = json.loads(Path(run, "summary.json").read_text())
    assert summary["usage_contradicted_levels"] == [2.0]
    assert summary["token_contradictions_by_level"] == {"1": 0.0, "2": 3.0, "4": 0.0}
    assert summary["lingered_levels"] == [4.0] and summary["clumped_levels"] == []
    md = Path(run, "report.md").read_text()
    assert "**Token counts contradicted the stream** (2: 3 requests" in md
    assert "**Streams held open** (4: 100%" in md and "**Events in clumps**" not in md


def test_the_report_states_each_levels_client_error_and_load_as_measured(sweep):
    md = Path(os.path.join(sweep, "report.md")).read_text(encoding="utf-8")
    line = next(x for x in md.splitlines() if x.startswith("- **Client self-check**"))
    # the synthetic client is exact (every bound 0); each level's load figure is its own
    assert line.count("timings exact within 0.00 ms") == 6 and "100.0 % of requests exact within 1 ms" in line
    with open(os.path.join(sweep, "summary.json")) as fh:
        summary = json.load(fh)
    assert not summary["timing_uncertain_levels"]
    assert set(summary["client_checks"]) == {"1", "2", "4", "8", "16", "32"}
    back = pd.read_csv(os.path.join(sweep, "levels.csv"))
    assert (back["ttft_exact_1ms_pct"] == 100.0).all() and (back["ttft_error_bound_p99_ms"] == 0.0).all()
    short = {f"{lvl:g}" for lvl, flag in zip(back["level"], back["load_short"]) if flag}
    assert set(summary["load_short_levels"]) == short
    # the console: a line for each flagged level, or one line when none is
    text = summary_text(sweep)
    per_level = [x for x in text.splitlines() if x.startswith("Client at level ")]
    flagged = set(summary["timing_uncertain_levels"]) | short
    assert len(per_level) == len(flagged)
    assert ("\nClient: timings exact within 0.00 ms" in text) == (not flagged)
