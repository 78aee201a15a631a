"""API dialects, registered by name: ``get_dialect("openai-chat")``.

Each dialect builds a request body and parses one stream line into a
:class:`~tokenswarm.metrics.Event`. Add one by subclassing
:class:`~tokenswarm.dialects.base.Dialect` and listing it in ``DIALECTS``.
"""

from __future__ import annotations

from tokenswarm.dialects.base import Dialect, MalformedEvent, RequestOptions
from tokenswarm.dialects.openai import OpenAIChat, OpenAICompletions

DIALECTS: dict[str, type[Dialect]] = {d.name: d for d in (OpenAIChat, OpenAICompletions)}


class UnknownDialect(ValueError):
    pass


def get_dialect(name: str) -> Dialect:
    """A dialect instance by registered name; an unknown name lists the valid ones."""
    try:
        return DIALECTS[name]()
    except KeyError:
        raise UnknownDialect(f"unknown dialect {name!r}; choose one of: {', '.join(sorted(DIALECTS))}") from None


__all__ = ["DIALECTS", "Dialect", "MalformedEvent", "RequestOptions", "UnknownDialect", "get_dialect"]
