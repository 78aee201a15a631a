"""The load-generation layer: the only tokenswarm code that imports locust or gevent.

``from tokenswarm.loadgen import ChatUser`` (what locustfiles do) registers
tokenswarm's Locust plugin (:mod:`tokenswarm.loadgen.plugin`, which makes each
process's role, :mod:`tokenswarm.loadgen.roles`) and gives the user classes and
the load shapes (:mod:`tokenswarm.loadgen.shapes`). Those are loaded on first
use, so the plain parts of this package (:mod:`~tokenswarm.loadgen.budget`,
:mod:`~tokenswarm.loadgen.timeline`) import without Locust and without its
monkey-patching, and test on their own.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ChatUser", "CompletionsUser", "ConcurrencySweep", "LLMUser", "RateSweep", "SweepShape", "TraceReplay"]
SHAPES = ("ConcurrencySweep", "RateSweep", "SweepShape", "TraceReplay")


def __getattr__(name: str) -> Any:
    if name in ("ChatUser", "CompletionsUser", "LLMUser", *SHAPES):
        from tokenswarm.loadgen import plugin  # noqa: F401  (registers tokenswarm's Locust listeners)
    if name in ("ChatUser", "CompletionsUser", "LLMUser"):
        from tokenswarm.loadgen import users

        return getattr(users, name)
    if name in SHAPES:
        from tokenswarm.loadgen import shapes

        return getattr(shapes, name)
    raise AttributeError(f"module 'tokenswarm.loadgen' has no attribute {name!r}")
