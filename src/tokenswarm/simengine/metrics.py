"""The simulated engine's ``/metrics``: vLLM's metric names, rendered by prometheus-client.

Gauges and counters are read from the engine at scrape time (a custom
collector), so the hot path keeps plain integer counters and nothing else.

Latency histograms (:class:`LatencyHistograms`) carry vLLM 0.26's names,
buckets and units (seconds, see vllm/v1/metrics/loggers.py) and its
definitions (vllm/v1/metrics/stats.py), taken from this engine's own
schedule: ``vllm:time_to_first_token_seconds`` is the first token's write
minus the request's arrival (its bytes read), ``vllm:inter_token_latency_seconds``
one observation per later token (the gap since the previous one),
``vllm:e2e_request_latency_seconds`` the last token's write minus the arrival,
``vllm:request_queue_time_seconds`` admission (a free slot) minus the arrival,
``vllm:request_time_per_output_token_seconds`` a finished request's mean
gap. TTFT and ITL are observed as tokens are written; the others when a
request finishes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

# vLLM 0.26's bucket bounds (vllm/v1/metrics/loggers.py), seconds
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
               80.0)
REQUEST_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                   480.0, 960.0, 1920.0, 7680.0)


class Hist:
    """One histogram as plain numbers: per-bucket counts (the last is +Inf) and the sum of observations."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def family(self, name: str, doc: str, model: str) -> HistogramMetricFamily:
        cum, acc = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts):
            acc += n
            cum.append(("+Inf" if bound == float("inf") else repr(bound), acc))
        h = HistogramMetricFamily(name, doc, labels=["model_name"])
        h.add_metric([model], cum, self.total)
        return h


class LatencyHistograms:
    """The engine's own view of its requests' latency, as vLLM's histograms (seconds)."""

    def __init__(self) -> None:
        self.ttft = Hist(TTFT_BUCKETS)
        self.itl = Hist(ITL_BUCKETS)
        self.tpot = Hist(ITL_BUCKETS)
        self.e2e = Hist(REQUEST_BUCKETS)
        self.queue = Hist(REQUEST_BUCKETS)

    def finished(self, arrival: float, admitted: float, first: float, last: float, tokens: int) -> None:
        """A request that wrote all its tokens (times on one clock, seconds)."""
        self.e2e.observe(last - arrival)
        self.queue.observe(max(admitted - arrival, 0.0))
        self.tpot.observe((last - first) / (tokens - 1) if tokens > 1 else 0.0)

    def families(self, model: str) -> Iterator[HistogramMetricFamily]:
        yield self.ttft.family("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                               model)
        yield self.itl.family("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                              model)
        yield self.tpot.family("vllm:request_time_per_output_token_seconds",
                               "Histogram of time_per_output_token_seconds per request.", model)
        yield self.e2e.family("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                              model)
        yield self.queue.family("vllm:request_queue_time_seconds",
                                "Histogram of time spent in WAITING phase for request.", model)


class MetricsSource(Protocol):
    """What ``/metrics`` reads from the engine at scrape time (:class:`~tokenswarm.simengine.handler.SimEngine`
    is one): counts since start, the scheduler's and prefix cache's state, the latency histograms."""

    cfg: Any  # .model: the model_name label
    sched: Any  # .running, .num_waiting, .kv_usage() (0..1)
    prefix_cache: Any  # .prompt_tokens, .hit_tokens
    faults: Any  # .injected: kind -> count
    hist: LatencyHistograms
    requests: int
    finished: int
    errors: int
    cancelled: int
    prompt_tokens: int
    generation_tokens: int


class _EngineCollector(Collector):
    def __init__(self, engine: MetricsSource) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        e = self.engine
        labels = ["model_name"]
        model = [e.cfg.model]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, labels=labels)
            g.add_metric(model, value)
            return g

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily(name, doc, labels=labels)
            c.add_metric(model, value)
            return c

        yield gauge("vllm:num_requests_running", "Number of requests in model execution batches.", e.sched.running)
        yield gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", e.sched.num_waiting)
        usage = e.sched.kv_usage()
        yield gauge("vllm:gpu_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", usage)
        yield gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", usage)
        yield counter("vllm:prompt_tokens", "Number of prefill tokens processed.", e.prompt_tokens)
        yield counter("vllm:generation_tokens", "Number of generation tokens processed.", e.generation_tokens)
        yield counter("vllm:request_success", "Count of successfully processed requests.", e.finished)
        yield counter("vllm:prefix_cache_queries", "Prompt tokens looked up in the prefix cache.",
                      e.prefix_cache.prompt_tokens)
        yield counter("vllm:prefix_cache_hits", "Prompt tokens found in the prefix cache.", e.prefix_cache.hit_tokens)
        yield from e.hist.families(e.cfg.model)
        yield counter("tokenswarm_sim:requests", "Generation requests received.", e.requests)
        yield counter("tokenswarm_sim:requests_cancelled", "Requests whose client went away.", e.cancelled)
        yield counter("tokenswarm_sim:http_errors", "Requests answered with an HTTP error.", e.errors)
        faults = CounterMetricFamily("tokenswarm_sim:faults_injected", "Faults injected, by kind.",
                                     labels=["model_name", "kind"])
        for kind, n in e.faults.injected.items():
            faults.add_metric([e.cfg.model, kind], n)
        yield faults


def render(engine: MetricsSource) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of ``engine``'s metrics now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_EngineCollector(engine))
    return generate_latest(registry)
