"""CPU cost of HTTP/1.1 framing per event: the client's response reader (h11) on a chunked SSE stream.

The client unframes every chunk of every stream inside its event loop, so what framing costs per event is
time every other stream waits. The reader gets one response (a vLLM-like chat stream, one chunk per event)
in three cuttings: one read per chunk (a stream at low load: each token arrives alone), 16 chunks per read
(reads that found several tokens waiting), and 1460-byte pieces (as TCP may deliver them, cutting chunks
anywhere); each must give back the whole body. For scale, the same events through the SSE decoder and the
OpenAI chat dialect (what the client does next with each event). Prints the best of several rounds in
microseconds per event; asserts nothing about time. (The hand-made reader that h11 replaced measured about
1 us an event in every cutting, h11 4-5 us: tokenswarm/http/framing.py has the end-to-end figures.)

    python bench/http_framing.py [--events 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import time

from tokenswarm.dialects import get_dialect
from tokenswarm.http.framing import ResponseReader
from tokenswarm.sse import SSEDecoder

HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n"
        b"date: Mon, 01 Jan 2024 00:00:00 GMT\r\nserver: uvicorn\r\n\r\n")


def events(n: int) -> list[bytes]:
    """``n`` chat completion chunks as server-sent events, like a vLLM stream."""
    out = []
    for i in range(n):
        obj = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1732000000, "model": "m",
               "choices": [{"index": 0, "delta": {"content": f" tok{i % 97}"}, "logprobs": None,
                            "finish_reason": None}]}
        out.append(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")
    return out


def framed(evs: list[bytes]) -> list[bytes]:
    """One HTTP chunk per event; the head rides with the first, the terminator with the last."""
    out = [b"%x\r\n%b\r\n" % (len(e), e) for e in evs]
    out[0] = HEAD + out[0]
    out[-1] += b"0\r\n\r\n"
    return out


def read_all(reads: list[bytes]) -> bytes:
    r = ResponseReader()
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


def best(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    n = args.events
    evs = events(n)
    per_chunk = framed(evs)
    wire = b"".join(per_chunk)
    cuttings = {
        "one chunk per read": per_chunk,
        "16 chunks per read": [b"".join(per_chunk[i:i + 16]) for i in range(0, n, 16)],
        "1460-byte reads": [wire[i:i + 1460] for i in range(0, len(wire), 1460)],
    }
    body = b"".join(evs)
    for name, reads in cuttings.items():
        assert read_all(reads) == body, "the reader lost bytes"
        a = best(lambda reads=reads: read_all(reads), args.rounds) / n * 1e6
        print(f"{name:20s}  response reader {a:6.2f} us/event")
    assert sse_and_dialect(evs) == n
    c = best(lambda: sse_and_dialect(evs), args.rounds) / n * 1e6
    print(f"{'for scale':20s}  SSE decoder + OpenAI chat dialect {c:6.2f} us/event")


if __name__ == "__main__":
    main()
