"""report.engine: the engine's histograms per level window, stream framing, vLLM bench results side by side."""

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from tokenswarm import enginemetrics
from tokenswarm.report import engine
from tokenswarm.report.errors import ReportError
from tokenswarm.report.levels import Window

NAN = float("nan")


def scrapes(rows):
    """server_metrics.csv rows: (time, ttft sum s, ttft count, e2e sum s, e2e count)."""
    cols = {c: [NAN] * len(rows) for c in enginemetrics.CSV_COLUMNS}
    cols["time"] = [r[0] for r in rows]
    cols["engine_ttft_sum_s"] = [r[1] for r in rows]
    cols["engine_ttft_count"] = [r[2] for r in rows]
    cols["engine_e2e_sum_s"] = [r[3] for r in rows]
    cols["engine_e2e_count"] = [r[4] for r in rows]
    return pd.DataFrame(cols)


def requests(rows):
    """requests.csv rows: (start_time, status, ttft_ms, e2e_ms, output_tokens, output_events)."""
    return pd.DataFrame(rows, columns=["start_time", "status", "ttft_ms", "e2e_ms", "output_tokens", "output_events"])


def test_histogram_means_are_differences_of_sums_over_counts():
    before = {"engine_ttft_sum_s": 10.0, "engine_ttft_count": 4.0, "engine_e2e_sum_s": 1.0, "engine_e2e_count": 2.0}
    after = {"engine_ttft_sum_s": 16.0, "engine_ttft_count": 7.0, "engine_e2e_sum_s": 0.5, "engine_e2e_count": 1.0}
    m = engine.histogram_means(before, after)
    assert m["engine_ttft_mean_ms"] == pytest.approx(2000.0) and m["engine_ttft_count"] == 3
    assert math.isnan(m["engine_e2e_mean_ms"]) and math.isnan(m["engine_e2e_count"])  # went down: a restart
    assert math.isnan(m["engine_queue_mean_ms"]) and math.isnan(m["engine_queue_count"])  # not in the scrapes
    same = engine.histogram_means(before, before)
    assert same["engine_ttft_count"] == 0 and math.isnan(same["engine_ttft_mean_ms"])


def test_engine_levels_pairs_the_nearest_scrapes_with_the_same_client_population():
    server = scrapes([(99.0, 0.0, 0, 0.0, 0), (100.2, 1.0, 2, 3.0, 1), (105.0, 2.0, 4, 5.0, 2),
                      (110.1, 4.0, 8, 13.0, 4), (112.0, 4.0, 8, 13.0, 4)])
    df = requests([
        (100.0, "ok", 100.0, 900.0, 10, 10),  # first token 100.1: before the first scrape (100.2); last 100.9 in
        (101.0, "ok", 300.0, 1000.0, 10, 10),  # first 101.3, last 102.0: counted
        (102.0, "ok", 500.0, 9000.0, 10, 1),  # first 102.5 counted; last 111.0 after the last scrape (110.1)
        (103.0, "http_error", NAN, NAN, 0, 0),  # no first token: in no population
        # cancelled after its first token (103.9): the engine's TTFT histogram has it, so the client's mean too
        # (a sweep cut at 2048 streams on SGLang read -267 ms outside the engine without it, +82 ms with it)
        (103.5, "cancelled", 400.0, NAN, 3, 3),
        (104.0, "ok", 700.0, 2000.0, 2, 2),  # two tokens in two events: not coalesced (too short)
    ])
    out = engine.engine_levels(server, df, [Window(4, 100.0, 110.0, 90.0)])
    assert list(out.columns) == list(engine.ENGINE_COLUMNS)
    r = out.iloc[0]
    assert (r.engine_from, r.engine_to) == (100.2, 110.1)
    assert r.engine_ttft_mean_ms == pytest.approx(3.0 / 6 * 1000) and r.engine_ttft_count == 6
    assert r.engine_e2e_mean_ms == pytest.approx(10.0 / 3 * 1000) and r.engine_e2e_count == 3
    assert r.client_ttft_count == 4 and r.client_ttft_mean_ms == pytest.approx(475.0)  # 300, 500, 700, 400
    assert r.client_e2e_count == 3 and r.client_e2e_mean_ms == pytest.approx(1300.0)  # 900, 1000, 2000: ok ones
    assert r.outside_engine_ttft_ms == pytest.approx(475.0 - 500.0)
    assert r.outside_engine_e2e_ms == pytest.approx(1300.0 - 10000.0 / 3)
    # framing over the level's sample (ok requests started in [100, 110)): events 10, 10, 1, 2
    assert r.output_events_mean == pytest.approx(23 / 4)
    assert r.output_tokens_per_event == pytest.approx(32 / 23)
    assert r.coalesced_requests == 1 and r.coalesced_pct == pytest.approx(100 / 3)
    assert math.isnan(r.engine_queue_mean_ms)  # the engine had no queue histogram


def test_a_window_without_a_scrape_near_its_edge_gets_no_engine_figures():
    server = scrapes([(100.0, 0.0, 0, 0.0, 0), (101.0, 1.0, 1, 1.0, 1)])
    df = requests([(130.0, "ok", 10.0, 20.0, 5, 1)])
    out = engine.engine_levels(server, df, [Window(1, 130.0, 140.0, 125.0)], tolerance_s=5.0)
    r = out.iloc[0]
    assert math.isnan(r.engine_from) and math.isnan(r.engine_ttft_mean_ms) and math.isnan(r.client_ttft_mean_ms)
    assert r.output_events_mean == 1 and r.coalesced_pct == 100.0  # framing needs no scrapes
    none = engine.engine_levels(None, df, [Window(1, 130.0, 140.0, 125.0)])
    assert math.isnan(none.iloc[0].engine_ttft_count) and none.iloc[0].coalesced_requests == 1


def test_read_server_metrics_names_a_bad_cell(tmp_path):
    p = tmp_path / "server_metrics.csv"
    p.write_text("time,level,engine_ttft_sum_s,engine_ttft_count\n1.0,4,0.5,1\n2.0,4,oops,2\n")
    with pytest.raises(ReportError, match=r"server_metrics.csv: column 'engine_ttft_sum_s', data row 2: 'oops'"):
        engine.read_server_metrics(str(p))
    p.write_text("level\n4\n")
    with pytest.raises(ReportError, match="column 'time' is missing"):
        engine.read_server_metrics(str(p))
    assert engine.read_server_metrics(str(tmp_path / "absent.csv")) is None


def bench_result(c, **extra):
    """The fields `vllm bench serve --save-result` writes (vllm/benchmarks/serve.py, vLLM 0.26)."""
    r = {"date": "20261130-120000", "endpoint_type": "openai-chat", "backend": "openai-chat", "label": None,
         "model_id": "/tmp/model", "tokenizer_id": "/tmp/model", "num_prompts": 3 * c, "request_rate": "inf",
         "burstiness": 1.0, "max_concurrency": c, "duration": 40.5, "completed": 3 * c, "failed": 0,
         "total_input_tokens": 384 * c, "total_output_tokens": 384 * c, "request_throughput": 75.8,
         "request_goodput": None, "output_throughput": 9700.5, "total_token_throughput": 19401.0,
         "max_output_tokens_per_s": 11000.0, "max_concurrent_requests": c + c // 3, "rtfx": 0.0,
         "mean_ttft_ms": 3599.0, "median_ttft_ms": 3500.0, "std_ttft_ms": 900.0, "p99_ttft_ms": 6000.0,
         "mean_tpot_ms": 75.8, "median_tpot_ms": 75.0, "std_tpot_ms": 5.0, "p99_tpot_ms": 90.0,
         "mean_itl_ms": 75.0, "median_itl_ms": 60.0, "std_itl_ms": 30.0, "p99_itl_ms": 300.0,
         "mean_e2el_ms": 13510.0, "median_e2el_ms": 13400.0, "std_e2el_ms": 800.0, "p99_e2el_ms": 16000.0}
    r.update(extra)
    return r


def prom(ttft_sum, ttft_count):
    return (f"# TYPE vllm:time_to_first_token_seconds histogram\n"
            f"vllm:time_to_first_token_seconds_bucket{{le=\"+Inf\",model_name=\"m\"}} {ttft_count}\n"
            f"vllm:time_to_first_token_seconds_sum{{model_name=\"m\"}} {ttft_sum}\n"
            f"vllm:time_to_first_token_seconds_count{{model_name=\"m\"}} {ttft_count}\n")


def test_read_vllm_bench_renames_fields_and_adds_framing_and_the_engine(tmp_path):
    detailed = bench_result(2, itls=[[0.01] * 127, [0.5], [0.02] * 3], output_lens=[128, 128, 1],
                            errors=["", "", ""])
    (tmp_path / "vllm-bench-c2.json").write_text(json.dumps(detailed))
    (tmp_path / "vllm-bench-c1024.json").write_text(json.dumps(bench_result(1024)))
    (tmp_path / "vllm-bench-c1024.metrics-before.prom").write_text(prom(100.0, 10))
    (tmp_path / "vllm-bench-c1024.metrics-after.prom").write_text(prom(100.0 + 3.090 * 3072, 10 + 3072))
    (tmp_path / "vllm-bench-notes.json").write_text("{}")  # not a result: ignored
    b = engine.read_vllm_bench(str(tmp_path))
    assert list(b.concurrency) == [2.0, 1024.0]
    small, big = b.iloc[0], b.iloc[1]
    assert big.bench_ttft_mean_ms == 3599.0 and big.bench_e2e_p50_ms == 13400.0 and big.bench_tpot_p99_ms == 90.0
    assert big.bench_output_throughput_tok_s == 9700.5 and big.bench_max_concurrent_requests == 1365
    assert big.bench_engine_ttft_mean_ms == pytest.approx(3090.0) and big.bench_engine_ttft_count == 3072
    assert big.bench_outside_engine_ttft_ms == pytest.approx(509.0)
    assert math.isnan(big.bench_output_events_mean)  # not --save-detailed
    assert small.bench_output_events_mean == pytest.approx((127 + 1 + 3) / 3)
    assert small.bench_coalesced_pct == pytest.approx(50.0)  # of the two 128-token streams, one came in 1 event
    assert math.isnan(small.bench_engine_ttft_mean_ms)


def test_read_vllm_bench_errors_name_the_file(tmp_path):
    (tmp_path / "vllm-bench-c8.json").write_text(json.dumps(bench_result(16)))
    with pytest.raises(ReportError, match=r"vllm-bench-c8.json: max_concurrency = 16, expected 8"):
        engine.read_vllm_bench(str(tmp_path))
    (tmp_path / "vllm-bench-c8.json").write_text("{not json")
    with pytest.raises(ReportError, match="vllm-bench-c8.json: cannot read vLLM bench result"):
        engine.read_vllm_bench(str(tmp_path))
    empty = engine.read_vllm_bench(str(tmp_path / "none"))
    assert empty.empty and "bench_ttft_mean_ms" in empty.columns


def test_opinions_table_joins_the_three_on_the_level(tmp_path):
    server = scrapes([(100.0, 0.0, 0, 0.0, 0), (110.0, 5.0, 10, 20.0, 10)])
    df = requests([(101.0, "ok", 600.0, 2000.0, 8, 8)])
    eng = engine.engine_levels(server, df, [Window(1024, 100.0, 110.0, 95.0)])
    (tmp_path / "vllm-bench-c1024.json").write_text(json.dumps(bench_result(1024)))
    (tmp_path / "vllm-bench-c2048.json").write_text(json.dumps(bench_result(2048)))
    levels = pd.DataFrame({"level": [1024], "ttft_mean_ms": [610.0], "e2e_mean_ms": [2010.0],
                           "output_throughput_tok_s": [9.0]})
    t = engine.opinions_table(eng, engine.read_vllm_bench(str(tmp_path)), levels)
    assert list(t.level) == [1024.0, 2048.0]
    row = t.iloc[0]
    assert row.client_ttft_mean_ms == 600.0 and row.engine_ttft_mean_ms == 500.0 and row.level_ttft_mean_ms == 610.0
    assert row.bench_ttft_mean_ms == 3599.0
    assert np.isnan(t.iloc[1].engine_ttft_mean_ms) and t.iloc[1].bench_ttft_mean_ms == 3599.0


def test_a_recorded_vllm_bench_result_and_the_engine_scrapes_around_it():
    """tests/fixtures/vllm_bench: `vllm bench serve` (vLLM 0.26.0, --save-result --save-detailed, 12 prompts at
    --max-concurrency 4, 128 tokens each) against the simulated engine, with its /metrics before and after
    (deploy/gpu/vllm/sweep.sh's bench step)."""
    folder = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "vllm_bench")
    with open(os.path.join(folder, "vllm-bench-c4.json"), encoding="utf-8") as fh:
        raw = json.load(fh)
    r = engine.read_vllm_bench(folder).iloc[0]
    assert r.concurrency == 4 and r.bench_completed == raw["completed"] == 12
    assert r.bench_ttft_mean_ms == raw["mean_ttft_ms"] and r.bench_e2e_p99_ms == raw["p99_e2el_ms"]
    assert r.bench_output_throughput_tok_s == raw["output_throughput"]
    assert r.bench_max_concurrent_requests == 8  # twice --max-concurrency: its per-second bucket count
    assert r.bench_output_events_mean == 128 and r.bench_coalesced_pct == 0
    assert r.bench_engine_ttft_count == 12 and r.bench_engine_itl_count == 12 * 127
    # the simulated engine writes the role chunk at once, which vLLM bench takes for the first token
    # (vLLM sends it with the first token): bench TTFT below the engine's
    assert r.bench_ttft_mean_ms < r.bench_engine_ttft_mean_ms
    assert r.bench_engine_e2e_mean_ms == pytest.approx(r.bench_e2e_mean_ms, rel=0.02)


def sglang_result(c, ttft=420.5):
    """One line of SGLang bench_serving's --output-file (python/sglang/bench_serving.py's result dict)."""
    return {"backend": "sglang-oai-chat", "dataset_name": "random-ids", "request_rate": float("inf"),
            "max_concurrency": c, "random_input_len": 128, "random_output_len": 128, "random_range_ratio": 1.0,
            "duration": 9.81, "completed": 3 * c, "total_input_tokens": 384 * c, "total_output_tokens": 384 * c,
            "request_throughput": 78.3, "input_throughput": 10022.4, "output_throughput": 10022.4,
            "mean_e2e_latency_ms": 3210.0, "median_e2e_latency_ms": 3190.0, "std_e2e_latency_ms": 40.0,
            "p99_e2e_latency_ms": 3400.0, "mean_ttft_ms": ttft, "median_ttft_ms": 401.0, "std_ttft_ms": 30.0,
            "p99_ttft_ms": 690.0, "mean_tpot_ms": 21.9, "median_tpot_ms": 21.8, "std_tpot_ms": 0.4,
            "p99_tpot_ms": 23.0, "mean_itl_ms": 21.9, "median_itl_ms": 20.1, "std_itl_ms": 9.0, "p99_itl_ms": 60.0,
            "concurrency": 251.7}


def sglang_prom(ttft_sum, ttft_count):
    return (f"# TYPE sglang:time_to_first_token_seconds histogram\n"
            f"sglang:time_to_first_token_seconds_bucket{{le=\"+Inf\",is_streaming=\"true\"}} {ttft_count}\n"
            f"sglang:time_to_first_token_seconds_sum{{is_streaming=\"true\"}} {ttft_sum}\n"
            f"sglang:time_to_first_token_seconds_count{{is_streaming=\"true\"}} {ttft_count}\n")


def test_read_sglang_bench_takes_the_last_run_under_the_same_names(tmp_path):
    lines = [json.dumps(sglang_result(256, ttft=999.0)), json.dumps(sglang_result(256))]
    (tmp_path / "sglang-bench-c256.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "sglang-bench-c256.metrics-before.prom").write_text(sglang_prom(10.0, 10))
    (tmp_path / "sglang-bench-c256.metrics-after.prom").write_text(sglang_prom(10.0 + 0.4 * 768, 10 + 768))
    (tmp_path / "sglang-bench-c4.jsonl").write_text(json.dumps(sglang_result(4)) + "\n")
    b = engine.read_sglang_bench(str(tmp_path))
    assert list(b.concurrency) == [4.0, 256.0]
    r = b.iloc[1]
    assert r.bench_ttft_mean_ms == 420.5 and r.bench_ttft_p50_ms == 401.0 and r.bench_e2e_p99_ms == 3400.0
    assert r.bench_output_throughput_tok_s == 10022.4 and r.bench_completed == 768
    assert r.bench_mean_concurrency == 251.7 and "bench_max_concurrent_requests" not in b.columns
    assert r.bench_engine_ttft_mean_ms == pytest.approx(400.0) and r.bench_outside_engine_ttft_ms == pytest.approx(20.5)


def test_read_sglang_bench_errors_name_the_file(tmp_path):
    (tmp_path / "sglang-bench-c8.jsonl").write_text(json.dumps(sglang_result(16)) + "\n")
    with pytest.raises(ReportError, match=r"sglang-bench-c8.jsonl: max_concurrency = 16, expected 8"):
        engine.read_sglang_bench(str(tmp_path))
    (tmp_path / "sglang-bench-c8.jsonl").write_text("[1, 2]\n")
    with pytest.raises(ReportError, match=r"sglang-bench-c8.jsonl: the last line is not a JSON object"):
        engine.read_sglang_bench(str(tmp_path))
    (tmp_path / "sglang-bench-c8.jsonl").write_text("{oops\n")
    with pytest.raises(ReportError, match=r"sglang-bench-c8.jsonl: cannot read SGLang bench result"):
        engine.read_sglang_bench(str(tmp_path))


def test_read_peer_bench_names_the_tool_and_prefers_vllms_where_both_ran(tmp_path):
    (tmp_path / "vllm-bench-c2.json").write_text(json.dumps(bench_result(2)))
    (tmp_path / "sglang-bench-c2.jsonl").write_text(json.dumps(sglang_result(2)) + "\n")
    (tmp_path / "sglang-bench-c8.jsonl").write_text(json.dumps(sglang_result(8)) + "\n")
    b = engine.read_peer_bench(str(tmp_path))
    assert list(zip(b.concurrency, b.bench_tool)) == [(2.0, "vllm"), (8.0, "sglang")]
    assert engine.read_peer_bench(str(tmp_path / "none")).empty
