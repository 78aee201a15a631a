"""What does ``--timing capture``'s packet capture cost? Its reader, on its own, at 256 and 1024 streams.

Item 3 of "Exact on a busy machine": each segment is stamped by the kernel as it passes the capture tap,
whatever the client is doing, and matched to its request by connection and byte offset. This runs the mode's
own reader (:class:`tokenswarm.capture.Capture`: an AF_PACKET socket on ``lo``, its BPF filter, a TPACKET_V3
ring, the per-connection segment table) in a process of its own, drained in a loop, while ``tokenswarm run``
drives the simulated engine, so its CPU is separate from the client's. The capture opens before the run, so it
sees every connection's SYN and files every segment under its connection, as the mode does.

It prints, per level: segments per second, the capture process's CPU (cores, from its rusage), microseconds
per segment, the kernel's drop count, and the client's own CPU for scale. The kernel's side (cloning every
loopback packet to the tap and running the filter) is charged to the sending processes and is not in the
capture's figure. Needs root or CAP_NET_RAW (else it says so and exits 2). It prints figures; nothing here
asserts a wall time. Its cost inside the client (a greenlet draining the ring, records matched to segments)
is measured by ``bench/client_overhead.py --timing read,capture``.

    python bench/packet_capture.py                      # 256 (TPOT 20 ms) and 1024 (TPOT 100 ms) streams
    python bench/packet_capture.py --duration 20s

Measured on this shared 2-core machine (load average 1.2-1.4), 20 s a level: 256 streams (TPOT 20 ms) 9,990
segments/s, the capture 0.054 of a core (5.4 us a segment: reading, filing under its connection, the offsets'
table), no drops, the client beside it 0.62 of a core; 1024 streams (TPOT 100 ms, 64 tokens) 8,758 segments/s,
0.043 of a core (4.9 us a segment), no drops, the client 0.53. (An earlier loop of its own that only unpacked
each segment's stamp, ports and sequence number cost 0.016-0.020 of a core: the table is most of the cost.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import subprocess
import sys
import tempfile
import time


def capture(port: int, seconds: float) -> dict[str, float]:
    """Run the mode's reader for ``seconds`` (it says "ready" on stdout once its socket is open): segments
    taken, the kernel's packet and drop counts, and this process's CPU seconds."""
    from tokenswarm.capture import Capture

    cap = Capture(port)
    print("ready", flush=True)
    fd = cap.sock.fileno()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not cap.drain():
            select.select([fd], [], [], 0.05)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    got = cap.stats()
    got["cpu_s"] = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    got["seconds"] = seconds
    got["connections"] = len(cap.table.ports)
    return got


def one(users: int, tpot_ms: float, tokens: int, duration: str, secs: float) -> dict[str, float]:
    from tokenswarm.simengine import SimProcess

    sim = SimProcess(["--ttft-ms", "200", "--tpot-ms", str(tpot_ms)])
    sim.start()
    try:
        port = int(sim.url.rsplit(":", 1)[1])
        cap = subprocess.Popen([sys.executable, __file__, "--capture", str(port), "--seconds", str(secs)],
                               stdout=subprocess.PIPE, text=True)
        if cap.stdout.readline().strip() != "ready":  # the capture must see the connections open
            raise SystemExit(f"the capture did not start (exit {cap.wait()})")
        out = tempfile.mkdtemp(prefix="tokenswarm-capture-")
        t0 = time.monotonic()
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = subprocess.run([sys.executable, "-m", "tokenswarm", "run", "--host", sim.url, "--users", str(users),
                              "--duration", duration, "--max-tokens", str(tokens), "--out", out],
                             capture_output=True, text=True)
        wall = time.monotonic() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        got = json.loads(cap.communicate(timeout=secs + 30)[0])
        got["client_cores"] = ((r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)) / wall
        got["run_rc"] = run.returncode
        return got
    finally:
        sim.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", default="20s", help="each level's run (default 20s)")
    p.add_argument("--capture", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.capture:
        print(json.dumps(capture(args.capture, args.seconds)))
        return
    try:
        from tokenswarm.capture import check

        check("127.0.0.1", 0)
    except Exception as e:  # CaptureError: one line naming what is missing
        print(f"no packet capture here: {e}")
        raise SystemExit(2) from None
    secs = float(args.duration.rstrip("s"))
    from tokenswarm.capture import BLOCK_NR, BLOCK_SIZE, RETIRE_MS

    print(f"capture on lo, TPACKET_V3 ring {BLOCK_NR} x {BLOCK_SIZE >> 10} KiB, blocks retired every {RETIRE_MS} ms;"
          f" {os.cpu_count()} cores (a shared machine: other work ran beside it)")
    print(f"{'streams':>7} {'TPOT ms':>7} {'segments/s':>10} {'capture CPU (cores)':>19} {'us/segment':>10} "
          f"{'drops':>6} {'client CPU (cores)':>18}")
    for users, tpot, tokens in ((256, 20.0, 128), (1024, 100.0, 64)):
        r = one(users, tpot, tokens, args.duration, secs + 4)
        rate = r["segments"] / r["seconds"]
        per = 1e6 * r["cpu_s"] / r["segments"] if r["segments"] else float("nan")
        print(f"{users:>7} {tpot:>7g} {rate:>10.0f} {r['cpu_s'] / r['seconds']:>19.3f} {per:>10.2f} "
              f"{r['kernel_drops']:>6} {r['client_cores']:>18.2f}", flush=True)


if __name__ == "__main__":
    main()
