"""The load generator's scheduling priority (``--priority normal|high|realtime``).

A reader that is scheduled late reads late: the kernel has merged the segments that waited, and only the
last one's arrival is known (:meth:`tokenswarm.client.Connection.recv`). Beside busy processes the client's
read side was off by up to 220 ms at normal priority; a higher priority lets it preempt them.

* ``normal``: left as it is.
* ``high``: nice -10 (``os.setpriority``; raising priority needs CAP_SYS_NICE or an RLIMIT_NICE that allows
  it).
* ``realtime``: ``SCHED_RR`` at priority 1, the lowest real-time one, so the process still yields to the
  kernel's own real-time threads, and round-robin among the load generator's processes (where ``SCHED_RR`` is
  refused, ``SCHED_FIFO``; where both are, nice -10). Needs CAP_SYS_NICE or RLIMIT_RTPRIO. A Python process
  in a real-time class that spins would starve its core's other tasks; the load generator waits on sockets
  most of the time, and the kernel's real-time throttling (``sched_rt_runtime_us``, 95 % by default) keeps
  5 % of each core for the rest. It also runs ahead of everything else on its cores: a server under test on
  the same cores is starved. Measured on a shared 2-core machine, engine and client unpinned, beside 2 busy
  processes at 256 users: the client's read side p99 fell to 1.6 ms (98.5 % of TTFTs exact) while the
  simulated engine's own schedule error p99 rose to 1.5 s. Give the client cores of its own (taskset, a
  cpuset) before asking for realtime.

Where the asked priority is refused, the next one down is tried, and :func:`apply` says what was got and why.
Each load-generating process applies it to itself (children it starts inherit it); run.json records it
(``client_priority``).
"""

from __future__ import annotations

import os

PRIORITIES = ("normal", "high", "realtime")
HIGH_NICE = -10
RT_PRIORITY = 1


def apply(asked: str) -> dict[str, str]:
    """Raise this process's priority as ``asked`` (one of :data:`PRIORITIES`); returns {"asked", "got",
    "why"} (``why`` names what was refused, "" when the asked one was got). Raises ValueError for an unknown
    name."""
    if asked not in PRIORITIES:
        raise ValueError(f"bad --priority {asked!r}: choose one of {', '.join(PRIORITIES)}")
    refused: list[str] = []
    if asked == "realtime":
        for name in ("SCHED_RR", "SCHED_FIFO"):
            policy = getattr(os, name, None)
            if policy is None:
                refused.append(f"{name}: not on this platform")
                continue
            try:
                os.sched_setscheduler(0, policy, os.sched_param(RT_PRIORITY))
                return _result(asked, f"realtime ({name} {RT_PRIORITY})", refused)
            except OSError as e:
                refused.append(f"{name}: {e.strerror or e}")
    if asked in ("realtime", "high"):
        try:
            now = os.getpriority(os.PRIO_PROCESS, 0)
            if now > HIGH_NICE:
                os.setpriority(os.PRIO_PROCESS, 0, HIGH_NICE)
            return _result(asked, f"high (nice {os.getpriority(os.PRIO_PROCESS, 0)})", refused)
        except (OSError, AttributeError) as e:
            refused.append(f"nice {HIGH_NICE}: {getattr(e, 'strerror', None) or e}")
    return _result(asked, "normal", refused)


def _result(asked: str, got: str, refused: list[str]) -> dict[str, str]:
    return {"asked": asked, "got": got, "why": "; ".join(refused)}


def current() -> str:
    """This process's scheduling as :func:`apply` words it (``realtime (SCHED_RR 1)``, ``high (nice -10)``,
    ``normal (nice 0)``)."""
    try:
        policy = os.sched_getscheduler(0)
        for name in ("SCHED_RR", "SCHED_FIFO"):
            if policy == getattr(os, name, None):
                return f"realtime ({name} {os.sched_getparam(0).sched_priority})"
        nice = os.getpriority(os.PRIO_PROCESS, 0)
    except (OSError, AttributeError):
        return "normal"
    return f"high (nice {nice})" if nice < 0 else f"normal (nice {nice})"
