"""A real run records its provenance: run.json, report.md and report.html name the date, tokenswarm's version,
the command line (the key redacted), the client machine and the engine's version as the server told it."""

from __future__ import annotations

import json
import os

from tokenswarm import __version__

KEY = "sk-provenance-9c41e7d2"


def test_a_run_records_what_was_run_and_keeps_the_key_out(cli, tmp_path):
    out = tmp_path / "run"
    p = cli("run", "--engine", "sim", "--users", "2", "--duration", "2s", "--api-key", KEY, "--out", str(out),
            "--sim-args", f"--ttft-ms 10 --tpot-ms 1 --api-key {KEY}", timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    meta = json.loads((out / "run.json").read_text())
    prov = meta["provenance"]
    assert prov["tokenswarm"] == __version__
    assert prov["command"].startswith("tokenswarm run --engine sim --users 2 ")
    assert "--api-key '<redacted>'" in prov["command"] and "--ttft-ms 10" in prov["command"]
    assert prov["client"]["cpus"] == os.cpu_count() and prov["client"]["python"]
    assert prov["engine"]["version"] == f"tokenswarm-sim {__version__}"  # what the simulated engine's /version says
    assert prov["engine"]["version_source"] == "GET /version" and prov["engine"]["max_model_len"] > 0
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert f"- **Engine:** sim tokenswarm-sim {__version__} (GET /version" in md
    assert f"- **tokenswarm:** {__version__}" in md and "- **Command:** `tokenswarm run --engine sim" in md
    assert '<table class="facts">' in html and "<th>Client</th>" in html and prov["date"][:10] in html
    for name in os.listdir(out):  # the key, sent on every request, is in no file of the run folder
        path = out / name
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), name
