"""Non-streamed APIs: ``/v1/embeddings`` (OpenAI's shape) and rerank (the Cohere/Jina shape vLLM, TEI's
``/rerank`` routers, Infinity and most gateways serve: ``{"model", "query", "documents", "top_n"}``).

Each request carries ``--batch-size`` inputs (embeddings' ``input`` list, rerank's documents), built from that
many prompts of the run's dataset (:attr:`~tokenswarm.datasets.Prompt.batch`). The answer is one JSON body:
its figure is the latency (E2E, when its last byte arrived); TTFT, TPOT and ITL are not figures of it, and
output tokens are 0. Input tokens come from ``usage`` (embeddings: ``usage.prompt_tokens``; rerank:
``usage.total_tokens``, Cohere's ``meta.billed_units.input_tokens``, Jina's ``usage.total_tokens``), else the
dataset's count. A body without the API's result list (``data``, ``results``) is malformed; an error object is
the server's failure in its own words.
"""

from __future__ import annotations

from typing import Any

from tokenswarm.dialects.base import Dialect, MalformedEvent, RequestOptions, error_text, merge_extra
from tokenswarm.measure import Event, Usage


def _inputs(prompt: Any) -> list[str]:
    return list(prompt.batch) if prompt.batch else [prompt.text]


class _Pooling(Dialect):
    streams = False
    batched = True
    needs_end_marker = False
    max_tokens_field = ""  # nothing is generated
    result_key = ""

    def count(self, obj: dict[str, Any], results: list[Any]) -> Usage:
        raise NotImplementedError

    def parse_whole(self, obj: dict[str, Any]) -> Event:
        err = error_text(obj)
        if err is not None:
            return Event(error=err)
        results = obj.get(self.result_key)
        if not isinstance(results, list):
            raise MalformedEvent(f"no {self.result_key!r} list in the {self.name} answer")
        return Event(usage=self.count(obj, results), response_id=obj.get("id"), finish="stop")


class OpenAIEmbeddings(_Pooling):
    """``POST /v1/embeddings``: ``{"model", "input": [texts]}`` -> ``{"data": [{"embedding"}], "usage"}``."""

    name = "openai-embeddings"
    path = "/v1/embeddings"
    result_key = "data"
    tokens_from = "no output; input tokens from usage.prompt_tokens"

    def body(self, prompt: Any, opts: RequestOptions) -> dict[str, Any]:
        return merge_extra({"model": opts.model, "input": _inputs(prompt)}, opts.extra_body)

    def count(self, obj: dict[str, Any], results: list[Any]) -> Usage:
        u = obj.get("usage")
        prompt = u.get("prompt_tokens") or u.get("total_tokens") if isinstance(u, dict) else None
        return Usage(prompt_tokens=prompt, completion_tokens=0)


class Rerank(_Pooling):
    """``POST /v1/rerank``: ``{"model", "query", "documents": [texts], "top_n"}`` -> ``{"results": [{"index",
    "relevance_score"}], "usage"}``; the query is the batch's first prompt, the documents the others (or the
    first again when the batch is one)."""

    name = "rerank"
    path = "/v1/rerank"
    result_key = "results"
    tokens_from = "no output; input tokens from usage.total_tokens (Cohere: meta.billed_units.input_tokens)"

    def body(self, prompt: Any, opts: RequestOptions) -> dict[str, Any]:
        texts = _inputs(prompt)
        docs = texts[1:] or texts
        return merge_extra({"model": opts.model, "query": texts[0], "documents": docs, "top_n": len(docs)},
                           opts.extra_body)

    def count(self, obj: dict[str, Any], results: list[Any]) -> Usage:
        u = obj.get("usage")
        prompt = None
        if isinstance(u, dict):
            prompt = u.get("total_tokens") or u.get("prompt_tokens")
        meta = obj.get("meta")
        if prompt is None and isinstance(meta, dict) and isinstance(meta.get("billed_units"), dict):
            prompt = meta["billed_units"].get("input_tokens")
        return Usage(prompt_tokens=prompt, completion_tokens=0)
