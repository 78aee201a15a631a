"""Server-sent events: the WHATWG event-stream format, decoded incrementally.

Source: the HTML Living Standard, "9.2.6 Interpreting an event stream"
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
What this decoder does, rule by rule:

* Lines end with CRLF, a bare LF or a bare CR; a CR at the end of one chunk and
  an LF at the start of the next are one line end.
* One UTF-8 byte order mark at the very start of the stream is dropped.
* A line starting with ``:`` is a comment. Otherwise the field name is what
  comes before the first ``:`` (the whole line when there is none) and the
  value what comes after it, less one leading space.
* ``data`` lines append their value and an LF to the data buffer: one event
  may span several ``data:`` lines. ``event`` sets the event type, ``id`` the
  last event id (ignored when it holds a NUL), ``retry`` the reconnection time
  (only when all ASCII digits). Other field names are ignored.
* A blank line dispatches the event: when the data buffer is empty nothing is
  dispatched (only the event type is reset); otherwise its last LF is removed
  and an :class:`SSEEvent` is emitted with the type (``message`` by default).
* Text is decoded as UTF-8 with U+FFFD for invalid bytes, as the standard's
  decoder does: a stray byte spoils one character, not the event.

One deliberate leniency: at the end of the stream the standard discards an
event that lacks its final blank line; :meth:`SSEDecoder.close` returns it
instead, so a server that ends with ``data: [DONE]`` and closes is read as
it meant. The caller decides what to do with it.

Why not sseclient-py: version 1.9.0 breaks three of these rules (it drops the
first event of a stream that starts with a byte order mark, raises
UnicodeDecodeError on invalid UTF-8, and merges two events when a blank line
written as CRLF follows an LF-ended line), and it reads by pulling from a
blocking source where the client pushes what each ``recv()`` returned. Its
cost is not the reason: ``bench/sse_decode.py`` measures it at 1.4-2x this
decoder's, about 2 us an event against 1-1.5.

Pure: no I/O, no locust. One decoder per response.
"""

from __future__ import annotations

from typing import NamedTuple

BOM = b"\xef\xbb\xbf"


class SSEEvent(NamedTuple):
    """One dispatched event: its type (``message`` unless an ``event:`` field said otherwise), its data
    (``data:`` lines joined with LF) and the last event id seen (``""`` when none)."""

    event: str
    data: str
    id: str = ""


class SSEDecoder:
    """Feed it the body bytes of an event stream as they arrive; it returns the events each piece completes.

    >>> d = SSEDecoder()
    >>> d.feed(b'data: {"a":\\r\\ndata: 1}\\r\\n\\r') + d.feed(b'\\nevent: error\\rdata: x\\r\\r')
    [SSEEvent(event='message', data='{"a":\\n1}', id=''), SSEEvent(event='error', data='x', id='')]
    """

    __slots__ = ("_pending", "_data", "_event", "_id", "retry_ms", "_start", "_skip_lf", "ended_at_event")

    def __init__(self) -> None:
        self._pending = b""  # an incomplete last line
        self._data: list[bytes] = []  # the data buffer, one item per data line
        self._event = b""  # the event type buffer
        self._id = ""  # the last event id
        self.retry_ms: int | None = None  # the last valid ``retry:`` field, milliseconds
        self._start = True  # nothing seen yet: a BOM may come
        self._skip_lf = False  # the previous piece ended with CR: an LF now belongs to that line end
        #: the last :meth:`feed` ended exactly where its last event ended (its blank line was the piece's last
        #: byte, bar a CR/LF pair split across pieces): the piece's arrival time is that event's own
        self.ended_at_event = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events completed by ``chunk`` (possibly none), in order."""
        if self._start:
            chunk = self._pending + chunk
            self._pending = b""
            if len(chunk) < 3 and BOM.startswith(chunk):
                self._pending = chunk  # too short to tell: wait for more
                return []
            if chunk.startswith(BOM):
                chunk = chunk[3:]
            self._start = False
        if self._skip_lf:
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
            self._skip_lf = False
        if b"\r" in chunk:
            self._skip_lf = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in chunk:
            self._pending += chunk
            self.ended_at_event = False
            return []
        lines = (self._pending + chunk).split(b"\n") if self._pending else chunk.split(b"\n")
        self._pending = lines.pop()
        out: list[SSEEvent] = []
        last = -1  # the line that dispatched the last event
        for i, line in enumerate(lines):
            if not line:
                if self._data:
                    out.append(self._dispatch())
                    last = i
                else:
                    self._event = b""
            elif line[0] != 58:  # not a ":" comment
                self._field(line)
        self.ended_at_event = last == len(lines) - 1 and not self._pending
        return out

    def close(self) -> SSEEvent | None:
        """End of stream: the event whose final blank line never came, if its data buffer holds any
        (the standard discards it; see the module docstring)."""
        if self._pending and not self._start:
            line, self._pending = self._pending, b""
            if line[0] != 58:
                self._field(line)
        return self._dispatch() if self._data else None

    def _field(self, line: bytes) -> None:
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value
        elif name == b"id":
            if b"\0" not in value:  # an id holding NUL is ignored
                self._id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self.retry_ms = int(value)

    def _dispatch(self) -> SSEEvent:
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        event = self._event.decode("utf-8", "replace") if self._event else "message"
        self._data = []
        self._event = b""
        return SSEEvent(event, data.decode("utf-8", "replace"), self._id)
