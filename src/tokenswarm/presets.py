"""Preset presets as data: which dialect, port, path and metrics path each engine uses.

``--engine NAME`` picks a row; ``--host``, ``--model``, ``--endpoint`` and
``--dialect`` override any field. ``tokenswarm engines`` prints this table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """One preset. ``base_url`` is scheme, host and port (plus a path prefix for hosted APIs)."""

    name: str
    dialect: str
    base_url: str
    path: str
    metrics_path: str = "/metrics"
    model: str = ""  # default model name ("" : ask the server's /v1/models)
    tokens: str = "usage"  # how output tokens are counted by default
    # metrics_path: a path on the engine's port ("/metrics"), or ":PORT/path" for another port ("" : none)
    notes: str = ""


def _openai_base() -> str:
    return os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/")


PRESETS: dict[str, Preset] = {
    e.name: e
    for e in (
        Preset("sim", "openai-chat", "http://127.0.0.1:8000", "/v1/chat/completions", model="tokenswarm-sim",
               notes="the embedded simulated engine; `tokenswarm run` starts one when --host is not given"),
        Preset("vllm", "openai-chat", "http://127.0.0.1:8000", "/v1/chat/completions",
               notes="vLLM OpenAI server (vllm serve); --dialect openai-completions for /v1/completions"),
        Preset("sglang", "openai-chat", "http://127.0.0.1:30000", "/v1/chat/completions",
               notes="SGLang (--enable-metrics for /metrics); native API: --dialect sglang-generate"),
        Preset("tgi", "openai-chat", "http://127.0.0.1:8080", "/v1/chat/completions",
               tokens="usage (TGI >= 2.3), else --tokenizer",
               notes="Text Generation Inference Messages API; native: --dialect tgi-generate-stream"),
        Preset("lmdeploy", "openai-chat", "http://127.0.0.1:23333", "/v1/chat/completions",
               tokens="usage on the finish chunk", notes="LMDeploy api_server (--enable-metrics for /metrics)"),
        Preset("trtllm", "triton-generate-stream", "http://127.0.0.1:8000", "/v2/models/{model}/generate_stream",
               metrics_path=":8002/metrics", model="ensemble", tokens="--tokenizer, else one per event",
               notes="TensorRT-LLM on Triton (generate_stream; no usage, no [DONE]); trtllm-serve: --dialect "
                     "openai-chat"),
        Preset("litellm", "openai-chat", "http://127.0.0.1:4000", "/v1/chat/completions", metrics_path="",
               tokens="usage from the backend", notes="LiteLLM proxy in front of an engine"),
        Preset("higress", "openai-chat", "http://127.0.0.1:8080", "/v1/chat/completions", metrics_path="",
               tokens="usage from the backend", notes="Higress AI gateway in front of an engine"),
        Preset("fastchat", "openai-chat", "http://127.0.0.1:8000", "/v1/chat/completions", metrics_path="",
               tokens="--tokenizer, else one per event", notes="FastChat openai_api_server (no usage in streams)"),
        Preset("llamacpp", "openai-chat", "http://127.0.0.1:8080", "/v1/chat/completions",
               notes="llama.cpp llama-server (--metrics for /metrics)"),
        Preset("transformers", "openai-chat", "http://127.0.0.1:8000", "/v1/chat/completions", metrics_path="",
               notes="Hugging Face `transformers serve --continuous-batching` (usage on the finish chunk, no "
                     "[DONE], no /metrics; pass --model: its /v1/models lists only the hub cache)"),
        Preset("openai", "openai-chat", "https://api.openai.com/v1", "/chat/completions", metrics_path="",
               notes="any OpenAI-compatible API; base URL from $OPENAI_BASE_URL"),
    )
}


class UnknownPreset(ValueError):
    pass


def get_preset(name: str) -> Preset:
    """A preset by name, in any case (``vLLM`` is ``vllm``); an unknown name lists the valid ones."""
    given, name = name, name.strip().lower()
    try:
        engine = PRESETS[name]
    except KeyError:
        raise UnknownPreset(f"unknown engine {given!r}; choose one of: {', '.join(PRESETS)}") from None
    if name == "openai":
        engine = Preset(**{**engine.__dict__, "base_url": _openai_base()})
    return engine
