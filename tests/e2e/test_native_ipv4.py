"""`clat run --auto --native-ipv4` (issue 15, items 2 and 3): the CLAT stays
active when the phone has native IPv4, and its IPv4 flows then leave
natively (IPv4 sockets to the destination itself), through the NAT64 when
the native route is gone.

The lab's phone is IPv6-only; here its uplink ph0 becomes dual-stack for a
while: 192.0.2.202/30 on ph0 and 192.0.2.201/30 on plat's end (pl0), plat
forwarding IPv4 to inet as it does for Tayga (inet's default route is
plat).  That is how a real host's uplink looks (one interface, both
families), so `--bind-device ph0` serves both paths.  (test_auto.py's
`native_path` fixture puts native IPv4 on a separate veth instead, which a
socket bound to ph0 could not use; it stands by there, so it does not
matter to it.)  Same addresses as that fixture, on the lab's own link.

What the servers saw is read from nft counters in inet, by source: the
phone's native address 192.0.2.202, or Tayga's pool 198.51.100.0/24.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from labutil import (CLAT_V4, INET, PHONE, SERVER, TUN, ClatProcess, connect_from_phone, link_addrs, ns,
                     ns_popen,
                     ns_python, served_sha256, status_int)

from test_auto import IN_ADDR as AUTO_IN_ADDR, PH_DEV as AUTO_PH_DEV, native_path  # noqa: F401 (a fixture)

CONTROL = "@clat-e2e/native4"
PH_ADDR, PL_ADDR = "192.0.2.202", "192.0.2.201"
PLAT = "plat"
POOL = "198.51.100.0/24"

COUNTERS = f"""
table ip clatsrc {{
  chain input {{
    type filter hook input priority 0; policy accept;
    ip saddr {PH_ADDR} tcp dport 80 counter comment "native_tcp"
    ip saddr {POOL} tcp dport 80 counter comment "nat64_tcp"
    ip saddr {PH_ADDR} udp dport 7 counter comment "native_udp"
    ip saddr {POOL} udp dport 7 counter comment "nat64_udp"
    ip saddr {PH_ADDR} icmp type echo-request counter comment "native_icmp"
    ip saddr {POOL} icmp type echo-request counter comment "nat64_icmp"
  }}
}}
"""


@pytest.fixture
def dual_stack_uplink(lab):
    """IPv4 on the phone's uplink ph0 (no default route yet) and an nft
    table in inet counting packets by source."""
    ns(PHONE, "ip", "addr", "add", f"{PH_ADDR}/30", "dev", "ph0")
    ns(PLAT, "ip", "addr", "add", f"{PL_ADDR}/30", "dev", "pl0")
    ns(INET, "nft", "-f", "-", input=COUNTERS)
    yield
    ns(PHONE, "ip", "route", "del", "default", "via", PL_ADDR, "dev", "ph0", check=False)
    ns(PHONE, "ip", "addr", "del", f"{PH_ADDR}/30", "dev", "ph0", check=False)
    ns(PLAT, "ip", "addr", "del", f"{PL_ADDR}/30", "dev", "pl0", check=False)
    ns(INET, "nft", "delete", "table", "ip", "clatsrc", check=False)


def native_route(add: bool) -> None:
    ns(PHONE, "ip", "route", "add" if add else "del", "default", "via", PL_ADDR, "dev", "ph0")


def seen() -> dict[str, int]:
    """Packets inet received, by counter name (source class and protocol)."""
    doc = json.loads(ns(INET, "nft", "-j", "list", "table", "ip", "clatsrc").stdout)
    out = {}
    for item in doc["nftables"]:
        r = item.get("rule")
        if r and "comment" in r:
            for e in r["expr"]:
                if "counter" in e:
                    out[r["comment"]] = e["counter"]["packets"]
    return out


def grew(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {k for k in after if after[k] > before.get(k, 0)}


class NativeClat(ClatProcess):
    """`clat run --auto --native-ipv4 --bind-device ph0`: ready once the TUN
    has the CLAT address and the two halves of the default route."""

    def __init__(self, *extra: str):
        super().__init__("--auto", "--native-ipv4", "--bind-device", "ph0", *extra,
                         control=CONTROL)

    def ready(self) -> bool:
        routes = ns(self.netns, "ip", "-4", "route", "show", check=False).stdout
        return (f"inet {CLAT_V4}/" in link_addrs(self.netns, self.tun)
                and f"0.0.0.0/1 dev {TUN}" in routes and f"128.0.0.0/1 dev {TUN}" in routes)


def wait_path(clat, path: str, timeout: float = 5.0) -> float:
    t = time.monotonic()
    while True:
        st = clat.status()
        if st["activity"] == "active" and st["ipv4_path"] == path:
            return time.monotonic() - t
        assert time.monotonic() - t < timeout, st
        time.sleep(0.01)


UDP_ECHO = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for attempt in range(3):
    s.sendto(b"native?", ("{SERVER}", 7))
    try:
        d, a = s.recvfrom(100)
        print("ok" if (d, a) == (b"native?", ("{SERVER}", 7)) else f"wrong {{d!r}} {{a}}")
        break
    except socket.timeout:
        continue
else:
    print("timeout")
"""


def get(name: str, *curl_args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return ns(PHONE, "sh", "-c",
              f"curl -sS --fail -m 100 {' '.join(curl_args)} http://{SERVER}/{name} | sha256sum",
              timeout=timeout, check=False)


def tcp_udp_ping(expect: str) -> None:
    """A download of /100M, a UDP echo and a ping from phone over IPv4: all
    intact, and inet saw each from `expect`'s sources only."""
    other = "nat64" if expect == "native" else "native"
    before = seen()
    r = get("100M")
    assert r.stdout.split()[0] == served_sha256("100M"), r
    assert ns_python(PHONE, UDP_ECHO).stdout.strip() == "ok"
    p = ns(PHONE, "ping", "-c", "2", "-W", "2", SERVER, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    g = grew(before, seen())
    assert {f"{expect}_tcp", f"{expect}_udp", f"{expect}_icmp"} <= g, g
    assert not {f"{other}_tcp", f"{other}_udp", f"{other}_icmp"} & g, g


def test_native_path_carries_tcp_udp_and_ping_from_the_native_address(own_clat,
                                                                       dual_stack_uplink):
    native_route(True)
    clat = NativeClat()
    clat.start()
    try:
        wait_path(clat, "native")
        st = clat.status()
        assert st["activity_reason"].endswith("IPv4 flows leave natively"), st
        tcp_udp_ping("native")
        st = clat.status()
        # TCP flow, UDP mapping, echo mapping: all created on the native path.
        assert status_int(st, "flows_native_total") >= 3, st
        assert status_int(st, "ipv4_path_native") == 1
    finally:
        clat.stop()
    assert clat.proc.returncode == 0


def test_without_native_ipv4_the_same_go_through_the_nat64(own_clat, dual_stack_uplink):
    clat = NativeClat()
    clat.start()
    try:
        wait_path(clat, "nat64")
        tcp_udp_ping("nat64")
        assert status_int(clat.status(), "flows_native_total") == 0
    finally:
        clat.stop()
    assert clat.proc.returncode == 0


def test_a_nat64_download_survives_native_ipv4_appearing(own_clat, dual_stack_uplink):
    clat = NativeClat()
    clat.start()
    try:
        wait_path(clat, "nat64")
        before = seen()
        # About 5 s at 20 MB/s: native IPv4 appears in the middle of it.
        dl = ns_popen(PHONE, "sh", "-c",
                      f"curl -sS --fail -m 100 --limit-rate 20M http://{SERVER}/100M | sha256sum",
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert dl.poll() is None, "the download ended before the switch"
        native_route(True)
        wait_path(clat, "native")
        # A new connection now goes natively.
        mid = seen()
        r = get("index.html")
        assert r.returncode == 0, r
        assert "native_tcp" in grew(mid, seen())
        out, err = dl.communicate(timeout=100)
        assert dl.returncode == 0 and out.split()[0] == served_sha256("100M"), (out, err)
        g = grew(before, seen())
        assert {"nat64_tcp", "native_tcp"} <= g, g
    finally:
        clat.stop()


# One UDP socket (one mapping in the CLAT) echoing before and after a switch.
UDP_TWICE = f"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
def echo():
    for attempt in range(3):
        s.sendto(b"twice", ("{SERVER}", 7))
        try:
            return "ok" if s.recvfrom(100) == (b"twice", ("{SERVER}", 7)) else "wrong"
        except socket.timeout:
            continue
        except OSError as e:
            return str(e)
    return "timeout"
print(echo(), flush=True)
sys.stdin.readline()
print(echo(), flush=True)
"""


def test_a_native_download_is_reset_promptly_when_native_ipv4_goes(own_clat,
                                                                   dual_stack_uplink):
    """...and a UDP mapping made on the native path is forgotten: the same app
    socket's next datagram gets a new mapping, through the NAT64."""
    native_route(True)
    clat = NativeClat()
    clat.start()
    try:
        wait_path(clat, "native")
        udp = ns_popen(PHONE, "python3", "-c", UDP_TWICE, stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, text=True)
        assert udp.stdout.readline().strip() == "ok"
        udp_before = status_int(clat.status(), "flows_udp_total")
        dl = ns_popen(PHONE, "sh", "-c",
                      f"curl -sS -o /dev/null -m 100 --limit-rate 10M http://{SERVER}/100M; "
                      "echo rc=$?",
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert dl.poll() is None, "the download ended before the switch"
        t = time.monotonic()
        native_route(False)
        out, err = dl.communicate(timeout=30)
        took = time.monotonic() - t
        assert "rc=0" not in out, (out, err)
        # Reset, not left to a timeout: curl gives up within a second or two.
        assert took < 3, f"curl took {took:.1f} s after the native route went: {out} {err}"
        wait_path(clat, "nat64")
        before = seen()
        r = get("index.html")
        assert r.returncode == 0, r
        udp.stdin.write("again\n")
        udp.stdin.flush()
        assert udp.stdout.readline().strip() == "ok"
        udp.wait(5)
        g = grew(before, seen())
        assert {"nat64_tcp", "nat64_udp"} <= g and not {"native_tcp", "native_udp"} & g, g
        assert status_int(clat.status(), "flows_udp_total") == udp_before + 1
        print(f"\nnative download reset {took*1000:.0f} ms after the route went: {err.strip()}")
    finally:
        clat.stop()


# A connected UDP socket learns of an ICMP error by the errno of its next call
# (IP_RECVERR off): ECONNREFUSED for Port Unreachable.
UDP_CLOSED = f"""
import errno, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect(("{SERVER}", 9))
s.send(b"anyone?")
try:
    s.recv(100)
    print("answered")
except socket.timeout:
    print("timeout")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
"""


def test_errors_on_the_native_path_come_back_as_the_path_gave_them(own_clat, dual_stack_uplink):
    """Refused and unreachable connects, Port Unreachable for UDP and Time
    Exceeded for an echo with TTL 1, each from whoever sent it on the
    native path (plat's 192.0.2.201 is the first hop, not 192.0.0.8 as on
    the NAT64 path, nor the destination)."""
    native_route(True)
    clat = NativeClat()
    clat.start()
    try:
        wait_path(clat, "native")
        what, secs = connect_from_phone(SERVER, 9, timeout=3)
        assert what == "ECONNREFUSED" and secs < 1, (what, secs)
        # plat routes 192.0.2.64/26 'unreachable': ICMPv4 Host Unreachable.
        # Routers rate-limit ICMP errors: up to three tries.
        for _ in range(3):
            what, secs = connect_from_phone("192.0.2.65", 80, timeout=3)
            assert what != "connected", (what, secs)
            if what in ("EHOSTUNREACH", "ENETUNREACH"):
                break
            time.sleep(1.1)
        else:
            raise AssertionError(f"never answered unreachable: {what} {secs}")
        assert ns_python(PHONE, UDP_CLOSED).stdout.strip() == "ECONNREFUSED"
        p = ns(PHONE, "ping", "-n", "-c", "1", "-W", "2", "-t", "1", SERVER, check=False)
        assert f"From {PL_ADDR}" in p.stdout and "Time to live exceeded" in p.stdout, p.stdout
        st = clat.status()
        assert status_int(st, "icmp_errors_received") >= 2, st
    finally:
        clat.stop()


def test_df_is_kept_on_the_native_path(own_clat, dual_stack_uplink):
    """DF becomes the upstream socket's IP_MTU_DISCOVER: 4000 bytes with DF
    fail on ph0's 1500-byte link and the app gets Fragmentation Needed with
    1500 from 192.0.0.8, its kernel refuses the next one itself and 1472
    bytes cross; without DF the same datagram, and a 60000-byte one, are
    fragmented and echoed intact."""
    from test_path import NO_DF_CLIENT, PMTU_CLIENT
    native_route(True)
    clat = NativeClat()
    clat.start()
    try:
        wait_path(clat, "native")
        r = json.loads(ns_python(PHONE, PMTU_CLIENT, SERVER, "4000", "1472").stdout)
        assert r["errors"] and r["errors"][0] == [90, 2, 3, 4, 1500, "192.0.0.8"], r
        assert r["mtu_after"] == 1500 and r["resend"] == "EMSGSIZE" and r["fits_echoed"], r
        for size in (4000, 60000):
            out = ns_python(PHONE, NO_DF_CLIENT, SERVER, str(size)).stdout.strip()
            assert out == "True", (size, out)
    finally:
        clat.stop()
        ns(PHONE, "ip", "-4", "route", "flush", "cache", check=False)


def test_native_ipv4_on_another_interface_is_not_used(own_clat, native_path):
    """Native IPv4 through an interface other than --bind-device (test_auto's
    veth v4ph, its default route via inet) cannot carry the engine's sockets,
    which are bound to ph0: the IPv4 path stays NAT64 and IPv4 keeps
    working through it. (Counting any default route, the CLAT switched to
    the native path, and every IPv4 connection failed.)"""
    ns(PHONE, "ip", "route", "add", "default", "via", AUTO_IN_ADDR, "dev", AUTO_PH_DEV)
    clat = NativeClat()
    clat.start()
    try:
        wait_path(clat, "nat64")
        # Long enough for a route event to have been read.
        time.sleep(0.5)
        assert clat.status()["ipv4_path"] == "nat64"
        r = ns(PHONE, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5",
               f"http://{SERVER}/", check=False, timeout=15)
        assert r.stdout == "200", r
    finally:
        clat.stop()
