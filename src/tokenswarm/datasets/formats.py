"""Reading dataset files record by record: JSON lists, JSON Lines and CSV, with where each record came from.

A JSON list (ShareGPT, LongAlpaca) is parsed one element at a time from a
sliding buffer, so a 650 MB ShareGPT dump never exists as one Python string
plus one object tree (``json.load`` would hold both, several GB per worker).
Whether a ``.json`` file is a list or JSON Lines is decided by its first
character, so ShareGPT-style ``.jsonl`` dumps work too. Every record comes
with a number ``n`` (1-based record of a list; line of a JSON Lines or CSV
file) and :meth:`RecordFile.where` turns it into the prefix of an error:
``file.json: record 5`` or ``file.jsonl:17``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from typing import Any

from tokenswarm.datasets.base import DatasetError

CHUNK_CHARS = 1 << 20  # characters read at a time from a JSON list
MAX_RECORD_CHARS = 1 << 26  # a list element longer than this (64 Mi characters) is taken as malformed
_WS = re.compile(r"[ \t\n\r]*")
_NUMBER_TAIL = re.compile(r"[0-9.eE+\-]*")


def _where_in_line(e: json.JSONDecodeError) -> str:
    """``Expecting value at column 3`` (some of json's messages already end in "at")."""
    return f"{e.msg}{'' if e.msg.endswith(' at') else ' at'} column {e.colno}"


def _json_problem(e: ValueError) -> str:
    if isinstance(e, json.JSONDecodeError):
        return _where_in_line(e)
    if isinstance(e, UnicodeDecodeError):
        return f"not UTF-8 text at byte {e.start}"
    return str(e)


class RecordFile:
    """One dataset file: yields ``(n, record)`` and names record ``n`` in errors."""

    def __init__(self, path: str, display: str | None = None) -> None:
        self.path = os.path.expanduser(path)
        self.display = display or path  # the path as the user wrote it
        self.kind = "list"  # "list", "lines" or "csv"; set by the reader

    def where(self, n: int) -> str:
        return f"{self.display}: record {n}" if self.kind == "list" else f"{self.display}:{n}"

    def error(self, problem: str) -> DatasetError:
        return DatasetError(f"{self.display}: {problem}")

    # -- JSON ----------------------------------------------------------------------------
    def json_records(self) -> Iterator[tuple[int, Any]]:
        """Records of a JSON list (``[{...}, ...]``) or of a JSON Lines file (one value per line)."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        except OSError as e:
            raise self.error(f"cannot read ({e.strerror or e})")
        if not head:
            raise self.error("empty file")
        if head[:1] == b"[":
            self.kind = "list"
            return self._json_list()
        self.kind = "lines"
        return self._json_lines()

    def _json_lines(self) -> Iterator[tuple[int, Any]]:
        with open(self.path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]  # a UTF-8 byte order mark
                if raw.isspace() or not raw:
                    continue
                try:
                    yield lineno, json.loads(raw.rstrip(b"\r\n"))
                except ValueError as e:
                    raise DatasetError(f"{self.display}:{lineno}: not JSON ({_json_problem(e)})")

    def _json_list(self) -> Iterator[tuple[int, Any]]:
        decode = json.JSONDecoder().raw_decode
        try:
            f = open(self.path, encoding="utf-8-sig")  # noqa: SIM115 (closed below; a generator)
        except OSError as e:
            raise self.error(f"cannot read ({e.strerror or e})")
        with f:
            buf = ""
            pos = 0
            eof = False
            dropped = 0  # characters of the file already dropped from buf
            want = CHUNK_CHARS

            def more() -> None:
                nonlocal buf, pos, eof, dropped, want
                dropped += pos
                try:
                    data = f.read(want)
                except UnicodeDecodeError as e:
                    raise self.error(f"not UTF-8 text ({e.reason} at byte {e.start} of a chunk)")
                buf = buf[pos:] + data
                pos = 0
                eof = not data

            def line_of(i: int) -> int:
                """The line of ``buf[i]`` (errors only: counts the file's newlines up to there again)."""
                lines, left = 1, dropped
                with open(self.path, encoding="utf-8-sig") as again:
                    while left > 0:
                        part = again.read(min(left, CHUNK_CHARS))
                        lines += part.count("\n")
                        left -= len(part)
                return lines + buf.count("\n", 0, i)

            n = 0
            expect = "open"  # "open" ([, seen by json_records), "first" (value or ]), "value", "sep" (, or ])
            while True:
                pos = _WS.match(buf, pos).end()
                if pos >= len(buf):
                    if eof:
                        raise DatasetError(f"{self.display}:{line_of(pos)}: the file ends inside the list "
                                           f"(after record {n}; truncated?)")
                    more()
                    continue
                c = buf[pos]
                if expect == "open":
                    pos += 1
                    expect = "first"
                    continue
                if expect == "sep":
                    if c == ",":
                        pos += 1
                        expect = "value"
                        continue
                    if c == "]":
                        break
                    raise DatasetError(f"{self.display}:{line_of(pos)}: not JSON (expected ',' or ']' after "
                                       f"record {n}, found {c!r})")
                if c == "]" and expect == "first":
                    break
                try:
                    obj, end = decode(buf, pos)
                except json.JSONDecodeError as e:
                    if not eof and len(buf) - pos < MAX_RECORD_CHARS:
                        # maybe the record runs past the buffer: read on (in bigger steps)
                        want = max(want, len(buf))
                        more()
                        continue
                    e.colno = e.pos - (buf.rfind("\n", 0, e.pos) + 1) + 1  # relative to buf, as e.pos
                    raise DatasetError(f"{self.display}:{line_of(e.pos)}: record {n + 1}: not JSON "
                                       f"({_where_in_line(e)})")
                if not eof and isinstance(obj, (int, float)) and _NUMBER_TAIL.fullmatch(buf, end):
                    more()  # a number that may go on past the buffer's end ("22" of "22.5"): read on
                    continue
                want = CHUNK_CHARS
                n += 1
                pos = end
                expect = "sep"
                yield n, obj
            rest = buf[pos + 1:]
            if not rest.strip():
                rest = f.read(64)
            if rest.strip():
                raise DatasetError(f"{self.display}:{line_of(pos)}: not JSON (more data after the list's "
                                   "closing ']')")

    # -- CSV -----------------------------------------------------------------------------
    def csv_records(self, required: str) -> Iterator[tuple[int, dict[str, str]]]:
        """Rows of a CSV (TSV for ``.tsv``) file as ``{column: value}``; the header must name ``required``.

        Quoted fields may hold newlines and commas; ``n`` is the line the row starts on.
        """
        self.kind = "csv"
        csv.field_size_limit(1 << 30)  # a prompt can be far longer than the 128 KiB default
        try:
            f = open(self.path, newline="", encoding="utf-8-sig")  # noqa: SIM115 (closed below; a generator)
        except OSError as e:
            raise self.error(f"cannot read ({e.strerror or e})")
        return self._csv_rows(f, required)

    def _csv_rows(self, f: Any, required: str) -> Iterator[tuple[int, dict[str, str]]]:
        delimiter = "\t" if self.path.lower().endswith(".tsv") else ","
        with f:
            reader = csv.reader(f, delimiter=delimiter, strict=True)
            start = 1
            try:
                header = next(reader, None)
                if header is None:
                    raise self.error("empty file (no header row)")
                header = [h.strip() for h in header]
                if required not in header:
                    raise DatasetError(f"{self.display}:1: no column '{required}' (columns: {', '.join(header)})")
                start = reader.line_num + 1
                for row in reader:
                    line, start = start, reader.line_num + 1
                    if not any(cell.strip() for cell in row):
                        continue
                    yield line, dict(zip(header, row))
            except csv.Error as e:
                raise DatasetError(f"{self.display}:{start}: bad CSV ({e})")
            except UnicodeDecodeError as e:
                raise DatasetError(f"{self.display}:{start}: not UTF-8 text ({e.reason})")
