"""`tokenswarm report DIR` on a synthetic multi-level sweep folder: every derived file, rebuilt from the raw ones."""

import json
import os
from pathlib import Path

import pandas as pd

from tokenswarm.report import build_report
from tokenswarm.report.plots import FILES
from tokenswarm.report.synthetic import write_run

LEVELS = (1, 2, 4, 8, 16, 32, 64)


def test_report_command_rebuilds_a_sweep_folder(cli, tmp_path):
    run = str(tmp_path / "20261121-120000-sim-sweep")
    meta = write_run(run, levels=LEVELS, capacity=16, warmup_s=1.0, slo={"ttft": 500, "tpot": 25}, fail_share=0.002,
                     seed=5, settings={"run_name": "sweep", "level_duration_s": 20, "slo_attainment": 0.95})
    # an interrupted run: nothing was sent after the interrupt, and the last level never got its end time
    interrupt = meta["timeline"][-1]["end"]
    requests = pd.read_csv(os.path.join(run, "requests.csv"), dtype=str, keep_default_na=False)
    requests[requests["start_time"].astype(float) <= interrupt].to_csv(os.path.join(run, "requests.csv"), index=False)
    meta["timeline"][-1]["end"] = None
    meta["complete"] = False
    with open(os.path.join(run, "run.json"), "w") as fh:
        json.dump(meta, fh)
    p = cli("report", run, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout.strip().splitlines()
    assert out[-1] == run and out[0].split()[:3] == ["Concurrency", "Mean", "TTFT"]
    assert "Saturation: concurrency 16" in p.stdout
    for name in ("levels.csv", "summary.json", "report.md", "report.html", *(f"plots/{f}" for f in FILES)):
        assert os.path.getsize(os.path.join(run, name)) > 0, name
    levels = pd.read_csv(os.path.join(run, "levels.csv"))
    assert levels["level"].tolist() == list(LEVELS)
    assert (levels["achieved_concurrency"] / levels["level"]).between(0.95, 1.05).all()
    assert not levels["under_target"].any()
    requests = pd.read_csv(os.path.join(run, "requests.csv"))
    assert levels["requests"].sum() == len(requests)
    summary = json.loads(Path(os.path.join(run, "summary.json")).read_text())
    assert summary["saturation_level"] == 16.0 and summary["complete"] is False
    assert summary["slo_attainment_target"] == 0.95
    md = Path(os.path.join(run, "report.md")).read_text(encoding="utf-8")
    assert "**This run did not complete**" in md
    # the rebuild is deterministic: building again writes the same levels.csv
    before = Path(os.path.join(run, "levels.csv")).read_text(encoding="utf-8")
    build_report(run, with_plots=False)
    assert Path(os.path.join(run, "levels.csv")).read_text(encoding="utf-8") == before
