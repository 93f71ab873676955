#!/usr/bin/env python3
"""Send Router Advertisements that carry a PREF64 option (RFC 8781).

Why this exists: Debian bookworm's radvd 2.19 has no `nat64prefix` (that came
with radvd 2.20), so the lab crafts the RA itself.  The RA is a harmless one:
router lifetime 0 (not a default router), no prefix information, only PREF64
(plus a source link-layer address option is not needed on a veth).

Runs inside the `plat` namespace (root: raw ICMPv6 socket).  The kernel fills
in the ICMPv6 checksum for raw ICMPv6 sockets and picks the link-local
source address for the link-scope destination ff02::1.

usage: send_ra.py IFACE PREFIX/LEN LIFETIME_S [--count N] [--interval S] [--plc N]
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import struct
import sys
import time

PLC = {96: 0, 64: 1, 56: 2, 48: 3, 40: 4, 32: 5}


def pref64_option(prefix: str, lifetime: int, plc: int | None = None) -> bytes:
    net = ipaddress.IPv6Network(prefix)
    code = PLC[net.prefixlen] if plc is None else plc
    scaled = min((lifetime + 7) // 8, 0x1FFF)
    return struct.pack("!BBH", 38, 2, (scaled << 3) | code) + net.network_address.packed[:12]


def router_advertisement(options: bytes) -> bytes:
    # type 134, code 0, checksum 0 (kernel), hop limit 0, flags 0,
    # router lifetime 0, reachable 0, retrans 0.
    return struct.pack("!BBHBBHII", 134, 0, 0, 0, 0, 0, 0, 0) + options


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("iface")
    ap.add_argument("prefix")
    ap.add_argument("lifetime", type=int)
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--plc", type=int, default=None, help="override the prefix length code (invalid ones for tests)")
    a = ap.parse_args()

    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, a.iface.encode())
    # RFC 4861 section 6.1.2: receivers drop RAs whose hop limit is not 255.
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    ifindex = socket.if_nametoindex(a.iface)
    ra = router_advertisement(pref64_option(a.prefix, a.lifetime, a.plc))
    for i in range(a.count):
        s.sendto(ra, ("ff02::1", 0, 0, ifindex))
        print(f"sent RA {i + 1}/{a.count} on {a.iface}: PREF64 {a.prefix} lifetime {a.lifetime}", flush=True)
        if i + 1 < a.count:
            time.sleep(a.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
