"""The IPv6 path as IPv4 apps see it through the CLAT (issue 12 items 4-6):
TTL becomes the hop limit, so traceroute (UDP and ICMP) and mtr show the
path's hops and ``ping -t 1`` dies at the first router; echo and UDP
replies carry the hop limit they arrived with as TTL; DSCP and ECN cross
both ways; a DF datagram too big for the IPv6 path gets Fragmentation
Needed with the MTU the app can use, and one without DF arrives whatever
its size.

The expected hops come from the same tools run over IPv6 from phone straight
to the NAT64 address (no CLAT involved): each IPv6 hop maps to its IPv4 form
under the prefix, or to 192.0.0.8 (RFC 7600) when it has none (plat's IPv6
router address).  The lab's path: phone -> plat (IPv6 router 2001:db8:1::1)
-> Tayga (198.51.100.1) -> plat's IPv4 side (192.0.2.1) -> inet.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil

import pytest

from labutil import (PHONE, PLAT, INET, PORT_ECHO, PREF64, SERVER, SERVER2, ns, ns_popen,
                     ns_python, status_int, synth)

DUMMY = "192.0.0.8"
MAX_HOPS = 8


def as_v4(a6: str) -> str:
    """What the CLAT reports for an ICMPv6 error from ``a6``."""
    a = ipaddress.IPv6Address(a6)
    if a in ipaddress.IPv6Network(PREF64):
        return str(ipaddress.IPv4Address(int(a) & 0xFFFFFFFF))
    return DUMMY


def _addrs(text: str) -> set[str]:
    out = set()
    for tok in text.replace("(", " ").replace(")", " ").split():
        try:
            out.add(str(ipaddress.ip_address(tok)))
        except ValueError:
            pass
    return out


def traceroute_hops(out: str) -> dict[int, set[str]]:
    """Hop number -> addresses that answered, from ``traceroute -n`` output."""
    hops = {}
    for line in out.splitlines()[1:]:
        m = re.match(r"\s*(\d+)\s+(.*)", line)
        if m:
            hops[int(m.group(1))] = _addrs(m.group(2))
    return hops


def mtr_hops(out: str) -> dict[int, set[str]]:
    """Hop number -> address, from ``mtr --report -n`` output ("???": none)."""
    hops = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\.\|--\s+(\S+)", line)
        if m:
            hops[int(m.group(1))] = _addrs(m.group(2))
    return hops


def expected(v6: dict[int, set[str]]) -> dict[int, set[str]]:
    return {h: {as_v4(a) for a in s} for h, s in v6.items()}


def check_hops(v4: dict[int, set[str]], v6: dict[int, set[str]], what: str) -> None:
    want = expected(v6)
    # The IPv6 run itself must have seen the whole path, or it proves nothing.
    assert len(want) >= 3 and want[max(want)] == {SERVER}, (what, v6)
    assert all(want.values()), (what, "unanswered IPv6 hop", v6)
    assert v4.get(1) == {DUMMY}, (what, "first hop", v4)
    assert max(v4) == max(want) and v4[max(v4)] == {SERVER}, (what, v4, want)
    for h in want:
        assert v4[h], (what, f"hop {h} unanswered", v4, want)
        assert v4[h] <= want[h], (what, f"hop {h}", v4, want)


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is missing: run tests/lab/install-deps.sh")


@pytest.mark.parametrize("method", ["udp", "icmp"])
def test_traceroute_shows_the_ipv6_paths_hops(clat, method):
    need("traceroute")
    opts = ["-n", "-q", "3", "-w", "1", "-m", str(MAX_HOPS)] + (["-I"] if method == "icmp" else [])
    v6 = traceroute_hops(ns(PHONE, "traceroute", "-6", *opts, synth(SERVER), timeout=90).stdout)
    out = ns(PHONE, "traceroute", *opts, SERVER, timeout=90).stdout
    check_hops(traceroute_hops(out), v6, f"traceroute {method}:\n{out}")


def test_mtr_report_shows_the_ipv6_paths_hops(clat):
    need("mtr")
    opts = ["--report", "-n", "-c", "3", "-m", str(MAX_HOPS)]
    v6 = mtr_hops(ns(PHONE, "mtr", "-6", *opts, synth(SERVER), timeout=90).stdout)
    out = ns(PHONE, "mtr", *opts, SERVER, timeout=90).stdout
    check_hops(mtr_hops(out), v6, f"mtr:\n{out}")


def test_ping_ttl_1_gets_time_exceeded_from_the_first_hop(clat):
    p = ns(PHONE, "ping", "-n", "-c", "1", "-W", "2", "-t", "1", SERVER, check=False)
    assert p.returncode != 0, p.stdout
    assert f"From {DUMMY}" in p.stdout and "Time to live exceeded" in p.stdout, p.stdout
    assert f"bytes from {SERVER}" not in p.stdout, p.stdout


def _ping_ttl(*argv) -> int:
    out = ns(PHONE, "ping", "-n", "-c", "1", "-W", "2", *argv).stdout
    m = re.search(r"ttl=(\d+)", out)
    assert m, out
    return int(m.group(1))


def test_echo_reply_ttl_is_the_hop_limit_it_arrived_with(clat):
    hop_limit = _ping_ttl("-6", synth(SERVER))
    assert hop_limit < 64, "the lab's path has routers: the reply's hop limit is below 64"
    assert _ping_ttl(SERVER) == hop_limit


UDP_HOP = r"""
import socket, sys
fam, dst = sys.argv[1], sys.argv[2]
if fam == "6":
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
    want = (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_RECVTTL", 12), 1)
    want = (socket.IPPROTO_IP, socket.IP_TTL)
s.settimeout(5)
s.sendto(b"hop", (dst, 7))
_, anc, _, _ = s.recvmsg(2048, 64)
print([int.from_bytes(d[:4], sys.byteorder) for l, t, d in anc if (l, t) == want][0])
"""


def test_udp_reply_ttl_is_the_hop_limit_it_arrived_with(clat):
    hop_limit = int(ns_python(PHONE, UDP_HOP, "6", synth(SERVER)).stdout)
    assert hop_limit < 64, "the lab's path has routers: the reply's hop limit is below 64"
    assert int(ns_python(PHONE, UDP_HOP, "4", SERVER).stdout) == hop_limit


TOS_SERVER = r"""
import socket, sys
IP_RECVTOS = getattr(socket, "IP_RECVTOS", 13)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(20)
print("ready", flush=True)
data, anc, _, peer = s.recvmsg(2048, 64)
tos = [c[2][0] for c in anc if c[0] == socket.IPPROTO_IP and c[1] == socket.IP_TOS]
s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, int(sys.argv[3]))
s.sendto(data, peer)
print(tos[0] if tos else -1, flush=True)
"""

TOS_CLIENT = r"""
import socket, sys
IP_RECVTOS = getattr(socket, "IP_RECVTOS", 13)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, int(sys.argv[3]))
s.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
s.settimeout(5)
s.sendto(b"dscp and ecn", (sys.argv[1], int(sys.argv[2])))
data, anc, _, _ = s.recvmsg(2048, 64)
tos = [c[2][0] for c in anc if c[0] == socket.IPPROTO_IP and c[1] == socket.IP_TOS]
print(tos[0] if tos else -1)
"""


def test_dscp_and_ecn_cross_both_ways(clat):
    """TOS 0xba (DSCP EF, ECT(0)) from the app is the traffic class upstream,
    which the NAT64 turns into the TOS the IPv4 server receives; the
    server's TOS 0x29 (AF11, ECT(1)) comes back to the app as its TOS."""
    up, down, port = 0xB8 | 0b10, 0x28 | 0b01, 7410
    server = ns_popen(INET, "python3", "-c", TOS_SERVER, SERVER, str(port), str(down),
                      stdout=-1, stderr=-1, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        got_down = int(ns_python(PHONE, TOS_CLIENT, SERVER, str(port), str(up)).stdout)
        got_up = int(server.stdout.readline() or -1)
    finally:
        server.kill()
        server.wait()
    assert (hex(got_up), hex(got_down)) == (hex(up), hex(down))


ECHO_LISTENER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(10)
print("ready", flush=True)
want = bytes.fromhex(sys.argv[1])
while True:
    p = s.recv(65535)
    ihl = (p[0] & 15) * 4
    if p[ihl] == 8 and want * 4 in p[ihl + 8:]:
        print(p[1], p[8], flush=True)
        break
"""


def _echo_request_at_server(pattern: str, *ping_argv) -> tuple[int, int]:
    """(TOS, TTL) of the echo request that ``ping -p pattern *ping_argv``
    from phone delivers to the IPv4 server, seen by a raw socket there."""
    listener = ns_popen(INET, "python3", "-c", ECHO_LISTENER, pattern,
                        stdout=-1, stderr=-1, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        ns(PHONE, "ping", "-n", "-c", "1", "-W", "2", "-p", pattern, *ping_argv, check=False)
        line = listener.stdout.readline().split()
    finally:
        listener.kill()
        listener.wait()
    assert len(line) == 2, "the echo request never reached the server"
    return int(line[0]), int(line[1])


def test_echo_request_carries_the_apps_tos_and_ttl(clat):
    """``ping -Q 0xba -t 7``: the echo request reaches the IPv4 server with the
    TOS and TTL it has over plain IPv6 with the same traffic class and hop
    limit (ping sockets before Linux 5.18 ignore these as ancillary data, so
    the CLAT sets them as socket options)."""
    via_clat = _echo_request_at_server("c1a7", "-Q", "0xba", "-t", "7", SERVER)
    plain = _echo_request_at_server("1e6a", "-6", "-Q", "0xba", "-t", "7", synth(SERVER))
    assert via_clat == plain, (via_clat, plain)
    assert via_clat[0] == 0xBA and via_clat[1] < 7, via_clat


PMTU_CLIENT = r"""
import errno, json, socket, struct, sys, time
IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_MTU, IP_RECVERR = 10, 2, 14, 11
dst, big, fits = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
s.connect((dst, 7))
out = {"mtu_before": s.getsockopt(socket.IPPROTO_IP, IP_MTU), "errors": []}
s.send(b"b" * big)
s.setblocking(False)
deadline = time.monotonic() + 3
while time.monotonic() < deadline and not out["errors"]:
    try:
        _, anc, _, _ = s.recvmsg(2048, 512, socket.MSG_ERRQUEUE)
    except BlockingIOError:
        time.sleep(0.05)
        continue
    for lvl, typ, d in anc:
        if lvl == socket.IPPROTO_IP and typ == IP_RECVERR:
            ee_errno, origin, t, c, _, info = struct.unpack("=IBBBBI", d[:12])
            # SO_EE_OFFENDER: the sockaddr_in after the 16-byte sock_extended_err.
            offender = socket.inet_ntoa(d[20:24]) if len(d) >= 24 else None
            out["errors"].append([ee_errno, origin, t, c, info, offender])
s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
try:
    s.recv(65535)   # an echo of the big datagram: it crossed after all
    out["echoed"] = True
except (BlockingIOError, OSError):
    out["echoed"] = False
out["mtu_after"] = s.getsockopt(socket.IPPROTO_IP, IP_MTU)
try:
    s.send(b"b" * big)
    out["resend"] = "sent"
except OSError as e:
    out["resend"] = errno.errorcode[e.errno]
s.settimeout(3)
m = bytes(range(256)) * (fits // 256) + b"f" * (fits % 256)
s.send(m)
out["fits_echoed"] = s.recv(65535) == m
print(json.dumps(out))
"""


def _pmtu(dst: str, big: int, fits: int) -> dict:
    return json.loads(ns_python(PHONE, PMTU_CLIENT, dst, str(big), str(fits)).stdout)


@pytest.fixture
def forget_pmtu():
    """Phone's kernels forget the path MTUs a test taught them, so that later
    tests (TCP throughput over the 65000-byte TUN) are not clamped."""
    yield
    ns(PHONE, "ip", "-6", "route", "flush", "cache", check=False)
    ns(PHONE, "ip", "-4", "route", "flush", "cache", check=False)


def test_df_datagram_over_the_link_mtu_gets_fragmentation_needed(clat, forget_pmtu):
    """1472 bytes with DF: 1500 as IPv4, 1520 as IPv6, more than phone's
    1500-byte link. The CLAT's send with IPV6_DONTFRAG fails (EMSGSIZE) and
    the app gets Fragmentation Needed with 1500 - 20 = 1480 (RFC 7915 5.2),
    so its kernel refuses the next such datagram itself and 1452 bytes (1480
    as IPv4) cross."""
    r = _pmtu(SERVER, 1472, 1452)
    assert r["errors"] and r["errors"][0] == [90, 2, 3, 4, 1480, DUMMY], r   # EMSGSIZE, ICMP, 3/4
    assert not r["echoed"], r
    assert r["mtu_after"] == 1480 and r["resend"] == "EMSGSIZE" and r["fits_echoed"], r


@pytest.fixture
def narrow_route(forget_pmtu):
    """plat's route to SERVER2's NAT64 address with MTU 1400: plat answers
    bigger IPv6 packets with Packet Too Big (1400) from 2001:db8:1::1."""
    dst = synth(SERVER2) + "/128"
    ns(PLAT, "ip", "-6", "route", "replace", dst, "dev", "nat64", "mtu", "1400")
    yield
    ns(PLAT, "ip", "-6", "route", "del", dst, check=False)


def test_packet_too_big_from_the_path_becomes_fragmentation_needed(clat, narrow_route):
    """1400 bytes with DF (1448 as IPv6) pass phone's link and die at plat's
    1400-byte route: its Packet Too Big comes back as Fragmentation Needed
    with 1380 from 192.0.0.8, the app's kernel learns 1380, and 1352 bytes
    cross."""
    r = _pmtu(SERVER2, 1400, 1352)
    assert r["errors"] and r["errors"][0] == [90, 2, 3, 4, 1380, DUMMY], r
    assert r["mtu_after"] == 1380 and r["resend"] == "EMSGSIZE" and r["fits_echoed"], r


NO_DF_CLIENT = r"""
import socket, sys
IP_MTU_DISCOVER, IP_PMTUDISC_DONT = 10, 0
dst, size = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
s.settimeout(3)
s.connect((dst, 7))
m = bytes(range(256)) * (size // 256) + b"n" * (size % 256)
s.send(m)
try:
    print(s.recv(65535) == m)
except OSError as e:
    print(e)
"""


@pytest.mark.parametrize("size", [1400, 4000, 60000])
def test_datagram_without_df_past_a_narrower_link_arrives_with_no_error(clat, narrow_route, size):
    """1400 bytes without DF (1448 as IPv6) leave phone unfragmented (its
    link is 1500), or larger ones in 1500-byte fragments, and meet plat's
    1400-byte route: plat answers Packet Too Big (for the first fragment).
    An IPv4 router would have fragmented the datagram (RFC 791), and a
    translator fragments it to fit (RFC 7915 4.1): the CLAT sends its copy
    again, now fragmented by the kernel that learnt the path MTU, so the
    first datagram is echoed intact, and the CLAT sends the app no ICMPv4
    error (a Fragmentation Needed would claim a DF the datagram never had;
    the app's kernel ignores it on this socket, so the CLAT's counter is
    what shows it)."""
    st = clat.status()
    out = ns_python(PHONE, NO_DF_CLIENT, SERVER2, str(size)).stdout.strip()
    after = clat.status()
    assert out == "True", out
    for key, more in (("icmp_errors_sent", 0), ("udp_resent_after_too_big", 1)):
        assert status_int(after, key) == status_int(st, key) + more, key


@pytest.mark.parametrize("size", [4000, 60000])
def test_datagram_without_df_arrives_whatever_its_size(clat, size):
    out = ns_python(PHONE, f"""
import os, socket
IP_MTU_DISCOVER, IP_PMTUDISC_DONT = 10, 0
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
s.settimeout(5)
m = os.urandom({size})
s.sendto(m, ("{SERVER}", {PORT_ECHO}))
print(s.recvfrom(65535)[0] == m)
""")
    assert out.stdout.strip() == "True"
