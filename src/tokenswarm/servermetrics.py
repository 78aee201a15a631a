"""Engine ``/metrics``: fetch, parse (prometheus-client's parser) and map to common names.

Engines name the same things differently; :data:`MAPPING` turns vLLM, SGLang,
TGI, LMDeploy, llama.cpp and TensorRT-LLM (Triton) names into five common ones:
``running`` and ``waiting`` requests, ``kv_cache_usage`` (0..1),
``prompt_tokens_total`` and ``generation_tokens_total``. Samples taken during a
run go to server_metrics.csv, one row per scrape. Pure: no locust, no gevent.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tokenswarm.client import BadURL, Connection, Target, simple_request

COMMON = ("running", "waiting", "kv_cache_usage", "prompt_tokens_total", "generation_tokens_total")
CSV_COLUMNS = ("time", "level", *COMMON)

# sample name -> (common name, label filter, scale); the first match of each common name wins
MAPPING: tuple[tuple[str, str, dict[str, str], float], ...] = (
    # vLLM (the simulated engine speaks these too)
    ("vllm:num_requests_running", "running", {}, 1.0),
    ("vllm:num_requests_waiting", "waiting", {}, 1.0),
    ("vllm:kv_cache_usage_perc", "kv_cache_usage", {}, 1.0),
    ("vllm:gpu_cache_usage_perc", "kv_cache_usage", {}, 1.0),
    ("vllm:prompt_tokens_total", "prompt_tokens_total", {}, 1.0),
    ("vllm:generation_tokens_total", "generation_tokens_total", {}, 1.0),
    # SGLang (--enable-metrics)
    ("sglang:num_running_reqs", "running", {}, 1.0),
    ("sglang:num_queue_reqs", "waiting", {}, 1.0),
    ("sglang:token_usage", "kv_cache_usage", {}, 1.0),
    ("sglang:prompt_tokens_total", "prompt_tokens_total", {}, 1.0),
    ("sglang:generation_tokens_total", "generation_tokens_total", {}, 1.0),
    # Text Generation Inference
    ("tgi_batch_current_size", "running", {}, 1.0),
    ("tgi_queue_size", "waiting", {}, 1.0),
    ("tgi_request_input_length_sum", "prompt_tokens_total", {}, 1.0),
    ("tgi_request_generated_tokens_sum", "generation_tokens_total", {}, 1.0),
    # LMDeploy (--enable-metrics)
    ("lmdeploy:num_requests_running", "running", {}, 1.0),
    ("lmdeploy:num_requests_waiting", "waiting", {}, 1.0),
    ("lmdeploy:gpu_cache_usage_perc", "kv_cache_usage", {}, 1.0),
    ("lmdeploy:prompt_tokens_total", "prompt_tokens_total", {}, 1.0),
    ("lmdeploy:generation_tokens_total", "generation_tokens_total", {}, 1.0),
    # llama.cpp llama-server (--metrics)
    ("llamacpp:requests_processing", "running", {}, 1.0),
    ("llamacpp:requests_deferred", "waiting", {}, 1.0),
    ("llamacpp:kv_cache_usage_ratio", "kv_cache_usage", {}, 1.0),
    ("llamacpp:prompt_tokens_total", "prompt_tokens_total", {}, 1.0),
    ("llamacpp:tokens_predicted_total", "generation_tokens_total", {}, 1.0),
    # TensorRT-LLM on Triton (:8002/metrics)
    ("nv_trt_llm_request_metrics", "running", {"request_type": "active"}, 1.0),
    ("nv_trt_llm_request_metrics", "waiting", {"request_type": "waiting"}, 1.0),
    ("nv_trt_llm_kv_cache_block_metrics", "kv_cache_usage", {"kv_cache_block_type": "fraction"}, 1.0),
)


def parse(text: str) -> dict[str, float]:
    """Common names -> values from a Prometheus text exposition (labels summed across series)."""
    values: dict[str, float] = {}
    names: dict[str, str] = {}
    wanted = {name for name, *_ in MAPPING}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name not in wanted:
                continue
            for name, common, labels, scale in MAPPING:
                if name != sample.name or any(sample.labels.get(k) != v for k, v in labels.items()):
                    continue
                if common in names and names[common] != name:
                    break  # an earlier alias already gave this common name
                names[common] = name
                values[common] = values.get(common, 0.0) + sample.value * scale
                break
    return values


def metrics_url(base_url: str, path: str) -> str:
    """The metrics URL for a preset's metrics path: ``/metrics`` on the engine's port, ``:8002/metrics`` on another."""
    if path.startswith(":"):
        t = Target.parse(base_url)
        host = f"[{t.host}]" if ":" in t.host else t.host
        return f"{t.scheme}://{host}{path}"
    return base_url.rstrip("/") + path


class Scraper:
    """Fetches and parses one engine's metrics over a kept-alive connection."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> None:
        try:
            self.target = Target.parse(url)
        except BadURL as e:
            raise ValueError(str(e).replace("--host", "--server-metrics")) from None
        self.path = self.target.base_path or "/metrics"
        self.target = self.target._replace(base_path="")
        self.headers = dict(headers or {})
        self.conn = Connection(self.target, timeout, timeout)
        self.url = url

    def scrape(self) -> dict[str, float]:
        """One scrape; raises OSError or ValueError when the engine does not answer with metrics."""
        head, body = simple_request(self.conn, "GET", self.path, headers=self.headers)
        if head.status != 200:
            raise ValueError(f"HTTP {head.status} from {self.url}")
        return parse(body.decode("utf-8", "replace"))

    def close(self) -> None:
        self.conn.close()

