"""Open-loop arrival schedules for request-rate mode.

Gaps between arrivals are drawn as in vLLM's benchmark: ``poisson``
(exponential gaps, mean 1/rate), ``gamma`` with a burstiness factor
(shape = burstiness, scale = 1 / (rate * burstiness): burstiness < 1 is
burstier than Poisson, > 1 more regular, 1 is Poisson), or ``constant``.
Times are absolute (the same clock as the caller's ``start``), planned from
the previous planned arrival, so a late sender never shifts the schedule.
"""

from __future__ import annotations

import random
from typing import Any, Protocol

KINDS = ("poisson", "gamma", "constant")


class Schedule(Protocol):
    """What a rate-mode session waits on: ``t``, the next planned send time (inf: none left), and
    :meth:`take`, which takes it along with the prompt the schedule gives it (None: the session's next)."""

    t: float

    def take(self) -> tuple[float, Any]: ...


class Arrivals:
    """The arrival times of one level at ``rate`` requests/s, starting at ``start``."""

    def __init__(self, rate: float, start: float, kind: str = "poisson", burstiness: float = 1.0,
                 rng: random.Random | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if kind not in KINDS:
            raise ValueError(f"unknown arrival kind {kind!r}; choose one of: {', '.join(KINDS)}")
        if burstiness <= 0:
            raise ValueError(f"burstiness must be positive, got {burstiness}")
        self.rate = rate
        self.kind = kind
        self.burstiness = burstiness
        self.rng = rng or random.Random()
        self.t = start

    def gap(self) -> float:
        if self.kind == "constant":
            return 1.0 / self.rate
        if self.kind == "poisson" or self.burstiness == 1.0:
            return self.rng.expovariate(self.rate)
        return self.rng.gammavariate(self.burstiness, 1.0 / (self.rate * self.burstiness))

    def next(self) -> float:
        """The next planned arrival time (the first one is ``start``)."""
        t = self.t
        self.t = t + self.gap()
        return t

    def take(self) -> tuple[float, None]:
        """The next planned arrival time, and no prompt of its own (:class:`Schedule`)."""
        return self.next(), None
