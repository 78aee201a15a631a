"""Live figures (progress lines, the web UI tab) are the report's figures over the records seen so far."""

import csv
import os

import numpy as np
import pytest

from tokenswarm.report import build_report
from tokenswarm.report.live import IN_TRANSIT_S, MEASURED, MEASURING, WARMING_UP, LiveFigures
from tokenswarm.report.synthetic import write_run
from tokenswarm.requestscsv import COLUMNS


def rows_of(run_dir):
    with open(os.path.join(run_dir, "requests.csv"), newline="") as fh:
        r = csv.reader(fh)
        assert tuple(next(r)) == COLUMNS
        return list(r)


def as_row(start, level, ttft_ms, e2e_ms, n_in, n_out, status="ok"):
    row = [""] * len(COLUMNS)
    i = {c: k for k, c in enumerate(COLUMNS)}
    tpot = (e2e_ms - ttft_ms) / (n_out - 1) if n_out > 1 else None
    for col, v in (("start_time", "%.6f" % start), ("level", f"{level:g}"), ("status", status),
                   ("ttft_ms", "%.3f" % ttft_ms), ("e2e_ms", "%.3f" % e2e_ms), ("close_ms", "%.3f" % (e2e_ms + 0.5)),
                   ("tpot_ms", "" if tpot is None else "%.3f" % tpot), ("input_tokens", str(n_in)),
                   ("output_tokens", str(n_out))):
        row[i[col]] = v
    return row


def test_an_ended_level_reads_exactly_what_the_final_table_reads(tmp_path):
    run = str(tmp_path / "run")
    meta = write_run(run, levels=(1, 4, 16), capacity=8, warmup_s=0.7, fail_share=0.05, seed=4)
    levels = build_report(run).set_index("level")
    books = LiveFigures()
    rows = rows_of(run)
    for i in range(0, len(rows), 97):  # in slices, as digested
        books.add(rows[i:i + 97])
    later = meta["timeline"][-1]["end"] + 3600
    for seg in meta["timeline"]:
        f = books.figures(f"{seg['level']:g}", seg["start"], seg["end"], 0.7, now=later)
        want = levels.loc[seg["level"]]
        assert f["phase"] == MEASURED and f["window_s"] == pytest.approx(want["window_s"])
        for live, col in (("req_s", "request_throughput_req_s"), ("input_tok_s", "input_throughput_tok_s"),
                          ("output_tok_s", "output_throughput_tok_s"), ("ttft_p50", "ttft_p50_ms"),
                          ("ttft_p99", "ttft_p99_ms"), ("tpot_p50", "tpot_p50_ms"), ("tpot_p99", "tpot_p99_ms"),
                          ("failed_pct", "failed_pct")):
            assert f[live] == pytest.approx(want[col], rel=1e-6), live
        assert (f["ok"], f["failed"]) == (want["completed"], want["failed"])


def test_a_running_level_waits_for_its_requests_and_then_reads_the_steady_rate():
    # 16 users, exact timing: TTFT 150 ms + 127 x 15 ms; level starts at 1000.0, users up at 1000.5
    life, t0 = 0.150 + 127 * 0.015, 1000.5
    rows, ends = [], []
    for u in range(16):
        t = t0 + u * 0.01
        while t < 1200:
            rows.append(as_row(t, 16, 150.0, life * 1000, 145, 128))
            ends.append(t + life + 0.0005)
            t += life + 0.001
    order = np.argsort(ends, kind="stable")  # records arrive as requests end
    rows, ends = [rows[k] for k in order], np.array(ends)[order]
    steady_req_s = 16 / (life + 0.001)
    books = LiveFigures()
    seen = 0
    for now in (1001.0, 1003.0, 1004.0, 1060.0):
        arrived = [r for r, e in zip(rows, ends) if e <= now]  # a record exists once its request has ended
        books.add(arrived[seen:])
        seen = len(arrived)
        f = books.figures("16", 1000.0, None, 2.0, now=now)
        if now < 1000.5 + 2.0:
            assert f["phase"] == WARMING_UP and f["req_s"] is None and f["warmup_left_s"] > 0
        elif now - (life + IN_TRANSIT_S) <= 1002.5:
            assert f["phase"] == MEASURING and f["req_s"] is None  # the requests in flight have not reported
        else:
            assert f["phase"] == MEASURED
            assert f["req_s"] == pytest.approx(steady_req_s, rel=0.01)
            assert f["output_tok_s"] == pytest.approx(128 * f["req_s"]) and f["input_tok_s"] == pytest.approx(
                145 * f["req_s"])
            assert f["ttft_p50"] == pytest.approx(150.0) and f["tpot_p99"] == pytest.approx(15.0)


def test_the_books_keep_a_bounded_number_of_records_and_never_count_a_dropped_span():
    books = LiveFigures(cap=1000)
    rows = [as_row(1000.0 + k * 0.01, 4, 10.0, 50.0, 10, 5) for k in range(10_000)]
    for i in range(0, len(rows), 64):
        books.add(rows[i:i + 64])
    assert len(books.rates.view()) < 2 * 1000 and len(books.levels["4"].sample.view()) < 2 * 1000
    assert books.records == 10_000
    # an ended level whose early records were let go is measured over the part still held, not diluted
    f = books.figures("4", 1000.0, 1100.0, 0.0, now=5000.0)
    assert f["req_s"] == pytest.approx(100.0, rel=0.02) and f["window_s"] < 100.0


def test_a_closed_loop_levels_live_window_opens_once_its_last_user_sent_and_a_step_down_once_drained():
    # 4 users whose first sends are 0.5 s apart, each request 1 s long
    def row(start, level, user, e2e_ms=1000.0):
        r = as_row(start, level, 100.0, e2e_ms, 10, 10)
        r[COLUMNS.index("user")], r[COLUMNS.index("worker")] = str(user), "local"
        return r

    lf = LiveFigures(closed_loop=True)
    lf.add([row(1000.0 + 0.5 * u + k * 1.001, 4, u) for u in range(4) for k in range(5)])
    assert lf.opens("4") == pytest.approx(1001.5)
    f = lf.figures("4", 1000.0, None, 0.0, now=1001.2, opens=lf.opens("4"))
    assert f["phase"] == WARMING_UP and f["warmup_left_s"] == pytest.approx(0.3)
    # a step down to 2 users: 20 requests were sent before it; until all 20 records are in it has not opened
    lf.add([row(1006.0, 2, 0, e2e_ms=500.0)])
    assert lf.opens("2", sent_before=21) == float("inf")
    assert lf.figures("2", 1006.0, None, 0.0, now=1007.0, opens=float("inf"))["phase"] == WARMING_UP
    last_end = 1000.0 + 1.5 + 4 * 1.001 + 1.0005  # user 3's fifth request closes
    assert lf.opens("2", sent_before=20) == pytest.approx(last_end)
    assert LiveFigures().opens("4") == float("-inf")  # open loop: no floor
