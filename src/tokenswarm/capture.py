"""--timing capture: response times from a kernel packet capture, whatever the client process is doing.

A late reader loses arrival times: the kernel merges segments that wait in a socket's queue, and every read of
them carries the newest one's stamp (issue "Exact on a busy machine", item 3). A packet capture sees each
segment as it passes the interface, stamped by the kernel then. This module keeps, per TCP connection to the
target, every data segment's byte range and stamp, and answers: when had the connection's byte stream been
delivered up to byte N (in each direction)?

Parts, each usable on its own:

* :class:`Direction`: one direction of one connection: its initial sequence number (from the SYN or
  SYN-ACK) and its data segments as byte offsets of the stream (sequence numbers unwrapped past 2^32), with
  :meth:`Direction.delivered`: for any byte offsets, the moment every byte up to each was there (a segment
  seen twice counts at its first copy; bytes after a hole count once the hole is filled; a hole not yet
  filled answers None).
* :class:`SegmentTable`: the connections, keyed by the client's port and told apart by their SYN (a port used
  again is a new connection: :meth:`SegmentTable.connection` finds the one whose SYN was sent within a
  ``connect()`` call's span).
* :class:`Capture`: an ``AF_PACKET`` socket with a ``TPACKET_V3`` ring and a classic BPF filter (IPv4 TCP to
  or from the target's port), read block by block whenever its owner drains it (its stamps are the kernel's,
  however late it is read), feeding a :class:`SegmentTable`. Needs root or
  CAP_NET_RAW (:func:`check` says why not, in one line). Loopback targets only: their segments pass ``lo``.

Times are ``time.perf_counter()`` readings, as every client time (the kernel's CLOCK_REALTIME stamp, moved
by the wall-minus-perf offset read with each block). Cost measured in bench/packet_capture.py and
bench/client_overhead.py (``--timing capture``).
"""

from __future__ import annotations

import ctypes
import ipaddress
import mmap
import select
import socket
import struct
import threading
import time

__all__ = ["Direction", "Connection", "SegmentTable", "Capture", "CaptureError", "check", "interface_for"]

WRAP = 1 << 32
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
SO_ATTACH_FILTER = 26
TP_STATUS_USER = 1
BLOCK_SIZE = 1 << 15  # 32 KiB: ~120 segments (headers only); a block is handed over every RETIRE_MS or when full
BLOCK_NR = 1024  # 32 MiB: at RETIRE_MS a block, the capture may stall 2 s before the kernel drops
FRAME_SIZE = 2048
RETIRE_MS = 2  # a block is handed over at least this often, full or not: how long a record may wait for it
SYN, ACK, RST = 0x02, 0x10, 0x04
SKF_AD_OFF, SKF_AD_PKTTYPE = -0x1000 & 0xFFFFFFFF, 4  # BPF's ancillary load of skb->pkt_type
PACKET_HOST, PACKET_OUTGOING = 0, 4
#: epochs kept per client port: the newest, and the one before (a record of it may still be waiting)
EPOCHS_KEPT = 2


class CaptureError(Exception):
    """The capture cannot run here: one line saying why (no CAP_NET_RAW, not Linux, a target not on loopback)."""


class Direction:
    """One direction of one TCP connection: the data segments seen, as byte offsets of its stream.

    ``isn`` is the sequence number of the SYN (its first data byte is ``isn + 1``, offset 0). :meth:`add` takes a
    segment by its sequence number and payload length, unwrapping sequence numbers past 2^32 towards the
    highest offset seen (a segment more than 2 GiB from it would be misplaced; TCP's window is far smaller).
    """

    __slots__ = ("isn", "segs", "top", "floor", "pruned")

    def __init__(self, isn: int) -> None:
        self.isn = isn
        self.segs: list[tuple[int, int, float]] = []  # (start, end, stamp) in arrival order
        self.top = 0  # the highest end offset seen
        self.floor = 0  # segments ending at or before this were released (:meth:`release`)
        self.pruned = 0  # ... and dropped up to this (by :meth:`add`, in the capture's thread)

    def add(self, seq: int, size: int, stamp: float) -> None:
        rel = (seq - self.isn - 1) % WRAP
        top = self.top
        start = rel + (top - top % WRAP)
        if start - top > WRAP // 2 and start >= WRAP:
            start -= WRAP
        elif top - start > WRAP // 2:
            start += WRAP
        end = start + size
        floor = self.floor
        if end <= floor:
            return  # a copy of bytes already released: nothing waits for them
        if floor > self.pruned:  # pruned here, by the one thread that adds: no segment is lost to a race
            self.pruned = floor
            self.segs = [s for s in self.segs if s[1] > floor]
        self.segs.append((start, end, stamp))
        if end > top:
            self.top = end

    def delivered(self, offsets: list[int], lo: int = 0) -> list[float | None]:
        """For each byte offset (ascending), when every byte from ``lo`` up to and including it had arrived: the
        latest of the first arrivals of those bytes. None for an offset not yet covered without a hole."""
        out: list[float | None] = []
        if not offsets:
            return out
        covered = lo  # bytes [lo, covered) are there
        when = float("-inf")
        it = iter(sorted(self.segs))  # by start, then by stamp: the first copy of a range comes first
        seg = next(it, None)
        for off in offsets:
            while covered <= off and seg is not None:
                start, end, stamp = seg
                if start > covered:
                    break  # a hole
                if end > covered:
                    covered = end
                    if stamp > when:
                        when = stamp
                seg = next(it, None)
            out.append(when if covered > off else None)
        return out

    def release(self, upto: int) -> None:
        """Forget segments that end at or before offset ``upto`` (a record no longer needs them): they go at the
        next :meth:`add`, which only the capture's thread calls (the list is never replaced under it)."""
        if upto > self.floor:
            self.floor = upto


class Connection:
    """One TCP connection the capture saw open: the SYN's stamp, and each direction (``tx``: client to server,
    ``rx``: server to client; ``rx`` is None until the SYN-ACK was seen)."""

    __slots__ = ("syn_at", "tx", "rx")

    def __init__(self, isn: int, syn_at: float) -> None:
        self.syn_at = syn_at
        self.tx = Direction(isn)
        self.rx: Direction | None = None


class SegmentTable:
    """Connections by client port; a SYN with a new sequence number starts a new one (port reuse)."""

    __slots__ = ("ports", "newest")

    def __init__(self) -> None:
        self.ports: dict[int, list[Connection]] = {}
        self.newest = 0.0  # the stamp of the latest packet taken: how far the capture has read

    def syn(self, port: int, isn: int, stamp: float) -> None:
        conns = self.ports.setdefault(port, [])
        if conns and conns[-1].tx.isn == isn:
            return  # the SYN sent again
        conns.append(Connection(isn, stamp))
        if len(conns) > EPOCHS_KEPT:
            del conns[0]

    def synack(self, port: int, isn: int) -> None:
        conns = self.ports.get(port)
        if conns and conns[-1].rx is None:
            conns[-1].rx = Direction(isn)

    def data(self, port: int, to_server: bool, seq: int, size: int, stamp: float) -> None:
        conns = self.ports.get(port)
        if not conns:
            return  # a connection opened before the capture started: its records keep their read times
        c = conns[-1]
        d = c.tx if to_server else c.rx
        if d is not None:
            d.add(seq, size, stamp)

    def connection(self, port: int, t0: float, t1: float) -> Connection | None:
        """The connection from client port ``port`` whose SYN was stamped within ``[t0, t1]`` (the span of the
        ``connect()`` call that opened it); None when the capture saw no such SYN."""
        for c in reversed(self.ports.get(port, ())):
            if t0 <= c.syn_at <= t1:
                return c
        return None


def bpf_tcp_port(port: int) -> bytes:
    """A classic BPF program: IPv4 TCP segments that carry data or a SYN, from ``port`` as they arrive and to
    ``port`` as they leave (frames with an Ethernet header, as on ``lo``, where each segment shows twice), at
    most the headers kept (192 bytes); everything else (the other copy, other traffic, pure ACKs, fragments)
    dropped in the kernel."""
    labels: dict[str, int] = {}
    code: list[tuple[int, str | int, str | int, int]] = []

    def op(c: int, jt: str | int = 0, jf: str | int = 0, k: int = 0) -> None:
        code.append((c, jt, jf, k))

    op(0x20, k=SKF_AD_OFF + SKF_AD_PKTTYPE)  # the packet's type: lo shows each segment leaving, then arriving
    op(0x02, k=1)  # st M[1]
    op(0x28, k=12)  # ldh [12]: ethertype
    op(0x15, 0, "drop", ETH_P_IP)  # jeq IPv4
    op(0x30, k=23)  # ldb [23]: protocol
    op(0x15, 0, "drop", 6)  # jeq TCP
    op(0x28, k=20)  # ldh [20]: fragment offset
    op(0x45, "drop", 0, 0x1FFF)  # jset: a fragment -> drop
    op(0xB1, k=14)  # ldxb 4*([14]&0xf): X = IP header length
    op(0x60, k=1)  # ld M[1]: the type
    op(0x15, "arriving", 0, PACKET_HOST)  # the server's segments as they arrive ...
    op(0x15, "leaving", "drop", PACKET_OUTGOING)  # ... the client's as they leave (its transmit moment)
    labels["arriving"] = len(code)
    op(0x48, k=14)  # ldh [x+14]: source port
    op(0x15, "ours", "drop", port)  # jeq port
    labels["leaving"] = len(code)
    op(0x48, k=16)  # ldh [x+16]: destination port
    op(0x15, 0, "drop", port)  # jeq port
    labels["ours"] = len(code)
    op(0x50, k=27)  # ldb [x+27]: TCP flags
    op(0x45, "keep", 0, SYN)  # jset SYN -> keep
    op(0x50, k=26)  # ldb [x+26]: TCP data offset
    op(0x54, k=0xF0)  # and 0xf0
    op(0x74, k=2)  # rsh 2: TCP header length
    op(0x0C)  # add x: + IP header length
    op(0x02, k=0)  # st M[0]
    op(0x61, k=0)  # ldx M[0]
    op(0x28, k=16)  # ldh [16]: IP total length
    op(0x1C)  # sub x: payload length
    op(0x25, "keep", "drop", 0)  # jgt 0
    labels["keep"] = len(code)
    op(0x06, k=192)  # ret: the headers
    labels["drop"] = len(code)
    op(0x06, k=0)  # ret 0: drop
    prog = [(c, labels[jt] - i - 1 if isinstance(jt, str) else jt, labels[jf] - i - 1 if isinstance(jf, str) else jf, k)
            for i, (c, jt, jf, k) in enumerate(code)]
    return b"".join(struct.pack("HBBI", *ins) for ins in prog)


def _open(port: int, iface: str) -> socket.socket:
    """The AF_PACKET socket with its filter, bound to ``iface``. PermissionError/OSError as the kernel says."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        code = bpf_tcp_port(port)
        prog = ctypes.create_string_buffer(code, len(code))
        s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", len(code) // 8, ctypes.addressof(prog)))
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        s.setsockopt(SOL_PACKET, PACKET_RX_RING, struct.pack("IIIIIII", BLOCK_SIZE, BLOCK_NR, FRAME_SIZE,
                                                              BLOCK_SIZE * BLOCK_NR // FRAME_SIZE, RETIRE_MS, 0, 0))
        s.bind((iface, 0))
    except BaseException:
        s.close()
        raise
    return s


def interface_for(host: str) -> str:
    """The interface whose segments the capture reads for a target at ``host``: ``lo`` for a loopback address.
    CaptureError for any other (one line): the capture times loopback targets only."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as e:
        raise CaptureError(f"--timing capture: cannot resolve {host!r}: {e.strerror or e}") from None
    addrs = {ipaddress.ip_address(i[4][0]) for i in infos}
    if addrs and all(a.is_loopback and a.version == 4 for a in addrs):
        return "lo"
    hint = "name the target by 127.0.0.1, or use --timing read" if any(a.is_loopback for a in addrs) else \
        "use --timing read"
    raise CaptureError(f"--timing capture times IPv4 loopback targets only (127.0.0.0/8); {host} is "
                       f"{', '.join(sorted(map(str, addrs)))}: {hint}")


def check(host: str, port: int) -> str:
    """Can a capture for a target at ``host:port`` run here? Returns its interface; CaptureError (one line)
    naming what is missing."""
    iface = interface_for(host)
    if not hasattr(socket, "AF_PACKET"):
        raise CaptureError("--timing capture needs Linux (AF_PACKET): use --timing read")
    try:
        _open(port, iface).close()
    except PermissionError:
        raise CaptureError("--timing capture needs root or CAP_NET_RAW to open a packet socket (run as root, "
                           "`setcap cap_net_raw+ep` on the Python binary, or a container with NET_RAW): "
                           "use --timing read") from None
    except OSError as e:
        raise CaptureError(f"--timing capture: cannot open a packet socket on {iface}: "
                           f"{e.strerror or e}") from None
    return iface


class Capture:
    """The packet capture of one process: a ring on ``iface`` for TCP segments of ``port``, read into
    :attr:`table` by :meth:`drain`.

    The kernel stamps each segment as it passes the tap, so the ring may be read late without changing a stamp:
    only a record waits for it (:meth:`tokenswarm.client.StreamCall`), and only a ring full for longer than the
    reader is away drops segments (1024 blocks, each handed over every :data:`RETIRE_MS` or when full: about 2 s
    at 256 streams). The load generator drains it from its event loop (a greenlet, and each record first), not
    from an OS thread: a second thread of a starved process held the interpreter's lock while descheduled and
    stalled the loop by 50-230 ms (measured beside 2 busy processes; see bench/client_overhead.py).
    :meth:`run_thread` reads it in a thread of its own, for a process with no event loop.
    :meth:`stats` gives segments taken, the kernel's packet and drop counts and the CPU seconds spent reading.
    CaptureError when the socket cannot be opened.
    """

    def __init__(self, port: int, iface: str = "lo") -> None:
        try:
            self.sock = _open(port, iface)
        except PermissionError:
            raise CaptureError("--timing capture needs root or CAP_NET_RAW to open a packet socket") from None
        except OSError as e:
            raise CaptureError(f"--timing capture: cannot open a packet socket on {iface}: "
                               f"{e.strerror or e}") from None
        self.port = port
        self.table = SegmentTable()
        self.ring = mmap.mmap(self.sock.fileno(), BLOCK_SIZE * BLOCK_NR, mmap.MAP_SHARED,
                              mmap.PROT_READ | mmap.PROT_WRITE)
        self.segments = 0
        self.cpu_s = 0.0
        self.drops = 0
        self.packets = 0
        self._block_no = 0
        self._stop = False

    def drain(self) -> int:
        """Read every block the kernel has handed over; returns how many. Never blocks."""
        ring = self.ring
        n = 0
        c0 = time.thread_time()
        while True:
            base = self._block_no * BLOCK_SIZE
            if not struct.unpack_from("I", ring, base + 8)[0] & TP_STATUS_USER:
                break
            self._block(base)
            struct.pack_into("I", ring, base + 8, 0)  # hand the block back to the kernel
            self._block_no = (self._block_no + 1) % BLOCK_NR
            n += 1
        self.cpu_s += time.thread_time() - c0
        return n

    def run_thread(self) -> None:
        """Drain in a daemon thread until :meth:`stop`, waiting on the socket between blocks."""
        fd = self.sock.fileno()

        def loop() -> None:
            while not self._stop:
                if not self.drain():
                    select.select([fd], [], [], 0.05)

        threading.Thread(target=loop, name="tokenswarm-capture", daemon=True).start()

    def stop(self) -> None:
        self._stop = True

    def stats(self) -> dict[str, float]:
        try:
            packets, drops = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            self.packets += packets  # the kernel's counters reset on each read
            self.drops += drops
        except OSError:
            pass
        return {"segments": self.segments, "kernel_packets": self.packets, "kernel_drops": self.drops,
                "cpu_s": self.cpu_s}

    def _block(self, base: int) -> None:
        ring = self.ring
        table = self.table
        port = self.port
        num, first = struct.unpack_from("II", ring, base + 12)
        shift = time.time() - time.perf_counter()  # the kernel's CLOCK_REALTIME stamps onto perf_counter
        unpack_pkt = _PKT.unpack_from
        unpack_hdrs = _IP_TCP.unpack_from
        ports = table.ports
        off = base + first
        stamp = 0.0
        for _ in range(num):
            nxt, sec, nsec, _snap, _len, _st, _mac, net = unpack_pkt(ring, off)
            ip = off + net
            vihl, total, sport, dport, seq, _ack, doff, flags = unpack_hdrs(ring, ip)
            if vihl != 0x45:  # IP options (never on lo): the TCP header further on
                ihl = (vihl & 0x0F) * 4
                sport, dport, seq, _ack, doff, flags = _TCP.unpack_from(ring, ip + ihl)
            else:
                ihl = 20
            stamp = sec + nsec * 1e-9 - shift
            to_server = dport == port
            client = sport if to_server else dport
            if flags & SYN:
                if to_server and not flags & ACK:
                    table.syn(client, seq, stamp)
                elif not to_server and flags & ACK:
                    table.synack(client, seq)
            else:
                size = total - ihl - (doff >> 4) * 4
                if size > 0:
                    self.segments += 1
                    conns = ports.get(client)
                    if conns:  # (a connection opened before the capture started: never seen, never asked)
                        d = conns[-1].tx if to_server else conns[-1].rx
                        if d is not None:
                            d.add(seq, size, stamp)
            off += nxt
        if stamp:
            table.newest = stamp


_PKT = struct.Struct("IIIIIIHH")  # tpacket3_hdr: next_offset, sec, nsec, snaplen, len, status, mac, net
_TCP = struct.Struct("!HHIIBB")  # source port, destination port, seq, ack, data offset, flags
_IP_TCP = struct.Struct("!BxH16xHHIIBB")  # an IPv4 header without options (version+IHL, total length), then _TCP
