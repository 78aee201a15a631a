"""The CSV-only path: a folder holding only the CSV files of a plain Locust run with tokenswarm's users.

The fixture (tests/fixtures/locust_csv/steps_2_4_8/) was written by a real
Locust 2.47 run: `locust -f shape_locustfile.py --headless --csv .../plain
--csv-full-history` stepping 2 -> 4 -> 8 users (12 s each) against
`tokenswarm simengine --max-num-seqs 4`, so the engine saturates at 4.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tokenswarm.report import ReportError, build_report
from tokenswarm.report.locustcsv import failures_by_kind, find_history, levels_from_history

FIXTURE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "fixtures", "locust_csv", "steps_2_4_8")


@pytest.fixture
def csv_only(tmp_path):
    run = tmp_path / "plain-run"
    run.mkdir()
    for name in os.listdir(FIXTURE):
        if name.endswith(".csv"):
            shutil.copy(os.path.join(FIXTURE, name), run / name)
    return str(run)


def _by_hand(history: pd.DataFrame, name: str, users: int, prev_users: int | None) -> tuple[float, float]:
    """(count, mean) of one name's requests completed while ``users`` ran, from the cumulative columns."""
    rows = history[(history.Type == "LLM") & (history.Name == name)]
    hi = rows[rows["User Count"] == users].iloc[-1]
    lo = rows[rows["User Count"] == prev_users].iloc[-1] if prev_users else None
    n_hi, s_hi = hi["Total Request Count"], hi["Total Request Count"] * hi["Total Average Response Time"]
    n_lo, s_lo = (0, 0.0) if lo is None else (lo["Total Request Count"],
                                             lo["Total Request Count"] * lo["Total Average Response Time"])
    return n_hi - n_lo, (s_hi - s_lo) / (n_hi - n_lo)


def test_levels_come_from_the_history_grouped_by_user_count(csv_only):
    path = find_history(csv_only)
    assert os.path.basename(path) == "plain_stats_history.csv"  # any prefix, not only locust_
    levels = levels_from_history(path)
    assert levels["level"].tolist() == [2.0, 4.0, 8.0]
    history = pd.read_csv(path)
    for users, prev in ((2, None), (4, 2), (8, 4)):
        row = levels[levels.level == users].iloc[0]
        n, ttft_mean = _by_hand(history, "TTFT", users, prev)
        assert row["ttft_mean_ms"] == pytest.approx(ttft_mean)
        n_e2e, _ = _by_hand(history, "E2E", users, prev)
        assert row["requests"] == n_e2e and row["completed"] == n_e2e and row["failed"] == 0
        _, tpot_mean = _by_hand(history, "TPOT", users, prev)
        assert row["tpot_mean_ms"] == pytest.approx(tpot_mean)
        last = history[(history.Name == "TTFT") & (history["User Count"] == users)].iloc[-1]
        assert row["ttft_p99_ms"] == last["99%"] and row["ttft_p50_ms"] == last["50%"]  # Locust's rounded values
        assert row["mean_output_tokens"] == pytest.approx(32.0)  # --max-tokens 32
        assert np.isnan(row["input_throughput_tok_s"]) and np.isnan(row["achieved_concurrency"])
    e2e = history[history.Name == "E2E"].iloc[-1]
    assert levels["requests"].sum() == e2e["Total Request Count"]
    stats = pd.read_csv(os.path.join(csv_only, "plain_stats.csv"))
    assert levels["requests"].sum() <= stats[stats.Name == "E2E"]["Request Count"].iloc[0]
    # the engine has 4 slots: throughput nearly doubles 2 -> 4, then stays flat while TTFT explodes
    t = levels.set_index("level")["output_throughput_tok_s"]
    assert t[4] > 1.5 * t[2] and abs(t[8] / t[4] - 1) < 0.1
    assert levels.set_index("level")["ttft_mean_ms"][8] > 5 * levels.set_index("level")["ttft_mean_ms"][4]


def test_build_writes_the_report_and_says_the_percentiles_are_locusts(csv_only):
    levels = build_report(csv_only)
    assert levels["level"].tolist() == [2.0, 4.0, 8.0]
    md = Path(os.path.join(csv_only, "report.md")).read_text(encoding="utf-8")
    assert "Locust's rounded ones" in md and "plain_stats_history.csv" in md
    assert "| Concurrency | Mean TTFT (ms) |" in md
    with open(os.path.join(csv_only, "summary.json")) as fh:
        summary = json.load(fh)
    assert summary["source"] == "locust_csv" and summary["saturation_level"] == 4.0
    assert pd.read_csv(os.path.join(csv_only, "levels.csv"))["source"].eq("locust_csv").all()
    for name in ("report.html", "plots/throughput.png"):
        assert os.path.getsize(os.path.join(csv_only, name)) > 1000


def _history(rows):
    cols = ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s", "50%", "66%", "75%", "80%",
            "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%", "Total Request Count", "Total Failure Count",
            "Total Median Response Time", "Total Average Response Time", "Total Min Response Time",
            "Total Max Response Time", "Total Average Content Size"]
    out = []
    for t, users, name, count, fails, avg, p, size in rows:
        out.append([t, users, "LLM", name, 0, 0, *([p] * 11), count, fails, p, avg, p, p, size])
    return pd.DataFrame(out, columns=cols)


def test_ramp_steps_join_the_level_they_lead_to_and_failures_are_counted(tmp_path):
    rows = []
    # 2 users for t=1..3, a ramp 3, 4, 5 (one second each), then 6 users for t=7..9
    for t, users, n, fails in ((1, 2, 10, 0), (2, 2, 20, 0), (3, 2, 30, 0), (4, 3, 40, 1), (5, 4, 55, 1),
                               (6, 5, 70, 2), (7, 6, 90, 2), (8, 6, 110, 3), (9, 6, 130, 3)):
        rows.append((t, users, "E2E", n, fails, 100.0, 100, 32.0 * (n - fails) / n))
        rows.append((t, users, "TTFT", n - fails, 0, 10.0 + t, 10 + t, 0.0))
    path = tmp_path / "x_stats_history.csv"
    _history(rows).to_csv(path, index=False)
    levels = levels_from_history(str(path)).set_index("level")
    assert levels.index.tolist() == [2.0, 6.0]
    assert levels.loc[2, "requests"] == 30 and levels.loc[6, "requests"] == 100
    assert levels.loc[6, "failed"] == 3 and levels.loc[6, "completed"] == 97
    assert levels.loc[6, "window_s"] == 6.0  # from t=3 to t=9
    assert levels.loc[6, "output_throughput_tok_s"] == pytest.approx(32.0 * 97 / 6.0)
    ttft_sum = (130 - 3) * 19.0 - 30 * 13.0
    assert levels.loc[6, "ttft_mean_ms"] == pytest.approx(ttft_sum / (127 - 30))
    (tmp_path / "x_failures.csv").write_text(
        'Method,Name,Error,Occurrences\nLLM,E2E,"LLMFailure(\'http_error: HTTP 500\')",2\n'
        "LLM,E2E,LLMFailure('timeout: no byte in 120 s'),1\nLLM,E2E,something else,4\n")
    assert failures_by_kind(str(path)) == {"http_error": 2, "timeout": 1, "other": 4}


def test_a_history_whose_e2e_size_is_bytes_gives_no_output_tokens(tmp_path):
    # since E2E is Locust's only request per request, its size is the bytes received and the total counts E2E
    # alone; older files counted TTFT and TPOT in the total too, and E2E's size was the output tokens
    rows = []
    for t, n in ((1, 10), (2, 20), (3, 30)):
        rows.append((t, 4, "E2E", n, 0, 100.0, 100, 27000.0))
        rows.append((t, 4, "TTFT", n, 0, 10.0, 10, 0.0))
    new = _history(rows)
    total = new[new.Name == "E2E"].assign(Type="", Name="Aggregated")
    pd.concat([new, total]).to_csv(tmp_path / "new_stats_history.csv", index=False)
    levels = levels_from_history(str(tmp_path / "new_stats_history.csv"))
    assert levels["requests"].tolist() == [30] and levels["ttft_mean_ms"].tolist() == [10.0]
    assert np.isnan(levels["output_throughput_tok_s"][0]) and np.isnan(levels["mean_output_tokens"][0])
    old = pd.concat([new, total.assign(**{"Total Request Count": total["Total Request Count"] * 2})])
    old.to_csv(tmp_path / "old_stats_history.csv", index=False)
    assert levels_from_history(str(tmp_path / "old_stats_history.csv"))["mean_output_tokens"][0] == 27000.0


def test_a_history_without_tokenswarm_rows_or_several_histories_is_refused(tmp_path):
    agg = pd.read_csv(os.path.join(FIXTURE, "plain_stats_history.csv"))
    agg[agg.Name == "Aggregated"].to_csv(tmp_path / "a_stats_history.csv", index=False)
    with pytest.raises(ReportError, match="--csv-full-history"):
        levels_from_history(str(tmp_path / "a_stats_history.csv"))
    agg.to_csv(tmp_path / "b_stats_history.csv", index=False)
    with pytest.raises(ReportError, match="several Locust histories"):
        find_history(str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReportError, match="not a tokenswarm run folder"):
        build_report(str(empty))
