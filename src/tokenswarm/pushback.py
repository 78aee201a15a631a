"""Gateway pushback: how long a user waits after a failed request before it sends its next.

Gateways (LiteLLM, Higress, API providers) answer overload with HTTP 429 or 503
and often a ``Retry-After`` header. A load generator that fires its next request
at once turns each such answer into thousands of requests a second that
measure nothing. One :class:`Backoff` per user decides the wait, from the
record of the request that just ended:

* ``ok`` or ``cancelled``: no wait; the run of failures is over.
* HTTP 429 or 503 (unless pushback is turned off, ``--no-backoff``): what
  ``Retry-After`` says; without that header, exponential backoff from
  :data:`PUSHBACK_BASE_S` (1, 2, 4 ... s) with jitter.
* Any other failure (or a 429/503 with pushback off): the first costs nothing;
  from the second in a row, exponential backoff from :data:`SPIN_BASE_S`
  (0.1, 0.2, 0.4 ... s) with jitter, so a user facing a dead or refusing
  server never spins.

Every wait is capped by ``--max-backoff`` (seconds). The wait is recorded on the
request that caused it (requests.csv ``backoff_ms``), so a report can tell the
share of each level rate-limited and the time its users spent waiting.
Pure: no locust, no gevent.
"""

from __future__ import annotations

import random

from tokenswarm.measure import HTTP_ERROR, STATUS_CANCELLED, STATUS_OK, RequestRecord

PUSHBACK_STATUSES = frozenset({429, 503})  # "slow down": Too Many Requests, Service Unavailable
PUSHBACK_BASE_S = 1.0  # 429/503 without Retry-After: the first wait, doubled for each one in a row
SPIN_BASE_S = 0.1  # other failures in a row: the second one's wait, doubled for each further one
DEFAULT_MAX_BACKOFF_S = 60.0


def is_pushback(rec: RequestRecord) -> bool:
    """The server asked to slow down: HTTP 429 or 503."""
    return rec.status == HTTP_ERROR and rec.http_status in PUSHBACK_STATUSES


class Backoff:
    """One user's waits between requests after failures (see the module docstring for the rules)."""

    __slots__ = ("honour", "cap_s", "failures", "_rng")

    def __init__(self, honour: bool = True, cap_s: float = DEFAULT_MAX_BACKOFF_S,
                 rng: random.Random | None = None) -> None:
        self.honour = honour  # wait what 429/503 ask for (--no-backoff turns it off)
        self.cap_s = cap_s
        self.failures = 0  # failures in a row
        self._rng = rng or random.Random()

    def after(self, rec: RequestRecord) -> float:
        """Seconds to wait before the next request, given the request that just ended (0: none)."""
        if rec.status in (STATUS_OK, STATUS_CANCELLED):
            self.failures = 0
            return 0.0
        self.failures += 1
        n = self.failures
        if self.honour and is_pushback(rec):
            if rec.retry_after_s is not None:
                return min(rec.retry_after_s, self.cap_s)
            return self._jittered(PUSHBACK_BASE_S * 2.0 ** (n - 1))
        if n < 2:
            return 0.0
        return self._jittered(SPIN_BASE_S * 2.0 ** (n - 2))

    def _jittered(self, wait: float) -> float:
        """Half the wait, plus a random part up to the other half ("equal jitter"), capped."""
        wait = min(wait, self.cap_s)
        return wait / 2.0 + self._rng.random() * wait / 2.0
