"""requests.csv rows and the exact per-level statistics, checked by hand with numpy."""

import csv

import numpy as np
import pandas as pd
import pytest

from tokenswarm.metrics import RequestRecord
from tokenswarm.records import COLUMNS, RequestsWriter, to_row
from tokenswarm.report.levels import Window, level_stats, load_requests, windows_from

CONTRACT = ("request_id", "start_time", "level", "worker", "status", "http_status", "ttft_ms", "ttft_visible_ms",
            "tpot_ms", "e2e_ms", "input_tokens", "output_tokens", "token_source", "error")


def test_requests_csv_has_the_contract_columns():
    assert set(CONTRACT) <= set(COLUMNS)
    r = RequestRecord("id,with,commas", 1700000000.1234567, ttft_ms=12.34567, itl_ms=[1.0, 2.5], error='say "hi"')
    row = to_row(r)
    assert len(row) == len(COLUMNS)
    assert row[COLUMNS.index("start_time")] == "1700000000.123457"
    assert row[COLUMNS.index("ttft_ms")] == "12.346"
    assert row[COLUMNS.index("itl_ms")] == "1.000 2.500"


def test_writer_appends_with_one_header(tmp_path):
    p = str(tmp_path / "requests.csv")
    w = RequestsWriter(p)
    w.write([to_row(RequestRecord("a", 1.0))])
    w.close()
    w = RequestsWriter(p)
    w.write([to_row(RequestRecord("b,c", 2.0, error="x\ny"))])
    w.close()
    with open(p, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == list(COLUMNS) and [r[0] for r in rows[1:]] == ["a", "b,c"]
    assert rows[2][COLUMNS.index("error")] == "x\ny"


def make_df():
    """Two levels; level 1 window [100, 110), level 2 window [110, 120)."""
    rows = []
    rng = np.random.default_rng(7)
    for i in range(20):
        level = 1 if i < 10 else 2
        start = 100.0 + i * 0.9 + (0 if level == 1 else 1.0)
        ttft = float(rng.uniform(50, 150))
        e2e = ttft + 400.0
        rows.append(RequestRecord(f"r{i}", start, status="ok", ttft_ms=ttft, tpot_ms=(e2e - ttft) / 9, e2e_ms=e2e,
                                  close_ms=e2e + 1, itl_ms=[float(x) for x in rng.uniform(40, 50, 9)],
                                  input_tokens=100 + i, output_tokens=10, level=level))
    rows.append(RequestRecord("f1", 105.0, status="http_error", http_status=500, close_ms=3.0, level=1))
    rows.append(RequestRecord("c1", 119.0, status="cancelled", close_ms=10.0, level=2))
    return rows


def test_level_statistics_equal_a_hand_computation(tmp_path):
    p = str(tmp_path / "requests.csv")
    w = RequestsWriter(p)
    w.write(to_row(r) for r in make_df())
    w.close()
    df = load_requests(p)
    timeline = [{"level": 1, "start": 100.0, "end": 110.0}, {"level": 2, "start": 110.0, "end": 120.0}]
    levels = level_stats(df, windows_from(df, timeline), slo={"ttft": 100.0})
    assert list(levels["level"]) == [1, 2]
    for lvl, row in zip((1, 2), levels.to_dict("records")):
        mine = df[(df.level == lvl) & (df.status == "ok")]
        ttft = mine["ttft_ms"].to_numpy()
        assert row["ttft_mean"] == pytest.approx(ttft.mean())
        for p_ in (50, 90, 95, 99, 99.9):
            key = "ttft_p" + f"{p_:g}".replace(".", "")
            assert row[key] == pytest.approx(np.percentile(ttft, p_))
        itl = np.concatenate([np.array(s.split(), float) for s in mine["itl_ms"]])
        assert row["itl_p99"] == pytest.approx(np.percentile(itl, 99))
        assert row["tpot_p50"] == pytest.approx(np.percentile(mine["tpot_ms"], 50))
        lo, hi = (100.0, 110.0) if lvl == 1 else (110.0, 120.0)
        okd = df[df.status == "ok"]
        end = okd.start_time + okd.e2e_ms / 1000
        first = okd.start_time + okd.ttft_ms / 1000
        done = okd[(end >= lo) & (end < hi)]
        # output tokens: the first at TTFT, the other n-1 spread evenly from first to last token
        out = 0.0
        for f, e, n in zip(first, end, okd.output_tokens):
            out += 1.0 if lo <= f < hi else 0.0
            out += (n - 1) * max(0.0, min(e, hi) - max(f, lo)) / (e - f)
        assert row["output_throughput"] == pytest.approx(out / 10.0)
        assert row["input_throughput"] == pytest.approx(okd[(first >= lo) & (first < hi)].input_tokens.sum() / 10.0)
        assert row["request_throughput"] == pytest.approx(len(done) / 10.0)
        assert row["goodput"] == pytest.approx((done.ttft_ms <= 100.0).sum() / 10.0)
        assert row["mean_input_len"] == pytest.approx(mine.input_tokens.mean())
    assert levels.loc[0, "failed"] == 1 and levels.loc[0, "cancelled"] == 0
    assert levels.loc[1, "failed"] == 0 and levels.loc[1, "cancelled"] == 1


def test_achieved_concurrency_is_the_time_average_in_flight():
    df = pd.DataFrame({"start_time": [0.0, 0.0, 5.0], "close_ms": [10000.0, 5000.0, 5000.0],
                       "e2e_ms": [10000.0, 5000.0, 5000.0], "level": [2, 2, 2], "status": ["ok"] * 3,
                       "ttft_ms": [1.0] * 3, "tpot_ms": [1.0] * 3, "itl_ms": [""] * 3,
                       "input_tokens": [1] * 3, "output_tokens": [1] * 3})
    row = level_stats(df, [Window(2, 0.0, 10.0, 0.0)]).iloc[0]
    assert row["achieved_concurrency"] == pytest.approx(2.0)


def test_warmup_excludes_early_requests_from_latency():
    df = pd.DataFrame({"start_time": [0.5, 3.0], "close_ms": [100.0, 100.0], "e2e_ms": [100.0, 100.0],
                       "level": [1, 1], "status": ["ok", "ok"], "ttft_ms": [900.0, 10.0], "tpot_ms": [1.0, 1.0],
                       "itl_ms": ["", ""], "input_tokens": [1, 1], "output_tokens": [1, 1]})
    w = windows_from(df, [{"level": 1, "start": 0.0, "end": 10.0}], warmup_s=2.0)
    row = level_stats(df, w).iloc[0]
    assert row["ttft_max"] == 10.0 and row["window_s"] == 8.0
