"""API dialects, registered by name: ``get_dialect("openai-chat")``.

Each dialect builds a request body and parses one stream line into a
:class:`~tokenswarm.measure.Event`. Add one by subclassing
:class:`~tokenswarm.dialects.base.Dialect` and listing it in ``DIALECTS``.
"""

from __future__ import annotations

from tokenswarm.dialects.anthropic import AnthropicMessages
from tokenswarm.dialects.base import Dialect, MalformedEvent, RequestOptions
from tokenswarm.dialects.native import SGLangGenerate, TGIGenerateStream, TritonGenerateStream
from tokenswarm.dialects.openai import OpenAIChat, OpenAICompletions
from tokenswarm.dialects.pooling import OpenAIEmbeddings, Rerank
from tokenswarm.dialects.responses import OpenAIResponses
from tokenswarm.dialects.template import Template

DIALECTS: dict[str, type[Dialect]] = {
    d.name: d
    for d in (OpenAIChat, OpenAICompletions, OpenAIResponses, AnthropicMessages, SGLangGenerate,
              TGIGenerateStream, TritonGenerateStream, Template, OpenAIEmbeddings, Rerank)
}


class UnknownDialect(ValueError):
    pass


def get_dialect(name: str, **config: str) -> Dialect:
    """A dialect instance by registered name (``config`` for the template dialect); an unknown name lists
    the valid ones."""
    try:
        cls = DIALECTS[name]
    except KeyError:
        raise UnknownDialect(f"unknown dialect {name!r}; choose one of: {', '.join(DIALECTS)}") from None
    return cls(**config) if cls is Template else cls()


__all__ = ["DIALECTS", "Dialect", "MalformedEvent", "RequestOptions", "UnknownDialect", "get_dialect"]
