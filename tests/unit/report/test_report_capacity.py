"""A capacity search's answer from its run folder (tokenswarm.report.capacity): capacity.json, its line, its plot."""

import json
import os

import pandas as pd

from tokenswarm.report import capacity


def _folder(tmp_path, complete=True):
    timeline, rows, t = [], [], 1_790_000_000.0
    for level in (4, 8, 16, 32, 24, 20, 18, 17):
        ok = level <= 16
        timeline.append({"level": float(level), "start": t, "end": t + 10.0, "verdict": "holds" if ok else "fails",
                         "decided": level != 18})
        rows.append({"level": float(level), "completed": 200, "failed": 0,
                     "ttft_p99_ms": 60.0 if ok else 600.0, "ttft_p99_ci_low_ms": 55.0 if ok else 550.0,
                     "ttft_p99_ci_high_ms": 70.0 if ok else 900.0})
        t += 10.0
    meta = {"complete": complete, "started": 1_790_000_000.0, "ended": t, "timeline": timeline,
            "settings": {"mode": "concurrency", "slo": {"ttft_p99": 500.0}, "slo_attainment": 0.99,
                         "capacity": {"bracket": ["4", "64"], "max_probes": 20, "resolution_pct": 5.0}}}
    return meta, pd.DataFrame(rows)


def test_capacity_json_replays_the_search_and_answers_in_one_line(tmp_path):
    meta, levels = _folder(tmp_path)
    c = capacity.build(str(tmp_path), meta, levels)
    saved = json.loads((tmp_path / capacity.CAPACITY_JSON).read_text())
    assert saved["max_level"] == 16 and saved["status"] == "found" and (saved["ci_low"], saved["ci_high"]) == (16, 16)
    assert saved["slo"] == {"ttft_p99": 500.0} and len(saved["probes"]) == 8
    assert saved["probes"][6] == {"level": 18.0, "verdict": "fails", "decided": False, "seconds": 10.0,
                                  "figures": {"ttft_p99": {"estimate": 600.0, "ci_low": 550.0, "ci_high": 900.0}}}
    assert c["line"] == ("max concurrency meeting TTFT p99 <= 500 ms: 16 (95 % CI 16-16); 8 probes, 80 s")
    path = capacity.plot(c, str(tmp_path / "plots"))
    assert path is not None and os.path.getsize(path) > 1000


def test_a_search_cut_short_says_so_and_other_runs_have_no_answer(tmp_path):
    meta, levels = _folder(tmp_path, complete=False)
    meta["timeline"] = meta["timeline"][:3]  # 4, 8, 16 held; then interrupted
    c = capacity.build(str(tmp_path), meta, levels)
    assert c["status"] == "undecided" and "interrupted" in c["reason"]
    assert c["line"].startswith("max concurrency meeting TTFT p99 <= 500 ms: undecided (the run was interrupted")
    assert capacity.build(str(tmp_path), {"settings": {"levels": ["1"]}}, levels) is None


def test_the_slo_in_words():
    assert capacity.slo_text({"ttft": 250.0, "tpot_p90": 50.0}, 0.99) == \
        "TTFT <= 250 ms, TPOT p90 <= 50 ms (for 99 % of requests)"


def test_an_answer_outside_the_crossings_interval_says_what_each_is():
    # a rate search once printed "24.38 req/s (95 % CI 24.6-28.18)": the highest probe that held, beside the
    # interval of where the probes' figures cross the SLOs, which lay above it. The line now says which is which
    c = {"mode": "rate", "slo": {"ttft_mean": 300.0}, "status": "found", "max_level": 24.38, "estimate": 25.0,
         "ci_low": 24.6, "ci_high": 28.18, "probes": [{}] * 6, "seconds": 40}
    line = capacity.answer_line(c)
    assert line.startswith("max request rate meeting TTFT mean <= 300 ms: 24.38 req/s (the highest probe that held; "
                           "the probes' figures cross the SLOs at 25 req/s, 95 % CI 24.6-28.18)"), line
    c.update(max_level=25.0)  # inside its interval: the short form
    assert "(95 % CI 24.6-28.18); 6 probes" in capacity.answer_line(c)
