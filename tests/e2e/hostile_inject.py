"""Packet injector for the hostile-input tests; runs INSIDE the phone namespace.

Why a packet socket and not only IPPROTO_RAW: with IP_HDRINCL the kernel
rewrites the total length and the header checksum of every header with
IHL >= 5, so a raw socket cannot produce a bad checksum or a length that
disagrees.  An AF_PACKET socket bound to the TUN hands the bytes to the TUN
driver unchanged, which is exactly what a broken or hostile app stack could
put into the engine's TUN fd.  The same socket also sees what the engine
writes back into the TUN (RSTs, ICMP errors, echo replies), so a test can
check that a packet was answered "as a CLAT should".

Sub-commands (all print one JSON object on stdout):

  inject  --tun clat0 [--listen S] [--repeat N]
          stdin: packets as hex, one per line.  Each is written into the
          TUN N times; then packets coming OUT of the engine are collected
          for S seconds and returned as hex (``replies``).
  synflood --tun clat0 --dst A --port P --seconds S
          SYNs from 192.0.0.4, from source ports cycling over 1024..65535,
          as fast as one process can, for S seconds (``sent``).
  icmpids --tun clat0 --dst A --count N
          N echo requests, each with a different identifier (``sent``).
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
CLAT = "192.0.0.4"


def csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s >> 16) + (s & 0xFFFF)
    return ~s & 0xFFFF


def ip4(src: str, dst: str, proto: int, payload: bytes, ttl: int = 64, ident: int = 1,
        frag: int = 0, options: bytes = b"") -> bytes:
    ihl = 5 + len(options) // 4
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(payload), ident, frag, ttl,
                    proto, 0, socket.inet_aton(src), socket.inet_aton(dst)) + options
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def tcp_syn(src: str, dst: str, sport: int, dport: int, seq: int = 1) -> bytes:
    t = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 65535, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(t))
    t = t[:16] + struct.pack("!H", csum(pseudo + t)) + t[18:]
    return ip4(src, dst, 6, t)


def open_tun_socket(tun: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((tun, ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return s


def send(s: socket.socket, tun: str, pkt: bytes) -> bool:
    try:
        s.sendto(pkt, (tun, ETH_P_IP))
        return True
    except OSError:
        return False       # e.g. ENOBUFS while the TUN queue is full: count, go on


class Pacer:
    """Keeps at most ``window`` injected packets waiting in the TUN's queue.

    The queue holds 500 packets; a burst beyond that is dropped by the kernel
    before the engine sees it, which would make counter checks meaningless.
    A fixed sleep is not enough on a busy machine (the engine may be off the
    CPU for tens of milliseconds), so this watches the TUN's own statistics:
    ``tx_packets`` counts what the engine has read and ``tx_dropped`` what
    the queue refused; what we sent minus both is still queued."""

    def __init__(self, tun: str, window: int) -> None:
        self.stats = f"/sys/class/net/{tun}/statistics/"
        self.window = window
        self.sent = 0
        self.base = self._left_queue()

    def _left_queue(self) -> int:
        total = 0
        for name in ("tx_packets", "tx_dropped"):
            with open(self.stats + name) as f:
                total += int(f.read())
        return total

    def one_sent(self) -> None:
        self.sent += 1
        if not self.window or self.sent % max(1, self.window // 4):
            return
        deadline = time.monotonic() + 5.0
        while self.sent - (self._left_queue() - self.base) >= self.window:
            if time.monotonic() > deadline:
                return      # the engine stopped reading: let the test see it
            time.sleep(0.0005)


def cmd_inject(a) -> dict:
    s = open_tun_socket(a.tun)
    pkts = [bytes.fromhex(line.strip()) for line in sys.stdin if line.strip()]
    pacer = Pacer(a.tun, a.pace)
    sent = 0
    for p in pkts:
        for _ in range(a.repeat):
            if send(s, a.tun, p):
                sent += 1
                pacer.one_sent()
    replies = []
    deadline = time.monotonic() + a.listen
    s.settimeout(0.05)
    while time.monotonic() < deadline:
        try:
            data, addr = s.recvfrom(70000)
        except socket.timeout:
            continue
        if addr[2] != PACKET_OUTGOING:     # written by the engine into the TUN
            replies.append(data.hex())
    return {"sent": sent, "replies": replies}


def cmd_synflood(a) -> dict:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    s.bind((a.tun, ETH_P_IP))
    # Pre-build a ring of SYNs so that the loop only sends.
    ring = [tcp_syn(CLAT, a.dst, 1024 + i, a.port, seq=i * 7919) for i in range(64511)]
    sent = failed = 0
    end = time.monotonic() + a.seconds
    i = 0
    while True:
        if i % 256 == 0 and time.monotonic() >= end:
            break
        try:
            s.send(ring[i % len(ring)])
            sent += 1
        except OSError:
            failed += 1
            time.sleep(0.0005)
        i += 1
    return {"sent": sent, "failed": failed}


def cmd_icmpids(a) -> dict:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    s.bind((a.tun, ETH_P_IP))
    pacer = Pacer(a.tun, a.pace)
    sent = 0
    for i in range(a.count):
        ident = (i * 7 + 1) & 0xFFFF
        icmp = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"hostile-ids"
        icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
        try:
            s.send(ip4(CLAT, a.dst, 1, icmp, ident=i & 0xFFFF))
            sent += 1
            pacer.one_sent()
        except OSError:
            time.sleep(0.001)
    return {"sent": sent}


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("inject")
    p.add_argument("--tun", default="clat0")
    p.add_argument("--listen", type=float, default=0.0)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--pace", type=int, default=128,
                   help="most packets queued in the TUN at once (0: no pacing)")
    p = sub.add_parser("synflood")
    p.add_argument("--tun", default="clat0")
    p.add_argument("--dst", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seconds", type=float, default=10)
    p = sub.add_parser("icmpids")
    p.add_argument("--tun", default="clat0")
    p.add_argument("--dst", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--pace", type=int, default=128,
                   help="most packets queued in the TUN at once (0: no pacing)")
    a = ap.parse_args()
    out = {"inject": cmd_inject, "synflood": cmd_synflood, "icmpids": cmd_icmpids}[a.cmd](a)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
