"""Fault injection for the simulated engine: what a failing server does, on purpose, counted.

Each generation request may get one fault, drawn from ``--fault KIND=RATE``
(rates are probabilities per request) or forced with the request header
``X-Sim-Fault: KIND`` (``none`` exempts a request, as preflight checks do).
The engine counts every fault it injects (``/metrics``, ``/sim/stats``, and
its exit summary), so a test can check that the client's records agree.

=============== ======================================================== =========================
kind            what the engine does                                      the client should record
=============== ======================================================== =========================
http_429        429 with an OpenAI-style JSON error and ``retry-after``   ``http_error``
http_500        500 with a JSON error body                                ``http_error``
slow_headers    holds the response headers for ``--fault-delay`` seconds  ``timeout`` (delay > its read timeout)
disconnect      closes the connection halfway through the stream          ``disconnect``
malformed       sends a chunk that is not JSON halfway through            ``malformed``
error_event     sends the API's own error event halfway, ends the stream  ``server_error_event``
stall           stops sending halfway; closes after ``--fault-delay``     ``timeout`` (delay > its read timeout)
truncate        ends the HTTP response halfway: no finish, no ``[DONE]``   ``disconnect``
=============== ======================================================== =========================

(An engine that is down — connection refused — is a closed port, not a fault the engine can count.)
"""

from __future__ import annotations

import random

FAULTS = ("http_429", "http_500", "slow_headers", "disconnect", "malformed", "error_event", "stall", "truncate")
MID_STREAM = ("disconnect", "malformed", "error_event", "stall", "truncate")
EXPECTED_STATUS = {
    "http_429": "http_error", "http_500": "http_error", "slow_headers": "timeout", "disconnect": "disconnect",
    "malformed": "malformed", "error_event": "server_error_event", "stall": "timeout", "truncate": "disconnect",
}


def parse_faults(items: list[str]) -> dict[str, float]:
    """``["http_500=0.1", "stall=0.02"]`` -> rates; raises ValueError naming a bad item."""
    rates: dict[str, float] = {}
    for item in items:
        kind, sep, rate = item.partition("=")
        kind = kind.strip()
        if kind not in FAULTS:
            raise ValueError(f"bad --fault {item!r}: unknown kind; choose from {', '.join(FAULTS)}")
        try:
            r = float(rate) if sep else 1.0
        except ValueError:
            raise ValueError(f"bad --fault {item!r}: {rate!r} is not a rate between 0 and 1") from None
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"bad --fault {item!r}: the rate must be between 0 and 1")
        rates[kind] = r
    if sum(rates.values()) > 1.0 + 1e-9:
        raise ValueError(f"bad --fault: the rates add up to {sum(rates.values()):g}, more than 1")
    return rates


class FaultPlan:
    """Draws at most one fault per request and counts the ones injected."""

    def __init__(self, rates: dict[str, float] | None = None, seed: int | None = None) -> None:
        self.rates = dict(rates or {})
        self.rng = random.Random(seed)
        self.injected: dict[str, int] = {k: 0 for k in FAULTS}

    def pick(self, header: str | None, stream: bool) -> str | None:
        """The fault for one request: forced by its header, else drawn from the rates."""
        if header:
            kind = header.strip().lower()
            if kind == "none" or kind not in FAULTS:
                return None
        elif self.rates:
            x = self.rng.random()
            kind = None
            for k, r in self.rates.items():
                if x < r:
                    kind = k
                    break
                x -= r
            if kind is None:
                return None
        else:
            return None
        if kind in MID_STREAM and not stream:
            return None  # mid-stream faults need a stream
        self.injected[kind] += 1
        return kind

    def summary(self) -> str:
        hits = {k: v for k, v in self.injected.items() if v}
        return ", ".join(f"{k} {v}" for k, v in hits.items()) or "none"
