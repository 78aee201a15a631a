"""Repeated runs (tokenswarm.report.repeats): each run's value, the spread between them, and whether it goes
beyond the runs' own intervals."""

import json

from tokenswarm.report import build_report, repeats
from tokenswarm.report.synthetic import write_run


def test_the_spread_between_runs_beside_each_runs_interval(tmp_path):
    dirs = []
    for i in range(3):
        d = str(tmp_path / f"repeat-{i + 1}")
        write_run(d, levels=(1, 4), seed=i, ttft_ms=40.0 + 10 * i)  # TTFT moves between the runs
        build_report(d, with_plots=False)
        dirs.append(d)
    summary = repeats.write(str(tmp_path), dirs)
    saved = json.loads((tmp_path / repeats.REPEATS_JSON).read_text())
    assert saved["runs"] == dirs and len(saved["figures"]) == 2 * len(repeats.FIGURES)
    ttft = next(f for f in summary["figures"] if f["level"] == 4 and f["figure"] == "ttft_mean_ms")
    assert len(ttft["values"]) == 3 and ttft["values"][0] < ttft["values"][1] < ttft["values"][2]
    assert ttft["sd"] > 5 and ttft["beyond_within_run"]  # 10 ms between runs, each run far more precise
    md = (tmp_path / repeats.REPEATS_MD).read_text()
    assert "Within run" in md and " >" in md
    text = repeats.text(summary)
    assert text.splitlines()[0].split()[:2] == ["Level", "run"] and len(text.splitlines()) == 4
