"""The load-generation layer: the only tokenswarm code that imports locust or gevent.

Importing it registers tokenswarm's Locust plugin (options, run folder,
records, levels; see :mod:`tokenswarm.loadgen.plugin`) and the lines a master
and its workers log as they come and go (:mod:`tokenswarm.loadgen.lifecycle`),
and exposes the user classes that locustfiles use.
"""

from tokenswarm.loadgen import lifecycle as _lifecycle  # noqa: F401  (joins, leaves and users, in the log)
from tokenswarm.loadgen import plugin as _plugin  # noqa: F401  (registers the event listeners)
from tokenswarm.loadgen.shapes import SweepShape
from tokenswarm.loadgen.users import ChatUser, CompletionsUser, LLMUser

__all__ = ["ChatUser", "CompletionsUser", "LLMUser", "SweepShape"]
