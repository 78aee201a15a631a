"""The load-generation layer: the only tokenswarm code that imports locust or gevent.

``from tokenswarm.loadgen import ChatUser`` (what locustfiles do) registers
tokenswarm's Locust plugin (options, run folder, records, levels; see
:mod:`tokenswarm.loadgen.plugin`), the lines a master and its workers log as
they come and go (:mod:`tokenswarm.loadgen.lifecycle`), and gives the user
classes and the sweep shape. Those are loaded on first use, so the plain parts of this package
(:mod:`~tokenswarm.loadgen.budget`) import without Locust and without its
monkey-patching, and test on their own.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ChatUser", "CompletionsUser", "LLMUser", "SweepShape"]


def __getattr__(name: str) -> Any:
    if name in ("ChatUser", "CompletionsUser", "LLMUser"):
        from tokenswarm.loadgen import users

        return getattr(users, name)
    if name == "SweepShape":
        from tokenswarm.loadgen import shapes

        return shapes.SweepShape
    raise AttributeError(f"module 'tokenswarm.loadgen' has no attribute {name!r}")
