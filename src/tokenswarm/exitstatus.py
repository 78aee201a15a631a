"""Exit codes of every tokenswarm command (scripts and CI rely on them)."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0  # the run finished, failures within --max-fail-ratio
    FAILURES = 1  # the run finished with failures above --max-fail-ratio
    BAD_INPUT = 2  # bad input or a failed preflight: nothing was sent
    INTERRUPTED = 130  # Ctrl-C / SIGTERM: outputs written, marked incomplete
