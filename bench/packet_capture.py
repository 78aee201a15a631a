"""What would timing responses from a kernel packet capture cost? AF_PACKET + TPACKET_V3 ring on loopback.

Item 3 of "Exact on a busy machine": each segment is stamped by the kernel as it passes the capture tap,
whatever the client is doing; a capture process would match segments to requests by connection and byte
offset. This measures the capture's own CPU while ``tokenswarm run`` drives the simulated engine at 256 and
1024 streams: an AF_PACKET socket bound to ``lo`` with a classic BPF filter (TCP from the engine's port), a
TPACKET_V3 ring (blocks retired every few ms), and per segment the work a capture mode needs at least:
the kernel stamp, the connection (ports), the TCP sequence number and payload length (the byte offset).

It prints, per level: segments per second, the capture process's CPU (cores, from its rusage), microseconds
per segment, the kernel's drop count, and the client's own CPU for scale. The kernel's side (cloning every
loopback packet to the tap and running the filter) is charged to the sending processes and is not in the
capture's figure. Needs root or CAP_NET_RAW (else it says so and exits 2). It prints figures; nothing here
asserts a wall time.

    python bench/packet_capture.py                      # 256 (TPOT 20 ms) and 1024 (TPOT 100 ms) streams
    python bench/packet_capture.py --duration 20s

Measured on a shared 2-core machine (load average 5-7 from other work), 20 s a level: 256 streams (TPOT
20 ms) 13,719 segments/s, the capture 0.020 of a core (1.44 us a segment), no drops, the client beside it
0.20 of a core; 1024 streams (TPOT 100 ms, 64 tokens) 9,492 segments/s, 0.016 of a core (1.70 us a segment),
no drops, the client 0.26. The capture's own CPU fits (a tenth of the client's). Built since as
``--timing capture`` (src/tokenswarm/capture.py: the SYN/SYN-ACK's sequence numbers map each segment to a byte
offset, a table per connection keeps (offsets, stamp) until the request's record is made; drained from the
event loop, not an OS thread, see its docstring); its cost inside the client is measured by
``bench/client_overhead.py --timing read,capture``. This loop keeps the first filter (both copies of each
segment on lo, pure ACKs included); the mode's filter keeps each segment with data or a SYN once (the
client's as they leave, the server's as they arrive).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import resource
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
SO_ATTACH_FILTER = 26
TP_STATUS_USER = 1
BLOCK_SIZE = 1 << 20
BLOCK_NR = 16
FRAME_SIZE = 2048
RETIRE_MS = 4  # a block is handed over at least this often, full or not


def bpf_tcp_sport(port: int) -> bytes:
    """A classic BPF program: IPv4 TCP segments whose source port is ``port`` (loopback frames carry an
    Ethernet header), whole packet kept; everything else dropped in the kernel."""
    prog = [
        (0x28, 0, 0, 12),  # ldh [12]: ethertype
        (0x15, 0, 8, ETH_P_IP),  # jeq IPv4
        (0x30, 0, 0, 23),  # ldb [23]: protocol
        (0x15, 0, 6, 6),  # jeq TCP
        (0x28, 0, 0, 20),  # ldh [20]: fragment offset
        (0x45, 4, 0, 0x1FFF),  # jset: a fragment -> drop
        (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf): IP header length
        (0x48, 0, 0, 14),  # ldh [x+14]: source port
        (0x15, 0, 1, port),  # jeq port
        (0x06, 0, 0, 0x40000),  # ret whole packet
        (0x06, 0, 0, 0),  # ret 0: drop
    ]
    return b"".join(struct.pack("HBBI", *ins) for ins in prog)


def capture(port: int, seconds: float) -> dict[str, float]:
    """Capture for ``seconds``: segments seen, bytes, per-connection byte offsets (the matching work)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    code = bpf_tcp_sport(port)
    prog = ctypes.create_string_buffer(code, len(code))
    addr = ctypes.addressof(prog)
    s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", len(code) // 8, addr))
    s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
    s.setsockopt(SOL_PACKET, PACKET_RX_RING, struct.pack("IIIIIII", BLOCK_SIZE, BLOCK_NR, FRAME_SIZE,
                                                          BLOCK_SIZE * BLOCK_NR // FRAME_SIZE, RETIRE_MS, 0, 0))
    s.bind(("lo", 0))
    ring = mmap.mmap(s.fileno(), BLOCK_SIZE * BLOCK_NR, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    poll = select.poll()
    poll.register(s, select.POLLIN | select.POLLERR)
    hdr = struct.Struct("IIIIIIII")  # tpacket_hdr_v1 up to ts_first_pkt: status, num_pkts, first, blk_len, seq(8)..
    pkt = struct.Struct("IIIIIIHH")  # tpacket3_hdr: next_offset, sec, nsec, snaplen, len, status, mac, net
    segments = payload = 0
    offsets: dict[int, int] = {}  # client port -> next byte offset
    stamps_last = 0.0
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    end = time.monotonic() + seconds
    block = 0
    while time.monotonic() < end:
        base = block * BLOCK_SIZE
        status = struct.unpack_from("I", ring, base + 8)[0]
        if not status & TP_STATUS_USER:
            poll.poll(50)
            continue
        _st, num, first, _len, *_ = hdr.unpack_from(ring, base + 8)
        off = base + first
        for _ in range(num):
            nxt, sec, nsec, snap, _plen, _pst, mac, net = pkt.unpack_from(ring, off)
            ip = off + net
            ihl = (ring[ip] & 0x0F) * 4
            total = struct.unpack_from("!H", ring, ip + 2)[0]
            tcp = ip + ihl
            dport, seq = struct.unpack_from("!HI", ring, tcp + 2)
            doff = (ring[tcp + 12] >> 4) * 4
            size = total - ihl - doff
            if size > 0:
                segments += 1
                payload += size
                offsets[dport] = seq + size  # the byte offset this segment ends at: what a request is matched by
                stamps_last = sec + nsec * 1e-9
            off += nxt
        struct.pack_into("I", ring, base + 8, 0)  # hand the block back to the kernel
        block = (block + 1) % BLOCK_NR
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    packets, drops = struct.unpack("II", s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return {"segments": segments, "payload_bytes": payload, "connections": len(offsets), "cpu_s": cpu,
            "seconds": seconds, "kernel_packets": packets, "kernel_drops": drops, "last_stamp": stamps_last}


def one(users: int, tpot_ms: float, tokens: int, duration: str, secs: float) -> dict[str, float]:
    from tokenswarm.simengine import SimProcess

    sim = SimProcess(["--ttft-ms", "200", "--tpot-ms", str(tpot_ms)])
    sim.start()
    try:
        port = int(sim.url.rsplit(":", 1)[1])
        cap = subprocess.Popen([sys.executable, __file__, "--capture", str(port), "--seconds", str(secs)],
                               stdout=subprocess.PIPE, text=True)
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
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)).close()
    except (PermissionError, AttributeError, OSError) as e:
        print(f"no packet capture here: {e}")
        raise SystemExit(2) from None
    secs = float(args.duration.rstrip("s"))
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
