"""requests.csv: the per-request contract other tools read, and its incremental writer.

Columns (DESIGN.md, "Per-request record"), in this order; ``itl_ms`` holds the
inter-token latencies of a request as space-separated milliseconds and comes
last because it is long. ``token_check`` names what contradicted the server's usage
(:func:`tokenswarm.measure.check_usage`; empty when nothing did), ``output_tokens`` being the count used and
``token_source`` where it came from; ``lingered`` is 1 when the answer was complete but the server kept the
stream open and the client closed it; ``timing_source`` is ``capture`` when a
kernel packet capture timed the send and the events (``--timing capture``: error bounds 0), else ``read`` (the
reads' kernel stamps with their ``*_error_bound_ms``). Rows are formatted to strings where records are made
(on workers), so the process that writes the file only appends them.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from typing import IO

from tokenswarm.measure import RequestRecord

COLUMNS: tuple[str, ...] = (
    "request_id",
    "start_time",
    "level",
    "worker",
    "user",
    "status",
    "http_status",
    "ttft_ms",
    "ttft_visible_ms",
    "tpot_ms",
    "e2e_ms",
    "close_ms",
    "ttft_error_bound_ms",
    "e2e_error_bound_ms",
    "timing_source",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "token_source",
    "output_tokens_tokenizer",
    "output_events",
    "output_kind",
    "finish_reason",
    "token_check",
    "lingered",
    "scheduled_time",
    "connect_ms",
    "request_bytes",
    "prompt_id",
    "prefix_id",
    "conversation_id",
    "turn",
    "backoff_ms",
    "error",
    "itl_ms",
)

Row = list[str]
STATUS_COL = COLUMNS.index("status")
LEVEL_COL = COLUMNS.index("level")
COLUMN_INDEX: dict[str, int] = {name: i for i, name in enumerate(COLUMNS)}  # a row's field by column name


def _f(v: float | None, fmt: str = "%.3f") -> str:
    return "" if v is None else fmt % v


def _i(v: int | None) -> str:
    return "" if v is None else str(v)


def to_row(r: RequestRecord) -> Row:
    """A record as strings, in COLUMNS order (ms to microsecond precision, epoch to the microsecond)."""
    return [
        r.request_id,
        "%.6f" % r.start_time,
        "%g" % r.level,
        r.worker,
        str(r.user),
        r.status,
        _i(r.http_status),
        _f(r.ttft_ms),
        _f(r.ttft_visible_ms),
        _f(r.tpot_ms),
        _f(r.e2e_ms),
        _f(r.close_ms),
        _f(r.ttft_error_bound_ms),
        _f(r.e2e_error_bound_ms),
        r.timing_source,
        _i(r.input_tokens),
        _i(r.output_tokens),
        _i(r.reasoning_tokens),
        _i(r.cached_tokens),
        r.token_source or "",
        _i(r.output_tokens_tokenizer),
        str(r.output_events),
        r.output_kind,
        r.finish_reason or "",
        r.token_check,
        "1" if r.lingered else "",
        _f(r.scheduled_time, "%.6f"),
        _f(r.connect_ms),
        str(r.request_bytes) if r.request_bytes else "",
        r.prompt_id,
        r.prefix_id,
        r.conversation_id,
        str(r.turn) if r.turn else "",
        _f(r.backoff_ms),
        r.error,
        _itl(r.itl_ms),
    ]


_ITL_FORMATS: dict[int, str] = {}


def _itl(values: list[float]) -> str:
    """``"20.013 19.998 ..."``: one %-format call with a cached format string (twice as fast as a join)."""
    n = len(values)
    fmt = _ITL_FORMATS.get(n)
    if fmt is None:
        fmt = " ".join(["%.3f"] * n)
        if n <= 1024:  # the usual output lengths; longer ones are formatted without caching
            _ITL_FORMATS[n] = fmt
    return fmt % tuple(values)


class RequestsWriter:
    """Appends rows to requests.csv; the header is written once, when the file is new.

    Rows wait in memory until :meth:`flush` (the run controller calls it every
    second), which writes them with a single ``write`` and flushes: the file
    always ends at a row boundary, and a crash loses at most the unflushed second.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        self._fh: IO[str] = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._pending: list[Row] = []
        self.rows = 0
        if new:
            self._emit([list(COLUMNS)])

    def write(self, rows: Iterable[Row]) -> None:
        before = len(self._pending)
        self._pending.extend(rows)
        self.rows += len(self._pending) - before

    def _emit(self, rows: list[Row]) -> None:
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        self._fh.write(buf.getvalue())
        self._fh.flush()

    def flush(self) -> None:
        if self._pending:
            rows, self._pending = self._pending, []
            self._emit(rows)

    def close(self) -> None:
        if not self._fh.closed:
            self.flush()
            self._fh.close()
