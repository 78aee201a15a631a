"""CPU cost of SSE framing per event: tokenswarm's decoder against sseclient-py, on a recorded stream.

The client decodes every event of every stream inside its event loop, so what framing costs per event is
time every other stream waits. Each decoder gets the same bytes, one piece per event as a server writes
them (and, second, in 1460-byte pieces, as TCP may deliver them), and must yield the same events. Prints
the best of several rounds in microseconds per event; asserts nothing about time.

    python bench/sse_decode.py [--events 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import time

from sseclient import SSEClient

from tokenswarm.sse import SSEDecoder


def pieces(n: int) -> list[bytes]:
    """``n`` chat completion chunks, one piece each, like a vLLM stream."""
    out = []
    for i in range(n):
        obj = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1732000000, "model": "m",
               "choices": [{"index": 0, "delta": {"content": f" tok{i % 97}"}, "logprobs": None,
                            "finish_reason": None}]}
        out.append(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")
    return out


def ours(chunks: list[bytes]) -> list[str]:
    d = SSEDecoder()
    data = []
    for c in chunks:
        for ev in d.feed(c):
            data.append(ev.data)
    return data


def sseclient_py(chunks: list[bytes]) -> list[str]:
    return [ev.data for ev in SSEClient(chunks).events()]


def best(fn, chunks: list[bytes], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(chunks)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    per_event = pieces(args.events)
    body = b"".join(per_event)
    tcp = [body[i:i + 1460] for i in range(0, len(body), 1460)]
    for name, chunks in (("one piece per event", per_event), ("1460-byte pieces", tcp)):
        assert ours(chunks) == sseclient_py(chunks), "the decoders disagree"
        a = best(ours, chunks, args.rounds) / args.events * 1e6
        b = best(sseclient_py, chunks, args.rounds) / args.events * 1e6
        print(f"{name:20s}  tokenswarm {a:6.2f} us/event   sseclient-py {b:6.2f} us/event   ratio {b / a:4.1f}x")


if __name__ == "__main__":
    main()
