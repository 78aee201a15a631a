"""Can the simulated engine keep its token schedule at 1024+ streams? Its own schedule error under load.

Starts ``tokenswarm simengine`` with fixed timing (optionally ``--workers N`` processes on one port), opens
``--streams`` concurrent streaming requests from a minimal asyncio client in this process (it only counts
chunks, so the engine is what is measured; run on a 2-core machine, each gets a core), keeps them all busy
for ``--duration`` seconds, and prints: chunks written per second, the engine's schedule error (actual minus
planned write time: p50, p99, max, from its own exit stats), and the CPU of the engine and of this client.

    python bench/simengine_capacity.py --streams 1024 --tpot-ms 50
    python bench/simengine_capacity.py --streams 2048 --tpot-ms 50 --workers 2

It prints figures; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time

import psutil

from tokenswarm.simengine import SimProcess

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "one two three four"}],
                   "max_tokens": 0, "stream": True})


async def stream_forever(host: str, port: int, tokens: int, stop: float, counts: list[int]) -> None:
    """One user: request after request on a keep-alive connection, counting chunks until ``stop``."""
    reader, writer = await asyncio.open_connection(host, port)
    body = BODY.replace('"max_tokens": 0', f'"max_tokens": {tokens}').encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    try:
        while time.monotonic() < stop:
            writer.write(head + body)
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                counts[0] += data.count(b"data: {")
                if data.endswith(b"0\r\n\r\n"):  # the end of the chunked response
                    break
    finally:
        writer.close()


async def drive(url: str, streams: int, tokens: int, duration: float) -> tuple[int, float]:
    host, port = url.split("//")[1].split(":")
    counts = [0]
    t0 = time.monotonic()
    stop = t0 + duration
    await asyncio.gather(*(stream_forever(host, int(port), tokens, stop, counts) for _ in range(streams)))
    return counts[0], time.monotonic() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=int, default=1024)
    p.add_argument("--tpot-ms", type=float, default=50.0)
    p.add_argument("--ttft-ms", type=float, default=100.0)
    p.add_argument("--tokens", type=int, default=100, help="output tokens per request")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    p.add_argument("--workers", type=int, default=1, help="engine processes on one port")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sim = SimProcess(["--ttft-ms", str(args.ttft_ms), "--tpot-ms", str(args.tpot_ms), "--workers",
                      str(args.workers)]).start()
    procs = [psutil.Process(sim.proc.pid)] + psutil.Process(sim.proc.pid).children()
    eng0 = sum(sum(pr.cpu_times()[:2]) for pr in procs)
    me = psutil.Process(os.getpid())
    cli0 = sum(me.cpu_times()[:2])
    chunks, wall = asyncio.run(drive(sim.url, args.streams, args.tokens, args.duration))
    eng1 = sum(sum(pr.cpu_times()[:2]) for pr in procs if pr.is_running())
    cli1 = sum(me.cpu_times()[:2])
    sim.stop()
    s = sim.final_stats()
    err = s.get("schedule_error_ms", {})
    ideal = args.streams * 1000.0 / args.tpot_ms
    print(f"engine: TTFT {args.ttft_ms:g} ms, TPOT {args.tpot_ms:g} ms, {args.tokens} tokens, "
          f"{args.workers} process(es); {args.streams} streams for {args.duration:g} s")
    print(f"chunks/s {chunks / wall:,.0f} (steady-state ideal {ideal:,.0f}); requests {s.get('requests')}")
    print(f"schedule error p50 {err.get('p50', float('nan')):.3f} ms, p99 {err.get('p99', float('nan')):.3f} ms, "
          f"p99.9 {err.get('p999', float('nan')):.3f} ms, max {err.get('max', float('nan')):.3f} ms "
          f"over {err.get('count', 0):,} writes")
    print(f"CPU: engine {(eng1 - eng0) / wall:.2f} core, this client {(cli1 - cli0) / wall:.2f} core")


if __name__ == "__main__":
    main()
