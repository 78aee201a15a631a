"""Exit codes of every tokenswarm command (scripts and CI rely on them), and why a run got code 1."""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0  # the run finished, failures within --max-fail-ratio
    FAILURES = 1  # the run finished with failures above --max-fail-ratio
    BAD_INPUT = 2  # bad input or a failed preflight: nothing was sent
    INTERRUPTED = 130  # Ctrl-C / SIGTERM: outputs written, marked incomplete


FINISHED_OK, CANCELLED = "ok", "cancelled"


def failure_ratio(by_level: Mapping[str, Mapping[str, int]], lost_in_flight: int = 0) -> float:
    """Failed share of finished requests: ``by_level`` maps level -> status -> count (``ok``, ``cancelled``,
    failure kinds); cancelled requests are the client's doing and left out; requests lost in flight with a
    worker count as failed. 0.0 when nothing finished."""
    total = failed = lost_in_flight
    for counts in by_level.values():
        for status, n in counts.items():
            if status != CANCELLED:
                total += n
                if status != FINISHED_OK:
                    failed += n
    return failed / total if total else 0.0


def failures_message(by_level: Mapping[str, Mapping[str, int]], max_fail_ratio: float,
                     lost_in_flight: int = 0, level_word: str = "level") -> str:
    """Why the run exits with code 1, in one line: the overall failed share against ``--max-fail-ratio``, then
    each level with failures, worst first: its failed percentage and its failure kinds with counts. '' when
    the share is within the limit."""
    ratio = failure_ratio(by_level, lost_in_flight)
    if ratio <= max_fail_ratio:
        return ""
    parts = []
    for level, counts in by_level.items():
        kinds = {k: n for k, n in counts.items() if k not in (FINISHED_OK, CANCELLED) and n}
        if kinds:
            share = failure_ratio({level: counts})
            what = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
            parts.append((share, f"{level_word} {level}: {share:.1%} failed ({what})"))
    parts.sort(key=lambda p: -p[0])
    lost = f"; {lost_in_flight} requests lost in flight with a worker" if lost_in_flight else ""
    return (f"exit code 1: {ratio:.1%} of finished requests failed, above --max-fail-ratio {max_fail_ratio:g}"
            + (": " + "; ".join(text for _, text in parts) if parts else "") + lost)
