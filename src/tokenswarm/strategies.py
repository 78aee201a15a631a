"""Load strategies: the rule that says when each request of a level is sent.

One class per strategy, its parameters as attributes and its own next-send rule (the design of guidellm's
``scheduler/strategies.py``). A run's settings give one strategy per level (:func:`for_level`); every
process that runs users paces its sends by it (:class:`tokenswarm.loadgen.swarm.Swarm`):

* :class:`Concurrent`: closed loop. ``streams`` users; each sends its next request as soon as its last one
  ended, so ``streams`` requests are in flight.
* :class:`ConstantRate`: open loop, one request every ``1/rate`` s.
* :class:`PoissonRate`: open loop, exponential gaps of mean ``1/rate`` (vLLM's benchmark default).
* :class:`GammaRate`: open loop, gamma gaps of shape ``burstiness`` and scale ``1/(rate*burstiness)``, as
  vLLM's ``--burstiness``: below 1 burstier than Poisson, above 1 more regular, 1 is Poisson.
* :class:`Trace`: open loop at a trace's own send times, each request with the trace's lengths.

An open-loop strategy gives each process a :class:`Schedule` of its share of the sends: planned times on
the caller's clock, each planned from the previous planned time, so a late sender never shifts the
schedule. Open-loop levels run ``max_concurrency`` users that wait for their planned times. Pure: no
Locust, no gevent.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from tokenswarm.settings import Settings

#: the ``--arrival`` values, each an open-loop strategy
KINDS = ("poisson", "gamma", "constant")
TRACE_LEAD_S = 1.0  # a trace's first send comes this long after its level begins (its users are up by then)


class Schedule(Protocol):
    """One process's share of an open-loop level: ``t``, the next planned send time (inf: none left), and
    :meth:`take`, which takes it with the prompt the strategy gives that send (None: the process's next)."""

    t: float

    def take(self) -> tuple[float, Any]: ...


class Strategy(ABC):
    """When a level's requests are sent. ``users``: the Locust users the level runs, all processes together."""

    open_loop: ClassVar[bool] = True
    users: int

    @abstractmethod
    def schedule(self, start: float, share: int, shares: int, rng: random.Random) -> Schedule | None:
        """The sends of process ``share`` of ``shares`` from ``start`` (its clock, seconds); None for a closed
        loop, whose users send as soon as they can."""

    def describe(self) -> str:
        return type(self).__name__


class Concurrent(Strategy):
    """Closed loop: ``streams`` users, each with one request in flight; the next is sent when the last ends."""

    open_loop = False

    def __init__(self, streams: int) -> None:
        if streams < 1:
            raise ValueError(f"a concurrent level needs at least 1 stream, got {streams}")
        self.streams = int(streams)
        self.users = self.streams

    def schedule(self, start: float, share: int, shares: int, rng: random.Random) -> None:
        return None

    def describe(self) -> str:
        return f"{self.streams} concurrent streams"


class RateStrategy(Strategy):
    """Open loop at ``rate`` requests per second in all, sent by ``max_concurrency`` users; subclasses give
    the gap between two planned sends (:meth:`gap`)."""

    kind: ClassVar[str] = ""

    def __init__(self, rate: float, max_concurrency: int = 256) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = float(rate)
        self.users = self.max_concurrency = int(max_concurrency)

    @abstractmethod
    def gap(self, rate: float, rng: random.Random) -> float:
        """Seconds from one planned send to the next at ``rate`` requests per second."""

    def schedule(self, start: float, share: int, shares: int, rng: random.Random) -> RateSchedule:
        return RateSchedule(self, self.rate / max(shares, 1), start, rng)

    def describe(self) -> str:
        return f"{self.rate:g} req/s ({self.kind})"


class ConstantRate(RateStrategy):
    """Open loop, one request every ``1/rate`` s."""

    kind = "constant"

    def gap(self, rate: float, rng: random.Random) -> float:
        return 1.0 / rate


class PoissonRate(RateStrategy):
    """Open loop, exponential gaps (mean ``1/rate``): arrivals of a Poisson process."""

    kind = "poisson"

    def gap(self, rate: float, rng: random.Random) -> float:
        return rng.expovariate(rate)


class GammaRate(RateStrategy):
    """Open loop, gamma gaps of shape ``burstiness`` and scale ``1/(rate*burstiness)`` (mean ``1/rate``)."""

    kind = "gamma"

    def __init__(self, rate: float, burstiness: float = 1.0, max_concurrency: int = 256) -> None:
        super().__init__(rate, max_concurrency)
        if burstiness <= 0:
            raise ValueError(f"burstiness must be positive, got {burstiness}")
        self.burstiness = float(burstiness)

    def gap(self, rate: float, rng: random.Random) -> float:
        if self.burstiness == 1.0:
            return rng.expovariate(rate)  # the same draws as Poisson
        return rng.gammavariate(self.burstiness, 1.0 / (rate * self.burstiness))

    def describe(self) -> str:
        return f"{self.rate:g} req/s (gamma, burstiness {self.burstiness:g})"


class RateSchedule:
    """A process's planned sends at ``rate`` req/s, the first at ``start``, gaps by ``strategy``."""

    def __init__(self, strategy: RateStrategy, rate: float, start: float, rng: random.Random) -> None:
        self.strategy = strategy
        self.rate = rate
        self.rng = rng
        self.t = start

    def next(self) -> float:
        """The next planned send time (the first one is ``start``)."""
        t = self.t
        self.t = t + self.strategy.gap(self.rate, self.rng)
        return t

    def take(self) -> tuple[float, None]:
        return self.next(), None


class Trace(Strategy):
    """Open loop at a trace's own send times (``entries``, :class:`tokenswarm.workloads.TraceEntry`, offsets
    already scaled by ``--trace-speed``), each request built by ``prompts`` (a
    :class:`tokenswarm.workloads.TracePrompts`) with the entry's lengths. Process ``share`` of ``shares``
    sends entries ``share, share + shares, ...``, each at the trace's own time."""

    def __init__(self, entries: list[Any], prompts: Any, max_concurrency: int = 256) -> None:
        self.entries = entries
        self.prompts = prompts
        self.users = self.max_concurrency = int(max_concurrency)

    def schedule(self, start: float, share: int, shares: int, rng: random.Random) -> TraceSchedule:
        shares = max(shares, 1)
        return TraceSchedule(self.entries[share % shares::shares], start + TRACE_LEAD_S, self.prompts, share)

    def describe(self) -> str:
        return f"trace of {len(self.entries)} requests"


class TraceSchedule:
    """A process's share of a trace: ``t`` is the next planned send (inf when done); :meth:`take` takes it
    with its prompt."""

    def __init__(self, entries: list[Any], start: float, prompts: Any, shard: int = 0) -> None:
        self.entries = entries
        self.start = start
        self.prompts = prompts
        self.shard = shard
        self.i = 0
        self.t = start + entries[0].offset_s if entries else float("inf")

    def take(self) -> tuple[float, Any]:
        t, entry = self.t, self.entries[self.i]
        self.i += 1
        self.t = self.start + self.entries[self.i].offset_s if self.i < len(self.entries) else float("inf")
        return t, self.prompts.prompt(entry, self.shard)


def rate_strategy(kind: str, rate: float, burstiness: float = 1.0, max_concurrency: int = 256) -> RateStrategy:
    """The open-loop strategy of ``--arrival kind`` at ``rate`` req/s. ValueError for an unknown kind."""
    if kind == "constant":
        return ConstantRate(rate, max_concurrency)
    if kind == "poisson":
        return PoissonRate(rate, max_concurrency)
    if kind == "gamma":
        return GammaRate(rate, burstiness, max_concurrency)
    raise ValueError(f"unknown arrival kind {kind!r}; choose one of: {', '.join(KINDS)}")


def for_level(settings: Settings, level: float, trace: Trace | None = None) -> Strategy:
    """The strategy of ``level`` in a run with ``settings``: the process's ``trace`` (its entries and prompts)
    for a trace replay; a rate strategy (``--arrival``) in rate mode; else ``level`` concurrent streams."""
    if settings.trace:
        if trace is None:
            raise ValueError("a trace replay needs its trace")
        return trace
    if settings.mode == "rate":
        cap = settings.plan.max_concurrency if settings.plan is not None else settings.max_concurrency
        return rate_strategy(settings.arrival, level, settings.burstiness, cap)
    return Concurrent(max(int(level), 1))
