#!/usr/bin/env python3
"""Generates the `clat xlat` corpus: for each case a directory with `args`
(one argument per line), packet files `NN.pkt`, and `expected` (the stdout
that `clat xlat` must print).

The expected packets are built here from the RFC 7915 rules for each case,
with this script's own checksum code, not by running the translator: the
corpus test (rust-core/cli/tests/xlat_corpus.rs) thus checks the binary
against an independent derivation. Re-run after changing a case:
    python3 rust-core/xlat/tests/corpus/gen.py
"""
import ipaddress
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF

def a4(s): return ipaddress.IPv4Address(s).packed
def a6(s): return ipaddress.IPv6Address(s).packed

def embed96(prefix, v4):
    return ipaddress.IPv6Network(prefix).network_address.packed[:12] + a4(v4)

def ip4(src, dst, proto, payload, ttl=64, tos=0, ident=0x1234, flags=0x4000):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(payload), ident, flags, ttl, proto, 0, src, dst)
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload

def ip6(src, dst, nxt, payload, hop=64, tc=0, flow=0):
    first = (6 << 28) | (tc << 20) | flow
    return struct.pack("!IHBB16s16s", first, len(payload), nxt, hop, src, dst) + payload

def ph4(src, dst, proto, n): return src + dst + struct.pack("!BBH", 0, proto, n)
def ph6(src, dst, nxt, n): return src + dst + struct.pack("!I3xB", n, nxt)

def with_csum(msg, at, pseudo, zero_to_ffff=False):
    msg = msg[:at] + b"\0\0" + msg[at + 2:]
    c = csum(pseudo + msg)
    if zero_to_ffff and c == 0:
        c = 0xFFFF
    return msg[:at] + struct.pack("!H", c) + msg[at + 2:]

def udp(sp, dp, data, pseudo_fn):
    u = struct.pack("!HHHH", sp, dp, 8 + len(data), 0) + data
    return with_csum(u, 6, pseudo_fn(len(u)), True)

def tcp(sp, dp, seq, data, pseudo_fn):
    t = struct.pack("!HHIIBBHHH", sp, dp, seq, 0, 5 << 4, 0x18, 65535, 0, 0) + data
    return with_csum(t, 16, pseudo_fn(len(t)))

def icmp(typ, code, rest, body, pseudo=b""):
    m = struct.pack("!BBH", typ, code, 0) + rest + body
    return with_csum(m, 2, pseudo)

def ident(n):
    """IPv4 Identification the translator gives to the n-th (from 0) IPv6
    packet without a Fragment header that becomes DF=0 (seed 0): a counter
    times 0x9E3779B9, low 16 bits (see Translator::next_id)."""
    return (n * 0x9E3779B9) & 0xFFFF

POOL6 = "2001:db8:64::/96"
CLAT4, CLAT6 = a4("192.0.0.4"), a6("2001:db8:1::2")
SELF4, SELF6 = a4("192.0.0.1"), a6("2001:db8:1::1")
SRV4 = a4("203.0.113.10")
SRV6 = embed96(POOL6, "203.0.113.10")
RTR4 = a4("198.51.100.1")
RTR6 = embed96(POOL6, "198.51.100.1")
BASE = ["--pool6", POOL6, "--eam", "192.0.0.4=2001:db8:1::2", "--self-v4", "192.0.0.1",
        "--self-v6", "2001:db8:1::1", "--pool6791-v4", "192.0.0.8"]

cases = {}

def case(name, args, items):
    """items: list of (input packet, [expected lines])."""
    cases[name] = (args, items)

def v4(p): return "v4 " + p.hex()
def v6(p): return "v6 " + p.hex()

# --- IPv4 -> IPv6, RFC 7915 4.1 / 4.2 / 4.5 ---
u4 = udp(40000, 53, b"hello", lambda n: ph4(CLAT4, SRV4, 17, n))
u6 = udp(40000, 53, b"hello", lambda n: ph6(CLAT6, SRV6, 17, n))
t4 = tcp(40001, 80, 1000, b"GET /", lambda n: ph4(CLAT4, SRV4, 6, n))
t6 = tcp(40001, 80, 1000, b"GET /", lambda n: ph6(CLAT6, SRV6, 6, n))
e4 = icmp(8, 0, b"\x00\x07\x00\x01", b"ping!")
e6 = icmp(128, 0, b"\x00\x07\x00\x01", b"ping!", ph6(CLAT6, SRV6, 58, 8 + 5))
case("4to6_basic", BASE, [
    (ip4(CLAT4, SRV4, 17, u4, ttl=64, tos=0x10), [v6(ip6(CLAT6, SRV6, 17, u6, hop=64, tc=0x10))]),
    (ip4(CLAT4, SRV4, 6, t4), [v6(ip6(CLAT6, SRV6, 6, t6))]),
    (ip4(CLAT4, SRV4, 1, e4, flags=0), [v6(ip6(CLAT6, SRV6, 58, e6))]),
    # Unknown protocol 253 (experimental): carried through.
    (ip4(CLAT4, SRV4, 253, b"opaque"), [v6(ip6(CLAT6, SRV6, 253, b"opaque"))]),
])

# --- IPv6 -> IPv4, RFC 7915 5.1 / 5.2 ---
ru6 = udp(53, 40000, b"answer", lambda n: ph6(SRV6, CLAT6, 17, n))
ru4 = udp(53, 40000, b"answer", lambda n: ph4(SRV4, CLAT4, 17, n))
re6 = icmp(129, 0, b"\x00\x07\x00\x01", b"pong", ph6(SRV6, CLAT6, 58, 12))
re4 = icmp(0, 0, b"\x00\x07\x00\x01", b"pong")
big6 = udp(53, 40000, bytes(1300), lambda n: ph6(SRV6, CLAT6, 17, n))
big4 = udp(53, 40000, bytes(1300), lambda n: ph4(SRV4, CLAT4, 17, n))
case("6to4_basic", BASE, [
    # Small: DF=0, Identification from the generator; flow label dropped.
    (ip6(SRV6, CLAT6, 17, ru6, hop=50, tc=0x20, flow=0x12345), [v4(ip4(SRV4, CLAT4, 17, ru4, ttl=50, tos=0x20, ident=ident(0), flags=0))]),
    (ip6(SRV6, CLAT6, 58, re6), [v4(ip4(SRV4, CLAT4, 1, re4, ident=ident(1), flags=0))]),
    # Over 1260 bytes: DF=1, Identification 0.
    (ip6(SRV6, CLAT6, 17, big6), [v4(ip4(SRV4, CLAT4, 17, big4, ident=0, flags=0x4000))]),
    # Fragment header: ID low 16 bits, MF and offset copied, DF=0.
    (ip6(SRV6, CLAT6, 44, struct.pack("!BBHI", 17, 0, (2 << 3) | 1, 0xAAAA5555) + bytes(16)),
     [v4(ip4(SRV4, CLAT4, 17, bytes(16), ident=0x5555, flags=0x2000 | 2))]),
])

# --- ICMP errors with the packet inside (RFC 7915 4.3 / 5.3) ---
inner4 = ip4(CLAT4, SRV4, 17, u4, ttl=63)
inner6_of4 = ip6(CLAT6, SRV6, 17, u6, hop=63)
err4 = icmp(3, 3, bytes(4), inner4)
err6 = icmp(1, 4, bytes(4), inner6_of4, ph6(SRV6, CLAT6, 58, 8 + len(inner6_of4)))
ptb_inner6 = ip6(CLAT6, SRV6, 17, u6, hop=63)
ptb6 = icmp(2, 0, struct.pack("!I", 1400), ptb_inner6, ph6(RTR6, CLAT6, 58, 8 + len(ptb_inner6)))
ptb_inner4 = ip4(CLAT4, SRV4, 17, u4, ttl=63, ident=0, flags=0)  # inner: no Fragment header, <= 1260: DF=0, ID 0
fn4 = icmp(3, 4, struct.pack("!HH", 0, 1380), ptb_inner4)
case("icmp_errors", BASE, [
    (ip4(SRV4, CLAT4, 1, err4, ttl=60, flags=0), [v6(ip6(SRV6, CLAT6, 58, err6, hop=60))]),
    (ip6(RTR6, CLAT6, 58, ptb6, hop=60), [v4(ip4(RTR4, CLAT4, 1, fn4, ttl=60, ident=ident(0), flags=0))]),
])

# --- The translator's own errors ---
big4_df = ip4(CLAT4, SRV4, 17, udp(40000, 53, bytes(1300), lambda n: ph4(CLAT4, SRV4, 17, n)))
te_src = ip4(CLAT4, SRV4, 17, u4, ttl=1)
case("own_errors", BASE + ["--mtu6", "1280", "--decrement-ttl"], [
    # DF=1, 1348 bytes as IPv6 > 1280: Fragmentation Needed, MTU 1260, quoting up to 576 bytes.
    (big4_df, [v4(ip4(SELF4, CLAT4, 1, icmp(3, 4, struct.pack("!HH", 0, 1260), big4_df[:548]), ident=0, flags=0))]),
    # TTL 1 with --decrement-ttl: Time Exceeded.
    (te_src, [v4(ip4(SELF4, CLAT4, 1, icmp(11, 0, bytes(4), te_src), ident=0, flags=0))]),
])

# --- Fragmenting DF=0 to the lowest IPv6 MTU (RFC 7915 4.1) ---
data = bytes(range(256)) * 6  # 1536 bytes
fu4 = udp(40000, 53, data, lambda n: ph4(CLAT4, SRV4, 17, n))
fu6 = udp(40000, 53, data, lambda n: ph6(CLAT6, SRV6, 17, n))
first_len = (1280 - 48) // 8 * 8  # 1232
frags = []
off = 0
while off < len(fu6):
    chunk = fu6[off:off + first_len]
    more = off + len(chunk) < len(fu6)
    fh = struct.pack("!BBHI", 17, 0, ((off // 8) << 3) | int(more), 0x1234)
    frags.append(v6(ip6(CLAT6, SRV6, 44, fh + chunk)))
    off += len(chunk)
case("fragment_4to6", BASE, [(ip4(CLAT4, SRV4, 17, fu4, flags=0), frags)])

# --- Drops ---
bad = bytearray(ip4(CLAT4, SRV4, 17, u4))
bad[10] ^= 0xFF
zero = ip4(CLAT4, SRV4, 17, u4[:6] + b"\0\0" + u4[8:])
case("drops", BASE, [
    (bytes(bad), ["drop bad-ipv4-checksum"]),
    (ip6(a6("2001:db8:99::1"), CLAT6, 17, ru6), ["drop untranslatable-source"]),
    (b"\x00\x01\x02", ["drop wrong-version"]),
    (ip4(CLAT4, SRV4, 1, icmp(13, 0, bytes(4), bytes(12))), ["drop icmp-untranslatable"]),
])
case("wkp_non_global", ["--pool6", "64:ff9b::/96", "--eam", "192.0.0.4=2001:db8:1::2"], [
    (ip4(CLAT4, a4("192.168.1.1"), 17, udp(1, 2, b"x", lambda n: ph4(CLAT4, a4("192.168.1.1"), 17, n))),
     ["drop non-global-with-well-known-prefix"]),
])
# --amend-udp-zero-checksum computes the checksum.
zu6 = udp(40000, 53, b"hello", lambda n: ph6(CLAT6, SRV6, 17, n))
# RFC 7915 4.5 / 4.4: not amending, or a first fragment even when amending:
# Destination Unreachable, Communication Administratively Prohibited (3/13),
# quoting the packet, from our own address (TTL 64, Identification 0, DF=0).
zero_frag = ip4(CLAT4, SRV4, 17, u4[:6] + b"\0\0" + u4[8:], flags=0x2000)
def admin_prohibited4(p): return v4(ip4(SELF4, CLAT4, 1, icmp(3, 13, bytes(4), p), ident=0, flags=0))
case("udp_zero_amended", BASE + ["--amend-udp-zero-checksum"], [
    (zero, [v6(ip6(CLAT6, SRV6, 17, zu6))]),
    (zero_frag, [admin_prohibited4(zero_frag)]),
])
case("udp_zero_refused", BASE, [(zero, [admin_prohibited4(zero)]), (zero_frag, [admin_prohibited4(zero_frag)])])

# --- Issue 13: the classes a SIIT conformance suite found ---
def frag6(nxt, off8, more, ident): return struct.pack("!BBHI", nxt, 0, (off8 << 3) | int(more), ident)
padn = lambda nxt: struct.pack("!BBBB4x", nxt, 0, 1, 4)    # Hop-by-Hop / Destination Options, PadN
rh0 = lambda nxt: struct.pack("!BBBB4x", nxt, 0, 0, 0)     # Routing type 0, Segments Left 0
def admin_prohibited6(p): return v6(ip6(SELF6, SRV6, 58, icmp(1, 1, bytes(4), p, ph6(SELF6, SRV6, 58, 8 + len(p)))))
ext_cases = [ip6(SRV6, CLAT6, 44, frag6(h, 0, True, 1) + ext(17) + ru6)
             for h, ext in ((0, padn), (60, padn), (43, rh0))]
# RFC 7915 5.1.1 ("SHOULD be dropped") and 5.4 (the 1/1 error).
case("ext_after_fragment", BASE, [(p, [admin_prohibited6(p)]) for p in ext_cases])

# RFC 7915 4.1: DF fragment whose Total Length + 20 exceeds mtu6: Fragmentation Needed.
dff = ip4(CLAT4, SRV4, 6, bytes(1241), ident=1234, flags=0x4000 | 0x2000)
case("df_fragment_too_big", BASE + ["--mtu6", "1280"], [
    (dff, [v4(ip4(SELF4, CLAT4, 1, icmp(3, 4, struct.pack("!HH", 0, 1260), dff[:548]), ident=0, flags=0))]),
])
# An IPv6 fragment too big for mtu4 1400: Packet Too Big, MTU 1420, quoting 1232 bytes.
f6 = ip6(SRV6, CLAT6, 44, frag6(6, 0, True, 1234) + bytes(1381))
ptb = icmp(2, 0, struct.pack("!I", 1420), f6[:1232], ph6(SELF6, SRV6, 58, 8 + 1232))
case("v6_fragment_too_big", BASE + ["--mtu4", "1400"], [(f6, [v6(ip6(SELF6, SRV6, 58, ptb))])])

# RFC 8200 4.7 Next Header 59, nothing after it: Protocol 59 (RFC 7915 5.1);
# with an (atomic) Fragment header the Identification is its low 16 bits.
case("no_next_header", BASE, [
    (ip6(SRV6, CLAT6, 59, b""), [v4(ip4(SRV4, CLAT4, 59, b"", ident=ident(0), flags=0))]),
    (ip6(SRV6, CLAT6, 44, frag6(59, 0, False, 0x01020304)), [v4(ip4(SRV4, CLAT4, 59, b"", ident=0x0304, flags=0))]),
])

# An ICMPv6 error in an atomic fragment: Identification from the Fragment header.
perr6 = icmp(1, 4, bytes(4), inner6_of4, ph6(RTR6, CLAT6, 58, 8 + len(inner6_of4)))
perr4 = icmp(3, 3, bytes(4), ip4(CLAT4, SRV4, 17, u4, ttl=63, ident=0, flags=0))
case("icmp6_error_in_fragment", BASE, [
    (ip6(RTR6, CLAT6, 44, frag6(58, 0, False, 0xA1B2C3D4) + perr6, hop=60),
     [v4(ip4(RTR4, CLAT4, 1, perr4, ttl=60, ident=0xC3D4, flags=0))]),
])

# RFC 4884 5.1, IPv4 -> IPv6: a 128-byte datagram (length 32 words of 32 bits)
# is 148 bytes as IPv6, carried as 144 (18 words of 64 bits), then the extension.
ext = bytes.fromhex("2000000000080101deadbeef")
u4x = udp(40000, 53, bytes(100), lambda n: ph4(CLAT4, SRV4, 17, n))
u6x = udp(40000, 53, bytes(100), lambda n: ph6(CLAT6, SRV6, 17, n))
in4x = ip4(CLAT4, SRV4, 17, u4x, ttl=63)
in6x = ip6(CLAT6, SRV6, 17, u6x, hop=63)[:144]
te4 = icmp(11, 0, bytes([0, 32, 0, 0]), in4x + ext)
te6 = icmp(3, 0, bytes([18, 0, 0, 0]), in6x + ext, ph6(SRV6, CLAT6, 58, 8 + 144 + len(ext)))
case("rfc4884_4to6", BASE, [(ip4(SRV4, CLAT4, 1, te4, ttl=60, flags=0), [v6(ip6(SRV6, CLAT6, 58, te6, hop=60))])])

# RFC 7757 3.2: 198.51.100.0/24 = 2001:db8:1c6:3364::/72; 198.51.100.2 is
# 2001:db8:1c6:3364:2:: (the IPv4 suffix in bits 72..80).
E4, E6 = a4("198.51.100.2"), a6("2001:db8:1c6:3364:2::")
ue4 = udp(40000, 53, b"eam", lambda n: ph4(E4, SRV4, 17, n))
ue6 = udp(40000, 53, b"eam", lambda n: ph6(E6, SRV6, 17, n))
case("eam_longer_ipv6_suffix", ["--pool6", POOL6, "--eam", "198.51.100.0/24=2001:db8:1c6:3364::/72"], [
    (ip4(E4, SRV4, 17, ue4), [v6(ip6(E6, SRV6, 17, ue6))]),
])

# RFC 7757 4: hairpinning. pool6 2001:db8:100::/40, EAM 2001:db8:3::/120 =
# 1.0.0.0/24. 2001:db8:3::8 to 2001:db8:101:0:9:: (1.0.0.9 under the /40)
# comes back from 2001:db8:101:0:8:: to 2001:db8:3::9.
HS, HD = a6("2001:db8:3::8"), a6("2001:db8:101:0:9::")
NS, ND = a6("2001:db8:101:0:8::"), a6("2001:db8:3::9")
# An ICMPv6 error about a hairpinned packet, from a router with no IPv4 form
# (RFC 6791 source 203.0.113.8): 2001:db8::5 -> 2001:db8:101:0:1:: (1.0.0.1)
# about 2001:db8:101:0:1:: -> 2001:db8:2::a (10.0.0.10) comes back from
# 2001:db8:1cb:71:8:: (203.0.113.8 under the /40) to 2001:db8:3::1 about
# 2001:db8:3::1 -> 2001:db8:10a:0:a:: (10.0.0.10 under the /40).
RT, E1, E2 = a6("2001:db8::5"), a6("2001:db8:101:0:1::"), a6("2001:db8:2::a")
P8, S1, PA = a6("2001:db8:1cb:71:8::"), a6("2001:db8:3::1"), a6("2001:db8:10a:0:a::")
hin = ip6(E1, E2, 17, udp(1, 2, b"in", lambda n: ph6(E1, E2, 17, n)), hop=63)
hout = ip6(S1, PA, 17, udp(1, 2, b"in", lambda n: ph6(S1, PA, 17, n)), hop=63)
case("hairpin", ["--pool6", "2001:db8:100::/40", "--eam", "1.0.0.0/24=2001:db8:3::/120",
                 "--eam", "10.0.0.0/24=2001:db8:2::/120", "--pool6791-v4", "203.0.113.8"], [
    (ip6(HS, HD, 17, udp(1000, 2000, b"hair", lambda n: ph6(HS, HD, 17, n))),
     [v6(ip6(NS, ND, 17, udp(1000, 2000, b"hair", lambda n: ph6(NS, ND, 17, n))))]),
    (ip6(RT, E1, 58, icmp(1, 0, bytes(4), hin, ph6(RT, E1, 58, 8 + len(hin))), hop=60),
     [v6(ip6(P8, S1, 58, icmp(1, 0, bytes(4), hout, ph6(P8, S1, 58, 8 + len(hout))), hop=60))]),
])

def write():
    for name in os.listdir(HERE):
        p = os.path.join(HERE, name)
        if os.path.isdir(p) and name != "pcap":
            shutil.rmtree(p)
    for name, (args, items) in cases.items():
        d = os.path.join(HERE, name)
        os.makedirs(d)
        with open(os.path.join(d, "args"), "w") as f:
            f.write("".join(a + "\n" for a in args))
        lines = []
        for i, (pkt, exp) in enumerate(items):
            with open(os.path.join(d, "%02d.pkt" % i), "wb") as f:
                f.write(pkt)
            lines += exp
        with open(os.path.join(d, "expected"), "w") as f:
            f.write("".join(l + "\n" for l in lines))
    # A pcap case: Ethernet in, raw IP out.
    d = os.path.join(HERE, "pcap")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(d, "args"), "w") as f:
        f.write("".join(a + "\n" for a in BASE))
    pin = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    pout = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 101)
    eth = bytes(6) + bytes.fromhex("020000000001")
    pairs = [(ip4(CLAT4, SRV4, 17, u4), ip6(CLAT6, SRV6, 17, u6), 0x0800),
             (ip6(SRV6, CLAT6, 17, ru6), ip4(SRV4, CLAT4, 17, ru4, ident=ident(0), flags=0), 0x86DD)]
    for i, (src, dst, et) in enumerate(pairs):
        frame = eth + struct.pack("!H", et) + src
        pin += struct.pack("<IIII", 1700000000 + i, 500, len(frame), len(frame)) + frame
        pout += struct.pack("<IIII", 1700000000 + i, 500, len(dst), len(dst)) + dst
    # An ARP frame is skipped.
    arp = eth + b"\x08\x06" + bytes(28)
    pin += struct.pack("<IIII", 1700000009, 0, len(arp), len(arp)) + arp
    open(os.path.join(d, "in.pcap"), "wb").write(pin)
    open(os.path.join(d, "expected.pcap"), "wb").write(pout)

write()
