"""enginemetrics.parse: engines' gauges, counters and latency histograms mapped to common names."""

import os

import pytest

from tokenswarm import enginemetrics

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "metrics")


def read(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as fh:
        return fh.read()


def test_vllm_026_names_map_to_the_common_columns():
    """Laid out as vLLM 0.26 serves them (names, labels model_name and engine, buckets; values made up)."""
    v = enginemetrics.parse(read("vllm-0.26-synthetic.prom"))
    assert v["running"] == 1024 and v["waiting"] == 37 and v["kv_cache_usage"] == 0.3125
    assert v["prompt_tokens_total"] == 393216 and v["generation_tokens_total"] == 391000
    assert v["engine_ttft_sum_s"] == pytest.approx(9.5) and v["engine_ttft_count"] == 3
    assert v["engine_itl_sum_s"] == pytest.approx(0.20) and v["engine_itl_count"] == 4
    assert v["engine_e2e_sum_s"] == pytest.approx(26.0) and v["engine_e2e_count"] == 2
    assert v["engine_queue_sum_s"] == pytest.approx(2.0) and v["engine_queue_count"] == 2
    assert v["engine_tpot_sum_s"] == pytest.approx(0.10) and v["engine_tpot_count"] == 2
    assert set(v) <= set(enginemetrics.COMMON) | set(enginemetrics.HISTOGRAM_COLUMNS)


def test_histogram_series_are_summed_across_labels():
    text = """# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 2
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 1.5
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 2
vllm:time_to_first_token_seconds_bucket{engine="1",le="+Inf",model_name="m"} 3
vllm:time_to_first_token_seconds_sum{engine="1",model_name="m"} 4.5
vllm:time_to_first_token_seconds_count{engine="1",model_name="m"} 3
"""
    v = enginemetrics.parse(text)
    assert v["engine_ttft_sum_s"] == pytest.approx(6.0) and v["engine_ttft_count"] == 5


def test_a_histogram_without_its_count_is_left_out():
    text = "# TYPE vllm:e2e_request_latency_seconds summary\nvllm:e2e_request_latency_seconds_sum 3.0\n"
    assert "engine_e2e_sum_s" not in enginemetrics.parse(text)


def test_sglang_histograms():
    text = """# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_bucket{model_name="m",le="+Inf"} 4
sglang:time_to_first_token_seconds_sum{model_name="m"} 2.0
sglang:time_to_first_token_seconds_count{model_name="m"} 4
# TYPE sglang:inter_token_latency_seconds histogram
sglang:inter_token_latency_seconds_bucket{model_name="m",le="+Inf"} 100
sglang:inter_token_latency_seconds_sum{model_name="m"} 2.5
sglang:inter_token_latency_seconds_count{model_name="m"} 100
# TYPE sglang:queue_time_seconds histogram
sglang:queue_time_seconds_bucket{model_name="m",le="+Inf"} 4
sglang:queue_time_seconds_sum{model_name="m"} 0.4
sglang:queue_time_seconds_count{model_name="m"} 4
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="m"} 3
"""
    v = enginemetrics.parse(text)
    assert v["running"] == 3
    assert (v["engine_ttft_sum_s"], v["engine_ttft_count"]) == (2.0, 4)
    assert (v["engine_itl_sum_s"], v["engine_itl_count"]) == (2.5, 100)
    assert (v["engine_queue_sum_s"], v["engine_queue_count"]) == (0.4, 4)
    assert "engine_e2e_count" not in v


def test_tgi_summaries_and_llamacpp_counter_pairs():
    tgi = """# TYPE tgi_request_duration summary
tgi_request_duration{quantile="0.5"} 1.0
tgi_request_duration_sum 12.0
tgi_request_duration_count 6
# TYPE tgi_request_mean_time_per_token_duration summary
tgi_request_mean_time_per_token_duration_sum 0.3
tgi_request_mean_time_per_token_duration_count 6
"""
    v = enginemetrics.parse(tgi)
    assert (v["engine_e2e_sum_s"], v["engine_e2e_count"]) == (12.0, 6)
    assert (v["engine_tpot_sum_s"], v["engine_tpot_count"]) == (0.3, 6)
    assert "engine_ttft_count" not in v  # TGI has no TTFT histogram
    llama = """# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 200
# TYPE llamacpp:tokens_predicted_seconds_total counter
llamacpp:tokens_predicted_seconds_total 4.0
"""
    v = enginemetrics.parse(llama)
    assert (v["engine_tpot_sum_s"], v["engine_tpot_count"]) == (4.0, 200)
    assert v["generation_tokens_total"] == 200  # the same counter also feeds the common token total


def test_csv_columns_name_their_units():
    cols = enginemetrics.CSV_COLUMNS
    assert cols[:7] == ("time", "level", *enginemetrics.COMMON)
    hist = [c for c in cols if c.startswith("engine_")]
    assert all(c.endswith(("_sum_s", "_count")) for c in hist) and len(hist) == 2 * len(enginemetrics.HISTOGRAM_NAMES)
    assert {name for name, _ in enginemetrics.HISTOGRAMS} == set(enginemetrics.HISTOGRAM_NAMES)


def test_metrics_are_read_beside_v1_not_under_it():
    # `--host http://h:8000/v1` (the OpenAI clients' base URL): vLLM and SGLang serve /metrics at the root
    assert enginemetrics.metrics_url("http://h:8000/v1", "/metrics") == "http://h:8000/metrics"
    assert enginemetrics.metrics_url("http://h:8000/v1/", "/metrics") == "http://h:8000/metrics"
    assert enginemetrics.metrics_url("http://h:8000", "/metrics") == "http://h:8000/metrics"
    # a gateway's prefix before /v1 stays; another port takes the host alone
    assert enginemetrics.metrics_url("http://gw/team-a/v1", "/metrics") == "http://gw/team-a/metrics"
    assert enginemetrics.metrics_url("http://h:8000/v1", ":8002/metrics") == "http://h:8002/metrics"


def test_engine_names_in_any_case():
    from tokenswarm.presets import UnknownPreset, get_preset

    assert get_preset("vLLM").name == get_preset("VLLM").name == "vllm"
    assert get_preset(" SGLang ").name == "sglang"
    with pytest.raises(UnknownPreset, match="unknown engine 'VLM'"):
        get_preset("VLM")
