"""The simulated engine's ``/metrics``: vLLM's metric names, rendered by prometheus-client.

Gauges and counters are read from the engine at scrape time (a custom
collector), so the hot path keeps plain integer counters and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from tokenswarm.simengine.server import SimEngine


class _EngineCollector(Collector):
    def __init__(self, engine: SimEngine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
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
        yield counter("tokenswarm_sim:requests", "Generation requests received.", e.requests)
        yield counter("tokenswarm_sim:requests_cancelled", "Requests whose client went away.", e.cancelled)
        yield counter("tokenswarm_sim:http_errors", "Requests answered with an HTTP error.", e.errors)
        faults = CounterMetricFamily("tokenswarm_sim:faults_injected", "Faults injected, by kind.",
                                     labels=["model_name", "kind"])
        for kind, n in e.faults.injected.items():
            faults.add_metric([e.cfg.model, kind], n)
        yield faults


def render(engine: SimEngine) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_EngineCollector(engine))
    return generate_latest(registry)
