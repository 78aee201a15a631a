"""CPU cost of HTTP/1.1 framing per event: the client's response reader beside h11 on a chunked SSE stream.

The client unframes every chunk of every stream inside its event loop, so what framing costs per event is
time every other stream waits. The reader gets one response (a vLLM-like chat stream, one chunk per event)
in three cuttings: one read per chunk (a stream at low load: each token arrives alone), 16 chunks per read
(reads that found several tokens waiting), and 1460-byte pieces (as TCP may deliver them, cutting chunks
anywhere); each must give back the whole body. For scale, the same events through the SSE decoder and the
OpenAI chat dialect (what the client does next with each event). Prints the best of several rounds in
microseconds per event; asserts nothing about time. tokenswarm/http/framing.py has the end-to-end figures
(bench/client_overhead.py) and why the client keeps its own reader. h11 comes with the dev extra.

    python bench/http_framing.py [--events 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse

import h11

from sse_decode import best, pieces  # the same vLLM-like chat events (bench/ is the script's folder)
from tokenswarm.dialects import get_dialect
from tokenswarm.http.framing import MAX_HEAD_BYTES, Head, ProtocolError, ResponseReader
from tokenswarm.sse import SSEDecoder

HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n"
        b"date: Mon, 01 Jan 2024 00:00:00 GMT\r\nserver: uvicorn\r\n\r\n")


def framed(evs: list[bytes]) -> list[bytes]:
    """One HTTP chunk per event; the head rides with the first, the terminator with the last."""
    out = [b"%x\r\n%b\r\n" % (len(e), e) for e in evs]
    out[0] = HEAD + out[0]
    out[-1] += b"0\r\n\r\n"
    return out


class H11ResponseReader:
    """tokenswarm's :class:`~tokenswarm.http.framing.ResponseReader` interface on h11's client state machine
    (sans-IO), as it was tried in the client's place."""

    __slots__ = ("method", "head", "_c", "complete", "_extra")

    def __init__(self, method: str = "POST") -> None:
        self.method = method
        self.head: Head | None = None
        self.complete = False
        self._extra = False  # bytes came after the message
        c = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        # the request bytes are written by the caller (request_head): tell the state machine one was sent
        c.send(h11.Request(method=method, target="/", headers=[("Host", "-"), ("Content-Length", "0")]))
        c.send(h11.EndOfMessage())
        self._c = c

    @property
    def reusable(self) -> bool:
        c = self._c
        return (self.complete and not self._extra and c.their_state is h11.DONE and not c.trailing_data[0]
                and not c.trailing_data[1])

    def feed(self, data: bytes) -> bytes:
        c = self._c
        try:
            c.receive_data(data)
            return self._events()
        except h11.RemoteProtocolError as e:
            raise ProtocolError(str(e)) from None

    def _events(self) -> bytes:
        c = self._c
        out: list[bytes] = []
        Data = h11.Data
        while True:
            try:
                ev = c.next_event()
            except h11.RemoteProtocolError:
                if not self.complete:
                    raise
                self._extra = True  # after the end of the message: the connection is not reusable
                break
            t = type(ev)
            if t is Data:
                out.append(bytes(ev.data))
            elif ev is h11.NEED_DATA or ev is h11.PAUSED:
                break
            elif t is h11.Response:
                hdrs = {k.decode("latin-1"): v.decode("latin-1") for k, v in ev.headers}
                conn = hdrs.get("connection", "").lower()
                ka = "close" not in conn if ev.http_version == b"1.1" else "keep-alive" in conn
                self.head = Head(ev.status_code, ev.reason.decode("latin-1"), hdrs, ka)
            elif t is h11.EndOfMessage:
                self.complete = True
            elif t is h11.ConnectionClosed:
                break
        if not out:
            return b""
        return out[0] if len(out) == 1 else b"".join(out)

    def eof(self) -> None:
        c = self._c
        try:
            c.receive_data(b"")
            self._events()
        except h11.RemoteProtocolError:
            pass  # closed inside the message: not complete


def read_all(reads: list[bytes], reader: type = ResponseReader) -> bytes:
    r = reader()
    feed = r.feed
    body = [feed(b) for b in reads]
    assert r.complete and r.reusable
    return b"".join(body)


def sse_and_dialect(bodies: list[bytes]) -> int:
    d = SSEDecoder()
    parse = get_dialect("openai-chat").stream().parse_event
    n = 0
    for b in bodies:
        for ev in d.feed(b):
            parse(ev)
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    n = args.events
    evs = pieces(n)
    per_chunk = framed(evs)
    wire = b"".join(per_chunk)
    cuttings = {
        "one chunk per read": per_chunk,
        "16 chunks per read": [b"".join(per_chunk[i:i + 16]) for i in range(0, n, 16)],
        "1460-byte reads": [wire[i:i + 1460] for i in range(0, len(wire), 1460)],
    }
    body = b"".join(evs)
    for name, reads in cuttings.items():
        figures = []
        for reader in (ResponseReader, H11ResponseReader):
            assert read_all(reads, reader) == body, f"{reader.__name__} lost bytes"
            figures.append(best(lambda r, reader=reader: read_all(r, reader), reads, args.rounds) / n * 1e6)
        print(f"{name:20s}  tokenswarm's reader {figures[0]:6.2f} us/event   h11 {figures[1]:6.2f} us/event")
    assert sse_and_dialect(evs) == n
    c = best(sse_and_dialect, evs, args.rounds) / n * 1e6
    print(f"{'for scale':20s}  SSE decoder + OpenAI chat dialect {c:6.2f} us/event")


if __name__ == "__main__":
    main()
