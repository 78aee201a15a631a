"""resume.join: the GPU's samples of each part are joined like the engine's."""

import json
import os

import pandas as pd

from tokenswarm import gpumetrics, resume


def part(folder, levels, start, complete):
    os.makedirs(folder)
    timeline = [{"level": lv, "start": start + 10 * i, "end": start + 10 * (i + 1)} for i, lv in enumerate(levels)]
    with open(os.path.join(folder, "run.json"), "w", encoding="utf-8") as fh:
        json.dump({"run_id": os.path.basename(folder), "timeline": timeline, "complete": complete, "settings": {}}, fh)
    rows = [[f"{s['start'] + 1:.3f}", f"{s['level']:g}", "h", "0", "300", "1000", "90", "70000", "1.0", ""]
            for s in timeline]
    pd.DataFrame(rows, columns=gpumetrics.CSV_COLUMNS).to_csv(os.path.join(folder, "gpu_metrics.csv"), index=False)


def test_gpu_metrics_of_every_part_are_joined(tmp_path):
    run = tmp_path / "run"
    part(str(run / "part-1"), [1, 2], 100.0, complete=False)
    part(str(run / "part-2"), [2, 4], 200.0, complete=True)
    resume.join(str(run))
    joined = pd.read_csv(run / "gpu_metrics.csv")
    assert list(joined.columns) == list(gpumetrics.CSV_COLUMNS)
    assert joined["time"].tolist() == [101.0, 111.0, 201.0, 211.0]
    assert "gpu_metrics.csv" in resume.RAW_FILES  # moved into part-1 on the first resume
