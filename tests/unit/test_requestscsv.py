"""requests.csv rows and the exact per-level statistics, checked by hand with numpy."""

import csv

import numpy as np
import pandas as pd
import pytest

from tokenswarm.measure import RequestRecord
from tokenswarm.report.errors import ReportError
from tokenswarm.report.levels import (
    Window,
    check_slo,
    late_threshold_ms,
    level_stats,
    load_requests,
    parse_itl,
    windows_from,
)
from tokenswarm.requestscsv import COLUMNS, RequestsWriter, to_row

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
        assert row["ttft_mean_ms"] == pytest.approx(ttft.mean())
        for p_ in (50, 90, 95, 99, 99.9):
            key = "ttft_p" + f"{p_:g}".replace(".", "") + "_ms"
            assert row[key] == pytest.approx(np.percentile(ttft, p_))
        itl = np.concatenate([np.array(s.split(), float) for s in mine["itl_ms"]])
        assert row["itl_p99_ms"] == pytest.approx(np.percentile(itl, 99))
        assert row["tpot_p50_ms"] == pytest.approx(np.percentile(mine["tpot_ms"], 50))
        lo, hi = (100.0, 110.0) if lvl == 1 else (110.0, 120.0)
        okd = df[df.status == "ok"]
        end = okd.start_time + okd.e2e_ms / 1000
        first = okd.start_time + okd.ttft_ms / 1000
        # every rate: each ok request weighted by the share of its span, first .. last token, in the window
        weight = np.array([max(0.0, min(e, hi) - max(f, lo)) / (e - f) for f, e in zip(first, end)])
        assert row["output_throughput_tok_s"] == pytest.approx((weight * okd.output_tokens).sum() / 10.0)
        assert row["input_throughput_tok_s"] == pytest.approx((weight * okd.input_tokens).sum() / 10.0)
        assert row["request_throughput_req_s"] == pytest.approx(weight.sum() / 10.0)
        assert row["goodput_req_s"] == pytest.approx(weight[(okd.ttft_ms <= 100.0).to_numpy()].sum() / 10.0)
        assert row["mean_input_tokens"] == pytest.approx(mine.input_tokens.mean())
        judged = df[(df.level == lvl) & (df.status != "cancelled")]  # failures count against attainment
        attained = ((judged.status == "ok") & (judged.ttft_ms <= 100.0)).sum() / len(judged)
        assert row["slo_attainment_pct"] == pytest.approx(100 * attained)
        assert row["meets_slo"] is False  # level 1 had a failure; level 2 has slow requests
        assert row["target"] == lvl and row["under_target"] == (row["achieved_concurrency"] < 0.95 * lvl)
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
    # the level's load starts at its first send (0.5), the warm-up runs from there
    assert row["ttft_max_ms"] == 10.0 and row["window_s"] == 10.0 - 0.5 - 2.0


def first(levels: pd.DataFrame) -> dict:
    """The first row with Python values (bools stay bools, None stays None)."""
    return levels.to_dict("records")[0]


def _frame(rows, **extra):
    """A requests DataFrame from (start, level, status, ttft, tpot, e2e, itl) tuples."""
    cols = ("start_time", "level", "status", "ttft_ms", "tpot_ms", "e2e_ms", "itl_ms")
    df = pd.DataFrame(rows, columns=cols)
    df["close_ms"] = df["e2e_ms"].fillna(1.0)
    df["input_tokens"] = 10
    df["output_tokens"] = [len(i.split()) + 1 if i else 1 for i in df["itl_ms"]]
    for k, v in extra.items():
        df[k] = v
    return df


def test_slo_attainment_goodput_and_meets_slo_follow_every_limit():
    rows = [
        (0.0, 4, "ok", 100.0, 10.0, 500.0, "10 10 10"),   # meets all
        (0.1, 4, "ok", 300.0, 10.0, 700.0, "10 10 10"),   # TTFT too slow
        (0.2, 4, "ok", 100.0, 30.0, 900.0, "30 30 30"),   # TPOT too slow
        (0.3, 4, "ok", 100.0, np.nan, 100.0, ""),         # one token: no TPOT or ITL, unjudged by those limits
        (0.4, 4, "ok", 100.0, 12.0, 500.0, "5 5 80"),     # one gap over the ITL limit
        (0.5, 4, "cancelled", np.nan, np.nan, np.nan, ""),  # not judged
    ]
    df = _frame(rows)
    w = [Window(4, 0.0, 10.0, 0.0)]
    row = first(level_stats(df, w, slo={"ttft": 200, "tpot": 20}))
    assert row["slo_attainment_pct"] == pytest.approx(100 * 2 / 4) and row["slo_unjudged"] == 1
    assert row["goodput_req_s"] == pytest.approx(2 / 10.0)
    assert row["meets_slo"] is False
    row = first(level_stats(df, w, slo={"ttft": 200, "tpot": 20, "itl": 50}))
    assert row["slo_attainment_pct"] == pytest.approx(100 * 1 / 4)
    lenient = first(level_stats(df, w, slo={"ttft": 1000, "tpot": 100}, slo_attainment=0.99))
    assert lenient["slo_attainment_pct"] == 100.0 and lenient["meets_slo"] is True
    # without a TPOT or ITL limit the one-token request is judged like any other
    row = first(level_stats(df, w, slo={"ttft": 200}))
    assert row["slo_attainment_pct"] == pytest.approx(100 * 4 / 5) and row["slo_unjudged"] == 0
    # the attainment threshold is a parameter; one failure fails the level whatever the attainment
    assert first(level_stats(df, w, slo={"ttft": 200}, slo_attainment=0.75))["meets_slo"] is True
    failed = pd.concat([df, _frame([(0.6, 4, "timeout", np.nan, np.nan, np.nan, "")])], ignore_index=True)
    row = first(level_stats(failed, w, slo={"ttft": 1000, "tpot": 100}))
    # the one-token request is unjudged: 4 of the 5 judged meet the limits
    assert row["slo_attainment_pct"] == pytest.approx(100 * 4 / 5) and row["meets_slo"] is False
    none = first(level_stats(df, w))
    assert np.isnan(none["goodput_req_s"]) and np.isnan(none["slo_attainment_pct"]) and none["meets_slo"] is None


@pytest.mark.parametrize("slo, message", [({"ttfb": 10}, "unknown SLO 'ttfb'"), ({"ttft": "fast"}, "ttft = 'fast'"),
                                          ({"tpot": -1}, "must be a positive")])
def test_bad_slos_name_the_field_and_value(slo, message):
    with pytest.raises(ReportError, match=message):
        check_slo(slo)


def test_rate_levels_report_send_lag_and_flag_late_ones():
    # rate 10 req/s: inter-arrival 100 ms, so the late threshold is 10 + 5 ms = 15 ms
    sched = 100.0 + np.arange(100) / 10.0
    lag_ms = np.r_[np.full(95, 1.0), np.full(5, 40.0)]
    df = _frame([(s + lag / 1000, 10, "ok", 50.0, 5.0, 100.0, "5 5") for s, lag in zip(sched, lag_ms)],
                scheduled_time=sched)
    row = first(level_stats(df, [Window(10, 100.0, 110.0, 100.0)], mode="rate"))
    lag = (df.start_time - df.scheduled_time).to_numpy() * 1000
    assert row["send_lag_p50_ms"] == pytest.approx(np.percentile(lag, 50))
    assert row["send_lag_p99_ms"] == pytest.approx(np.percentile(lag, 99))
    assert row["late_threshold_ms"] == pytest.approx(15.0) == late_threshold_ms(10)
    assert row["late"] is True and "under_target" not in row
    on_time = df.assign(start_time=sched + 0.001)
    assert first(level_stats(on_time, [Window(10, 100.0, 110.0, 100.0)], mode="rate"))["late"] is False
    assert late_threshold_ms(0.5) == pytest.approx(10 + 0.05 * 2000)


def test_a_closed_loop_level_holding_too_few_in_flight_is_under_target():
    df = pd.DataFrame({"start_time": [0.0, 0.0, 0.0], "close_ms": [10000.0] * 3, "e2e_ms": [10000.0] * 3,
                       "level": [4, 4, 4], "status": ["ok"] * 3, "ttft_ms": [1.0] * 3, "tpot_ms": [1.0] * 3,
                       "itl_ms": [""] * 3, "input_tokens": [1] * 3, "output_tokens": [1] * 3})
    row = first(level_stats(df, [Window(4, 0.0, 10.0, 0.0)]))
    assert row["achieved_concurrency"] == pytest.approx(3.0) and row["under_target"] is True  # 3 < 0.95 * 4
    df4 = pd.concat([df, df.iloc[:1]], ignore_index=True)
    assert first(level_stats(df4, [Window(4, 0.0, 10.0, 0.0)]))["under_target"] is False


def test_itl_parsing_matches_a_plain_split_and_names_a_bad_cell():
    rng = np.random.default_rng(3)
    cells = [" ".join("%.3f" % x for x in rng.uniform(0, 100, rng.integers(0, 9))) for _ in range(500)]
    values, counts = parse_itl(cells + [None, ""])
    expect = [float(x) for c in cells for x in c.split()]
    assert values.tolist() == expect
    assert counts.tolist() == [len(c.split()) for c in cells] + [0, 0]
    odd, odd_counts = parse_itl(["1.5  2.5", " 4", "3"])  # stray spaces: the careful path
    assert odd.tolist() == [1.5, 2.5, 4.0, 3.0] and odd_counts.tolist() == [2, 1, 1]
    with pytest.raises(ReportError, match=r"data row 2: '7,5' is not a number"):
        parse_itl(["1 2", "3 7,5"])


def test_load_requests_names_the_file_column_and_value(tmp_path):
    p = tmp_path / "requests.csv"
    p.write_text("start_time,level,status,ttft_ms\n1.0,2,ok,12.5\n2.0,2,ok,fast\n")
    with pytest.raises(ReportError, match=r"requests.csv: column 'ttft_ms', data row 2: 'fast' is not a number"):
        load_requests(str(p))
    p.write_text("start_time,status\n1.0,ok\n")
    with pytest.raises(ReportError, match="column 'level' is missing"):
        load_requests(str(p))
