"""Sweep plans: which levels a run steps through and when each level ends.

A level is a target concurrency (closed loop: that many users, each with one
request in flight) or a request rate (open loop: arrivals at R req/s, at most
``max_concurrency`` in flight). A level ends when its duration has passed
and/or when enough requests that started in it have finished, whichever
comes first when both are set; both can be given once for every level or
once per level (long requests at high concurrency need longer levels: a
level's window should hold several request lifetimes). Pure: the Locust shape and the controller
drive it; tests drive it with plain numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tokenswarm.errors import SettingsError

DEFAULT_LEVELS = "1,2,4,8,16,32,64,128,256,512,1024"
CONCURRENCY, RATE = "concurrency", "rate"
SLO_KEYS = ("ttft", "tpot", "itl", "e2e")  # per request: every request must meet them
SLO_STATS = ("mean", "p50", "p90", "p95", "p99", "p999")  # a level's figure: ttft_p99, tpot_mean, ...


def level_str(level: float) -> str:
    """How a level is written in requests.csv and run.json: ``8``, ``0.5``."""
    return f"{level:g}"


def parse_levels(text: str, option: str = "--levels", integers: bool = True) -> list[float]:
    """``1,2,4`` -> [1, 2, 4]; a bad item (not a number, not above zero, a fraction of a user, a level given
    twice) is a SettingsError naming the option and the item."""
    items = [t.strip() for t in str(text).split(",")]
    if not text or not any(items):
        raise SettingsError(f"bad {option} {text!r}: give comma-separated numbers, e.g. 1,2,4,8")
    out: list[float] = []
    for item in items:
        try:
            v = float(item)
        except ValueError:
            raise SettingsError(f"bad {option} {text!r}: {item!r} is not a number") from None
        if not math.isfinite(v) or v <= 0:
            raise SettingsError(f"bad {option} {text!r}: {item!r} must be more than zero")
        if integers and v != int(v):
            raise SettingsError(f"bad {option} {text!r}: {item!r} must be a whole number of users")
        if v in out:  # a level is a row of levels.csv and a window of the report: it runs once a sweep
            raise SettingsError(f"bad {option} {text!r}: {item!r} appears twice; each level runs once a sweep "
                                "(--repeat N runs the whole sweep again)")
        out.append(int(v) if integers else v)
    return out


def is_target(key: str) -> bool:
    """An SLO key on a level's figure (``ttft_p99``, ``e2e_mean``) rather than on every request (``ttft``)."""
    metric, _, stat = key.partition("_")
    return metric in SLO_KEYS and stat in SLO_STATS


def parse_slo(text: str) -> dict[str, float]:
    """``ttft=2000,tpot=100`` (ms; every request) and ``ttft_p99=500`` (a level's figure) ->
    {"ttft": 2000.0, "tpot": 100.0, "ttft_p99": 500.0}."""
    out: dict[str, float] = {}
    if not text:
        return out
    for item in str(text).split(","):
        key, sep, val = item.partition("=")
        key = key.strip().lower().removesuffix("_ms")
        if not sep:
            raise SettingsError(f"bad --slo {text!r}: {item.strip()!r} is not KEY=MS (e.g. ttft=2000)")
        if key not in SLO_KEYS and not is_target(key):
            raise SettingsError(f"bad --slo {text!r}: unknown key {key!r}; use {', '.join(SLO_KEYS)} (every "
                                f"request) or one of them with _{'/_'.join(SLO_STATS)} (a level's figure, "
                                "e.g. ttft_p99)")
        try:
            ms = float(val)
        except ValueError:
            raise SettingsError(f"bad --slo {text!r}: {val.strip()!r} is not a number of milliseconds") from None
        if ms <= 0:
            raise SettingsError(f"bad --slo {text!r}: {key} must be more than zero")
        out[key] = ms
    return out


@dataclass
class SweepPlan:
    """The levels of a run and the rule that ends each one."""

    mode: str  # CONCURRENCY or RATE
    levels: list[float]
    level_duration_s: float | None = None
    level_requests: int = 0
    max_concurrency: int = 256  # users in rate mode: the in-flight cap
    #: one duration per level, overriding ``level_duration_s`` (long levels where requests are long)
    level_durations_s: list[float] | None = None
    #: one request count per level (0: none for that level), overriding ``level_requests``
    level_requests_each: list[int] | None = None
    #: a capacity search (:mod:`tokenswarm.capacity`): ``levels`` is the bracket (low, high) it starts from, and
    #: the levels it probes are decided as it goes
    capacity: bool = False

    def __post_init__(self) -> None:
        if (self.level_duration_s is None and not self.level_durations_s and not self.level_requests
                and not any(self.level_requests_each or ())):
            raise SettingsError("a sweep needs --level-duration and/or --level-requests to end each level")
        if self.level_durations_s is not None and len(self.level_durations_s) != len(self.levels):
            raise SettingsError(f"--level-duration gives {len(self.level_durations_s)} durations for "
                                f"{len(self.levels)} levels: give one, or one per level")
        if self.level_requests_each is not None:
            if len(self.level_requests_each) != len(self.levels):
                raise SettingsError(f"--level-requests gives {len(self.level_requests_each)} counts for "
                                    f"{len(self.levels)} levels: give one, or one per level")
            if self._has_endless_level():
                raise SettingsError("--level-requests gives 0 for a level and there is no --level-duration: "
                                    "that level would never end")

    def _has_endless_level(self) -> bool:
        """A level with neither a duration nor a request count (it would never end)."""
        return any(self.duration(i) is None and not self.requests(i) for i in range(len(self.levels)))

    def duration(self, i: int) -> float | None:
        """How long level ``i`` lasts at least (None: until its requests are done)."""
        return self.level_durations_s[i] if self.level_durations_s else self.level_duration_s

    def shortest(self) -> float | None:
        """The shortest level duration (None when levels end by request count only)."""
        return min(self.level_durations_s) if self.level_durations_s else self.level_duration_s

    def requests(self, i: int) -> int:
        """Requests of level ``i`` that end it once finished (0: none; the duration ends it)."""
        return self.level_requests_each[i] if self.level_requests_each else self.level_requests

    def users(self, i: int) -> int:
        """Users to run at level ``i``."""
        return self.users_at(self.levels[i])

    def users_at(self, level: float) -> int:
        """Users to run at ``level``: the level itself in a closed loop, ``max_concurrency`` in rate mode."""
        return int(level) if self.mode == CONCURRENCY else self.max_concurrency

    def level_done(self, i: int, elapsed_s: float, completed: int) -> bool:
        """Has level ``i`` ended, ``elapsed_s`` after it began, with ``completed`` of its requests done?"""
        duration = self.duration(i)
        if duration is not None and elapsed_s >= duration:
            return True
        need = self.requests(i)
        return bool(need) and completed >= need

    def describe(self) -> str:
        unit = "users" if self.mode == CONCURRENCY else "req/s"
        if self.capacity:
            return (f"capacity search by {self.mode} from {level_str(self.levels[0])} up to "
                    f"{level_str(self.levels[-1])} {unit}")
        ends = []
        if self.level_durations_s:
            ends.append("/".join(f"{d:g}" for d in self.level_durations_s) + "s")
        elif self.level_duration_s is not None:
            ends.append(f"{self.level_duration_s:g}s")
        if self.level_requests_each:
            ends.append("/".join(str(n) for n in self.level_requests_each) + " requests")
        elif self.level_requests:
            ends.append(f"{self.level_requests} requests")
        return f"{self.mode} sweep over {','.join(level_str(v) for v in self.levels)} {unit}, each " + \
            " or ".join(ends)
