"""``tokenswarm sweep --resume DIR``: an interrupted sweep goes on from its first level cut short, with the same
settings and seed, and DIR's report joins both parts."""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd


def env():
    return {k: v for k, v in os.environ.items() if not k.startswith(("TOKENSWARM_", "LOCUST_"))}


def interrupted_sweep(host, out, *more, seed=("--seed", "7")):
    """A sweep over 1,2,4 stopped by Ctrl-C once level 2 has begun."""
    p = subprocess.Popen([sys.executable, "-m", "tokenswarm", "sweep", "--host", host, "--levels", "1,2,4",
                          "--level-duration", "3s", "--max-tokens", "8", *seed, "--out", str(out), *more],
                         env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        text = (out / "requests.csv").read_text() if (out / "requests.csv").exists() else ""
        if any(row.get("level") == "2" for row in csv.DictReader(io.StringIO(text))):
            break
        time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 130, stdout[-2000:] + stderr[-2000:]
    return stdout


def test_an_interrupted_sweep_resumes_at_its_cut_level_and_the_report_joins_both_parts(cli, sim_fixed, tmp_path):
    out = tmp_path / "sweep"
    interrupted_sweep(sim_fixed.url, out)
    first = pd.read_csv(out / "requests.csv")
    assert set(first.level) == {1, 2}
    key = {"OPENAI_API_KEY": ""}
    p = cli("sweep", "--resume", str(out), env=key)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert f"resuming {out} at level 2 (done: 1)" in p.stdout
    assert p.stdout.strip().splitlines()[-1] == str(out)  # the run folder last, as for any sweep
    # the first part's raw files, kept whole (the cut level's records too); the second part's own
    part1, part2 = out / "part-1", out / "part-2"
    assert len(pd.read_csv(part1 / "requests.csv")) == len(first)
    run2 = json.loads((part2 / "run.json").read_text())
    assert run2["complete"] is True and [s["level"] for s in run2["timeline"]] == [2, 4]
    # same settings and seed; the continuation's prompts from the seed's next stream
    s1 = json.loads((part1 / "run.json").read_text())["settings"]
    s2 = run2["settings"]
    assert s2["seed"] == s1["seed"] == 7 and s2["dataset"]["seed"] == 8
    for k in ("engine", "model", "max_tokens", "level_duration_s", "endpoint", "base_url"):
        assert s2[k] == s1[k], k
    # the joined folder: level 1 from the first part, 2 and 4 from the second, and one sweep's report
    joined = json.loads((out / "run.json").read_text())
    assert [s["level"] for s in joined["timeline"]] == [1, 2, 4] and joined["complete"] is True
    assert [r["part"] for r in joined["resumed"]] == ["part-1", "part-2"]
    rows = pd.read_csv(out / "requests.csv")
    p2 = pd.read_csv(part2 / "requests.csv")
    assert len(rows) == joined["records"] == (first.level == 1).sum() + len(p2)
    assert list(pd.read_csv(out / "levels.csv").level) == [1, 2, 4]
    report = (out / "report.md").read_text()
    assert "did not complete" not in report
    assert "Concurrency" in p.stdout and "not reached before the sweep stopped" not in p.stdout


def test_resume_refuses_a_completed_sweep_and_a_folder_without_a_sweep(cli, sim_fixed, tmp_path):
    out = tmp_path / "done"
    p = cli("sweep", "--host", sim_fixed.url, "--levels", "1", "--level-requests", "3", "--max-tokens", "4",
            "--out", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    p = cli("sweep", "--resume", str(out))
    assert p.returncode == 2 and p.stderr.strip() == (
        f"tokenswarm: error: bad --resume {str(out)!r}: that sweep completed; nothing to resume")
    p = cli("sweep", "--resume", str(tmp_path))
    assert p.returncode == 2 and "resume.json is missing" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_the_key_is_never_written_down_and_a_resume_without_it_says_so(cli, sim_factory, tmp_path):
    sim = sim_factory("--ttft-ms", "5", "--tpot-ms", "1", "--api-key", "sk-resume-key-789")
    out = tmp_path / "keyed"
    p = cli("sweep", "--host", sim.url, "--levels", "1,2", "--level-requests", "3", "--max-tokens", "4",
            "--out", str(out), env={"TOKENSWARM_API_KEY": "sk-resume-key-789"})
    assert p.returncode == 0, p.stderr[-2000:]
    info = (out / "resume.json").read_text()
    assert "sk-resume-key-789" not in info and json.loads(info)["header_names"] == ["Authorization"]
    run = json.loads((out / "run.json").read_text())  # as a crash in level 2 would leave it
    (out / "run.json").write_text(json.dumps({**run, "complete": False}))
    p = cli("sweep", "--resume", str(out), env={"OPENAI_API_KEY": ""})
    assert p.returncode == 2 and p.stderr.strip() == (
        f"tokenswarm: error: bad --resume {str(out)!r}: the sweep sent the header(s) Authorization, whose values "
        "are never written down: give them again (--api-key or $TOKENSWARM_API_KEY)")
    assert not (out / "part-1").exists()  # nothing moved
    p = cli("sweep", "--resume", str(out), env={"TOKENSWARM_API_KEY": "sk-resume-key-789"})
    assert p.returncode == 0, p.stderr[-2000:]
    assert [s["level"] for s in json.loads((out / "run.json").read_text())["timeline"]] == [1, 2]
    assert "sk-resume-key-789" not in p.stdout + p.stderr


def test_a_sweep_with_a_drawn_seed_resumes_on_that_seeds_next_stream(cli, sim_fixed, tmp_path):
    # without --seed the first part draws one when it starts, after resume.json is written: the continuation
    # once drew a fresh seed of its own, so part 2 did not follow part 1's prompts as docs/commands.md says
    out = tmp_path / "sweep"
    interrupted_sweep(sim_fixed.url, out, seed=())
    p = cli("sweep", "--resume", str(out), env={"OPENAI_API_KEY": ""})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    s1 = json.loads((out / "part-1" / "run.json").read_text())["settings"]
    s2 = json.loads((out / "part-2" / "run.json").read_text())["settings"]
    assert s1["seed_drawn"] is True and s1["dataset"]["seed"] > 0
    assert s2["seed"] == s1["dataset"]["seed"] and s2["dataset"]["seed"] == s1["dataset"]["seed"] + 1, (s1, s2)
