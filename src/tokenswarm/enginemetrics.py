"""Engine ``/metrics``: fetch, parse (prometheus-client's parser) and map to common names.

Engines name the same things differently; :data:`MAPPING` turns vLLM, SGLang,
TGI, LMDeploy, llama.cpp and TensorRT-LLM (Triton) names into five common ones:
``running`` and ``waiting`` requests, ``kv_cache_usage`` (0..1),
``prompt_tokens_total`` and ``generation_tokens_total``.

:data:`HISTOGRAMS` does the same for the engine's own latency histograms (the
engine's *opinion* of a level): each common name (``engine_ttft``,
``engine_e2e``, ``engine_queue``, ``engine_itl``, ``engine_tpot``) gets the
running ``_sum`` (seconds) and ``_count`` of the engine's histogram, as columns
``engine_ttft_sum_s`` and ``engine_ttft_count``. Differences of two scrapes give
the mean over what the engine observed between them
(:mod:`tokenswarm.report.engine`). Samples taken during a run go to
server_metrics.csv, one row per scrape. Pure: no locust, no gevent.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tokenswarm.http.plain import PlainClient
from tokenswarm.http.target import Target

COMMON = ("running", "waiting", "kv_cache_usage", "prompt_tokens_total", "generation_tokens_total")

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

#: the engine's latency histograms, by common name: what each measures (all in seconds)
HISTOGRAM_NAMES: dict[str, str] = {
    "engine_ttft": "time to first token: request arrival at the server to its first token",
    "engine_e2e": "request latency: arrival to the last token",
    "engine_queue": "time waiting for the scheduler (queued to first scheduled)",
    "engine_itl": "inter-token latency: one observation per token (or output) after the first",
    "engine_tpot": "per-request mean time per output token after the first",
}

# common name -> (histogram or summary family, or a pair of counters "SUM|COUNT"); the first that a scrape
# has wins. Families are read as FAMILY_sum / FAMILY_count (labels summed across series).
HISTOGRAMS: tuple[tuple[str, str], ...] = (
    # vLLM 0.26: defined in vllm/v1/metrics/loggers.py (PrometheusStatLogger), observed from
    # vllm/v1/metrics/stats.py: TTFT and E2E are the frontend's output-processing time minus the request's
    # arrival_time; ITL is one observation per engine-core output after the first; queue is
    # scheduled_ts - queued_ts inside the engine core. Labels: model_name, engine. Also the simulated engine's.
    ("engine_ttft", "vllm:time_to_first_token_seconds"),
    ("engine_e2e", "vllm:e2e_request_latency_seconds"),
    ("engine_queue", "vllm:request_queue_time_seconds"),
    ("engine_itl", "vllm:inter_token_latency_seconds"),
    ("engine_tpot", "vllm:request_time_per_output_token_seconds"),
    # SGLang (--enable-metrics): python/sglang/srt/observability/metrics_collector.py (formerly
    # srt/metrics/collector.py). TTFT, ITL and E2E come from the tokenizer manager (TokenizerMetricsCollector),
    # the queue time from the scheduler. Its ITL histogram adds a whole output's interval to _sum and counts
    # one observation per token, so _sum/_count is the mean time per token, as vLLM's.
    ("engine_ttft", "sglang:time_to_first_token_seconds"),
    ("engine_e2e", "sglang:e2e_request_latency_seconds"),
    ("engine_queue", "sglang:queue_time_seconds"),
    ("engine_itl", "sglang:inter_token_latency_seconds"),
    # Text Generation Inference: router/src/server.rs (generate_internal, generate_stream) records these at
    # a request's end. TGI has no time-to-first-token histogram.
    ("engine_e2e", "tgi_request_duration"),
    ("engine_queue", "tgi_request_queue_duration"),
    ("engine_tpot", "tgi_request_mean_time_per_token_duration"),
    # llama.cpp llama-server (--metrics): no histograms. tools/server/server-task.cpp exports two counters that
    # each finished slot adds its generation time and generated tokens to (server-context.cpp,
    # metrics_on_prediction): their ratio is the mean generation time per token.
    ("engine_tpot", "llamacpp:tokens_predicted_seconds_total|llamacpp:tokens_predicted_total"),
)
HISTOGRAM_COLUMNS: tuple[str, ...] = tuple(c for name in HISTOGRAM_NAMES for c in (f"{name}_sum_s", f"{name}_count"))
# a larger metrics page is refused: parsing takes about 0.1 s of CPU a MiB (a vLLM page is 15-100 KiB)
MAX_SCRAPE_BYTES = 4 * 1024 * 1024
CSV_COLUMNS = ("time", "level", *COMMON, *HISTOGRAM_COLUMNS, "scrape_ms", "edge_time")


def _histogram_samples() -> dict[str, tuple[str, str, int]]:
    """sample name -> (common name, source family, 0 for the sum or 1 for the count)."""
    out: dict[str, tuple[str, str, int]] = {}
    for common, family in HISTOGRAMS:
        total, count = family.split("|") if "|" in family else (family + "_sum", family + "_count")
        out[total] = (common, family, 0)
        out[count] = (common, family, 1)
    return out


_HIST_SAMPLES = _histogram_samples()
_WANTED = {name for name, *_ in MAPPING}


def parse(text: str) -> dict[str, float]:
    """Common names -> values from a Prometheus text exposition (labels summed across series).

    Gauges and counters come under their :data:`COMMON` names; each engine histogram under
    ``<name>_sum_s`` and ``<name>_count`` (:data:`HISTOGRAM_COLUMNS`), present only when the scrape had
    both its sum and its count.
    """
    values: dict[str, float] = {}
    names: dict[str, str] = {}
    hist: dict[tuple[str, str], list[float]] = {}  # (common, family) -> [sum, count, has sum, has count]
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            h = _HIST_SAMPLES.get(sample.name)
            if h is not None:
                acc = hist.setdefault(h[:2], [0.0, 0.0, 0.0, 0.0])
                acc[h[2]] += sample.value
                acc[h[2] + 2] = 1.0
            if sample.name not in _WANTED:
                continue
            for name, common, labels, scale in MAPPING:
                if name != sample.name or any(sample.labels.get(k) != v for k, v in labels.items()):
                    continue
                if common in names and names[common] != name:
                    break  # an earlier alias already gave this common name
                names[common] = name
                values[common] = values.get(common, 0.0) + sample.value * scale
                break
    seen: set[str] = set()
    for common, family in HISTOGRAMS:  # the first family a scrape has wins
        acc = hist.get((common, family))
        if common in seen or acc is None or not (acc[2] and acc[3]):
            continue
        seen.add(common)
        values[f"{common}_sum_s"], values[f"{common}_count"] = acc[0], acc[1]
    return values


def metrics_url(base_url: str, path: str) -> str:
    """The metrics URL for a preset's metrics path: ``/metrics`` on the engine's port, ``:8002/metrics`` on another.

    Engines serve ``/metrics`` beside ``/v1``, not under it: a base URL written the OpenAI clients' way
    (``http://h:8000/v1``) reads ``http://h:8000/metrics``; a prefix before ``/v1`` (a gateway's route) stays."""
    if path.startswith(":"):
        t = Target.parse(base_url)
        host = f"[{t.host}]" if ":" in t.host else t.host
        return f"{t.scheme}://{host}{path}"
    base = base_url.rstrip("/")
    if base.endswith("/v1") and "://" in base and "/" in base.split("://", 1)[1]:
        base = base[: -len("/v1")]
    return base + path


class Scraper:
    """Fetches and parses one engine's metrics over a kept-alive connection (:class:`PlainClient`).

    ``url`` is the metrics URL (:func:`metrics_url`); raises :class:`~tokenswarm.http.target.BadURL` (a
    ValueError) when it is not one. ``timeout`` (seconds) bounds the connection and each read.
    """

    def __init__(self, url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> None:
        target = Target.parse(url)
        self.url = target._replace(base_path="").url(target.base_path or "/metrics")  # no userinfo, no query
        self.timeout = timeout
        self.client = PlainClient(timeout, timeout, headers, max_body_bytes=MAX_SCRAPE_BYTES)

    def scrape(self) -> dict[str, float]:
        """One scrape: :func:`parse` of the page. Raises OSError (no answer:
        :class:`~tokenswarm.http.plain.FetchError`) or ValueError (an answer other than 200, or not a
        Prometheus text exposition)."""
        reply = self.client.get(self.url)
        if reply.status != 200:
            raise ValueError(f"HTTP {reply.status} from {self.url}")
        return parse(reply.body.decode("utf-8", "replace"))

    def close(self) -> None:
        """Drop the kept-alive connection; the next scrape connects again."""
        self.client.close()
