"""`clat run --carry-ipv6` (issue 15 item 1): IPv6 that apps send into the
TUN is carried natively to the same IPv6 destination through the engine's
upstream sockets, as IPv4 flows are carried to the NAT64.

The server: 2001:db8:2::10 on plat's loopback (plat routes the phone's
2001:db8:1::/64, so it is reachable from the phone's uplink), with the
lab's HTTP server (files of tests/lab, POST answers the body's SHA-256) and
a UDP echo, started here; plat routes 2001:db8:3::/64 `unreachable`.

Through the TUN: the CLAT's routes ::/1 and 8000::/1 win over the phone's
default route, so `ip -6 route get` names clat0, the app's source is the
TUN's fd9c:7c5a:e1b6:464::1, and the engine's counters grow with what it
carried. The negative control is the same routes and address into a TUN
whose engine does not carry IPv6 (`clat run` without `--carry-ipv6`):
nothing connects, and the engine counts the drops.
"""

from __future__ import annotations

import re
import time

import pytest

from labutil import (CLAT_V4, LAB_RUN, PHONE, PLAT, REPO, TUN, ClatProcess, clat_binary,
                     link_addrs, link_exists, ns, ns_popen, ns_python, served_sha256, status_int)

CONTROL = "@clat-e2e/carry6"
SERVER6 = "2001:db8:2::10"
UNREACHABLE6 = "2001:db8:3::1"
CLAT_V6 = "fd9c:7c5a:e1b6:464::1"
# The engine's IPv6 NAT source (EngineConfig::nat_v6): the firewall opening
# accepts TCP from it to CLAT_V6 on the TUN, nothing wider.
NAT_V6 = "fd9c:7c5a:e1b6:464::2"
SERVERS = REPO / "tests" / "lab" / "servers.py"


@pytest.fixture(scope="module")
def server6(lab):
    """2001:db8:2::10 on plat with an HTTP server (port 80) and a UDP echo
    (port 7); 2001:db8:3::/64 unreachable."""
    ns(PLAT, "ip", "-6", "addr", "add", f"{SERVER6}/128", "dev", "lo")
    ns(PLAT, "ip", "-6", "route", "add", "unreachable", "2001:db8:3::/64")
    procs = [
        ns_popen(PLAT, "python3", str(SERVERS), "http", SERVER6, "80", str(LAB_RUN / "www")),
        ns_popen(PLAT, "python3", str(SERVERS), "udpecho", SERVER6, "7"),
    ]
    try:
        deadline = time.monotonic() + 10
        while ns(PLAT, "curl", "-sgf", "-o", "/dev/null", f"http://[{SERVER6}]/index.html",
                 check=False).returncode != 0:
            assert time.monotonic() < deadline, "the IPv6 HTTP server did not come up"
            time.sleep(0.1)
        yield SERVER6
    finally:
        for p in procs:
            p.kill()
            p.wait()
        ns(PLAT, "ip", "-6", "route", "del", "unreachable", "2001:db8:3::/64", check=False)
        ns(PLAT, "ip", "-6", "addr", "del", f"{SERVER6}/128", "dev", "lo", check=False)


def routes6() -> str:
    return ns(PHONE, "ip", "-6", "route", "show", check=False).stdout


class CarryClat(ClatProcess):
    """`clat run --carry-ipv6 --bind-device ph0`: ready once the TUN has
    both addresses and the IPv6 halves of the default route."""

    def __init__(self, *extra: str, protect: tuple = ("--bind-device", "ph0")):
        super().__init__("--carry-ipv6", *protect, *extra, control=CONTROL)

    def ready(self) -> bool:
        addrs = ns(self.netns, "ip", "-6", "addr", "show", "dev", self.tun, check=False).stdout
        r = routes6()
        return (super().ready() and f"inet6 {CLAT_V6}/64" in addrs
                and f"::/1 dev {TUN}" in r and f"8000::/1 dev {TUN}" in r)


def through_tun(dst: str) -> bool:
    out = ns(PHONE, "ip", "-6", "route", "get", dst).stdout
    return f"dev {TUN}" in out and f"src {CLAT_V6}" in out


CONNECT = """
import errno, socket, sys, time
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET6)
s.settimeout(timeout)
t = time.monotonic()
try:
    s.connect((host, port))
    print("connected %.3f %s" % (time.monotonic() - t, s.getsockname()[0]))
except socket.timeout:
    print("timeout %.3f -" % (time.monotonic() - t))
except OSError as e:
    print("%s %.3f -" % (errno.errorcode.get(e.errno, e.errno), time.monotonic() - t))
"""


def connect6(host: str, port: int, timeout: float = 5.0) -> tuple[str, float, str]:
    out = ns_python(PHONE, CONNECT, host, str(port), str(timeout), timeout=timeout + 20).stdout
    what, secs, src = out.split()
    return what, float(secs), src


def test_ipv6_tcp_carries_100_mb_each_way_through_the_tun(own_clat, server6):
    clat = CarryClat().start()
    try:
        assert through_tun(server6), ns(PHONE, "ip", "-6", "route", "get", server6).stdout
        st = clat.status()
        assert st["carry_ipv6"] == "yes", st
        rx0 = status_int(st, "tun_rx_bytes")
        url = f"http://[{server6}]"
        down = ns(PHONE, "sh", "-c", f"curl -sSgf -m 100 {url}/100M | sha256sum",
                  timeout=120, check=False)
        assert down.stdout.split()[0] == served_sha256("100M"), down
        up = ns(PHONE, "curl", "-sSgf", "-m", "100", "--data-binary",
                f"@{LAB_RUN / 'www' / '100M'}", f"{url}/upload", timeout=120, check=False)
        assert up.stdout.split() == [str(100 << 20), served_sha256("100M")], up
        st = clat.status()
        assert status_int(st, "flows_ipv6_total") >= 2, st
        # The upload crossed the TUN from the app: 100 MiB and more.
        assert status_int(st, "tun_rx_bytes") - rx0 > 100 << 20, st
        assert status_int(st, "up_tx_bytes") >= 100 << 20, st
        assert status_int(st, "up_rx_bytes") >= 100 << 20, st
        # The app's source was the TUN's address.
        what, _, src = connect6(server6, 80)
        assert (what, src) == ("connected", CLAT_V6)
    finally:
        clat.stop()


def test_ipv6_connect_errors_come_back_as_the_path_gave_them(own_clat, server6):
    clat = CarryClat().start()
    try:
        st0 = clat.status()
        # Nothing listens on port 9: the server's RST, as ECONNREFUSED.
        what, secs, _ = connect6(server6, 9)
        assert what == "ECONNREFUSED" and secs < 1.0, (what, secs)
        # plat answers "no route" (ICMPv6 1/0): ENETUNREACH from connect().
        # Routers rate-limit ICMPv6 errors: up to three attempts.
        seen = []
        for _ in range(3):
            what, secs, _ = connect6(UNREACHABLE6, 80, timeout=3.0)
            seen.append((what, secs))
            assert what != "connected", seen
            if what == "ENETUNREACH":
                break
            time.sleep(1.1)
        assert seen[-1][0] == "ENETUNREACH" and seen[-1][1] < 2.0, seen
        st = clat.status()
        assert status_int(st, "tcp_rst_sent") > status_int(st0, "tcp_rst_sent"), st
        assert status_int(st, "icmp_errors_sent") > status_int(st0, "icmp_errors_sent"), st
        assert through_tun(UNREACHABLE6)
    finally:
        clat.stop()


UDP_ECHO6 = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(2)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 40)
for size in (0, 1, 1000, 1400):
    data = bytes(i % 251 for i in range(size))
    for attempt in range(3):
        s.sendto(data, (sys.argv[1], 7))
        try:
            d, a = s.recvfrom(2000)
            break
        except socket.timeout:
            continue
    else:
        print("timeout", size)
        sys.exit()
    if d != data or a[0] != sys.argv[1]:
        print("wrong", size, a)
        sys.exit()
print("ok")
"""


def test_ipv6_udp_echo_and_ping_go_through_the_tun(own_clat, server6):
    clat = CarryClat().start()
    try:
        st0 = clat.status()
        out = ns_python(PHONE, UDP_ECHO6, server6).stdout.split()
        assert out == ["ok"], out
        p = ns(PHONE, "ping", "-6", "-c", "3", "-W", "2", server6, check=False)
        assert p.returncode == 0, p.stdout + p.stderr
        # Both went through the engine: a UDP and an echo mapping of IPv6.
        st = clat.status()
        assert status_int(st, "flows_ipv6_total") - status_int(st0, "flows_ipv6_total") >= 2, st
        assert status_int(st, "flows_udp") >= 1 and status_int(st, "flows_icmp") >= 1, st
    finally:
        clat.stop()


TOO_BIG6 = """
import errno, socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DONTFRAG, 1)
s.connect((sys.argv[1], 7))
s.send(bytes(2000))  # fits the TUN (MTU 65000), not the uplink (1500)
for attempt in range(20):
    try:
        s.send(bytes(2000))
    except OSError as e:
        mtu = s.getsockopt(socket.IPPROTO_IPV6, 24)  # IPV6_MTU: the path MTU learnt
        print(errno.errorcode[e.errno], mtu)
        break
    import time; time.sleep(0.1)
else:
    print("no error")
"""


def test_ipv6_datagram_over_the_path_mtu_gets_packet_too_big(own_clat, server6):
    """A 2000-byte datagram with IPV6_DONTFRAG fits the TUN but not the
    uplink: the engine's send fails (EMSGSIZE) and the app gets Packet Too
    Big with 1500, which its kernel takes: the next send fails locally."""
    clat = CarryClat().start()
    try:
        st0 = clat.status()
        out = ns_python(PHONE, TOO_BIG6, server6).stdout.split()
        assert out == ["EMSGSIZE", "1500"], out
        st = clat.status()
        assert status_int(st, "icmp_errors_sent") > status_int(st0, "icmp_errors_sent"), st
    finally:
        clat.stop()


def test_without_carry_ipv6_ipv6_into_the_tun_goes_nowhere(own_clat, server6):
    """The same routes and address by hand, the engine without
    --carry-ipv6: IPv6 reaches the TUN and is dropped (drop_not_ipv4)."""
    clat = own_clat("--bind-device", "ph0", control=CONTROL)
    ns(PHONE, "sysctl", "-qw", f"net.ipv6.conf.{TUN}.disable_ipv6=0")
    ns(PHONE, "ip", "-6", "addr", "add", f"{CLAT_V6}/64", "dev", TUN, "nodad")
    for r in ("::/1", "8000::/1"):
        ns(PHONE, "ip", "-6", "route", "add", r, "dev", TUN)
    try:
        assert f"inet {CLAT_V4}/" in link_addrs(PHONE, TUN)
        assert through_tun(server6)
        st0 = clat.status()
        assert st0["carry_ipv6"] == "no", st0
        what, _, _ = connect6(server6, 80, timeout=2.0)
        assert what == "timeout", what
        st = clat.status()
        assert status_int(st, "drop_not_ipv4") > status_int(st0, "drop_not_ipv4"), st
        assert status_int(st, "flows_ipv6_total") == 0, st
    finally:
        for r in ("::/1", "8000::/1"):
            ns(PHONE, "ip", "-6", "route", "del", r, "dev", TUN, check=False)


def test_carry_ipv6_needs_the_uplink_for_its_own_sockets(lab):
    p = ns(PHONE, str(ClatProcess().binary), "run", "--tun", "clat9", "--carry-ipv6",
           "--pref64", "2001:db8:64::/96", "--dns", "2001:db8:1::53", check=False, timeout=10)
    assert p.returncode != 0
    assert "--carry-ipv6 needs --bind-device" in p.stderr, p.stderr


# The host's IPv6 firewall (issue 15): the engine's rewritten IPv6 SYNs reach
# its listener on the ULA through the IPv6 INPUT hook, so an IPv6 drop policy
# (UFW-like, `ip6` family) stalls every IPv6 TCP flow after its upstream
# connect. `clat run --carry-ipv6` probes that path too and opens it (or, with
# --firewall check, stops with the command), as it does for IPv4.
HOSTFW6 = """
table ip6 hostfw6 {
  chain input {
    type filter hook input priority 0; policy drop;
    iifname "lo" accept
    ct state established,related accept
    meta l4proto ipv6-icmp accept
  }
}
"""


def nft_ruleset() -> str:
    return ns(PHONE, "nft", "list", "ruleset").stdout


def _no_ip6_firewall():
    ns(PHONE, "nft", "delete", "table", "ip6", "hostfw6", check=False)
    for tool in ("ip6tables-nft", "ip6tables-legacy"):
        ns(PHONE, tool, "-P", "INPUT", "ACCEPT", check=False)
        ns(PHONE, tool, "-F", "INPUT", check=False)
    # ip6tables-nft leaves its (empty) table behind.
    ns(PHONE, "nft", "delete", "table", "ip6", "filter", check=False)


@pytest.fixture
def ip6_drop_policy(own_clat, server6):
    """An nftables `ip6` input chain with policy drop in phone (IPv4 open),
    removed after the test whatever it did."""
    _no_ip6_firewall()
    ns(PHONE, "nft", "-f", "-", input=HOSTFW6)
    yield server6
    _no_ip6_firewall()


def test_ipv6_drop_policy_stalls_ipv6_tcp_without_the_check(ip6_drop_policy):
    """The problem: with --firewall off, the IPv6 connect times out (the
    engine's SYN to its own listener is dropped) while IPv4 TCP works."""
    clat = CarryClat("--firewall", "off").start()
    try:
        what, _, _ = connect6(ip6_drop_policy, 80, timeout=3.0)
        assert what == "timeout", what
        assert clat.running()
    finally:
        clat.stop()


@pytest.mark.parametrize("table", ["hostfw6", "filter"])
def test_ipv6_drop_policy_is_opened_for_the_tun_and_closed_at_exit(ip6_drop_policy, table):
    """Also for a hand-written `table ip6 filter` with a lowercase `input`
    chain: not ip6tables-nft's INPUT, so nft opens it."""
    if table != "hostfw6":
        ns(PHONE, "nft", "delete", "table", "ip6", "hostfw6")
        ns(PHONE, "nft", "-f", "-", input=HOSTFW6.replace("hostfw6", table))
    before = nft_ruleset()
    clat = CarryClat().start()
    try:
        during = nft_ruleset()
        assert re.search(rf'table ip6 {table} {{[^}}]*iifname "{TUN}" ip6 saddr {NAT_V6} '
                         rf'ip6 daddr {CLAT_V6} meta l4proto tcp accept '
                         rf'comment "clat run {TUN} pid \d+"', during), during
        assert f"opened nftables chain ip6 {table} input (policy drop)" in clat.log(), clat.log()
        what, _, src = connect6(ip6_drop_policy, 80)
        assert (what, src) == ("connected", CLAT_V6), what
    finally:
        clat.stop()
    assert nft_ruleset() == before


def test_ipv6_drop_policy_check_mode_stops_with_the_command(ip6_drop_policy):
    before = nft_ruleset()
    p = ns(PHONE, str(clat_binary()), "run", "--tun", TUN, "--pref64", "2001:db8:64::/96",
           "--dns", "2001:db8:1::53", "--control", CONTROL, "--carry-ipv6",
           "--bind-device", "ph0", "--firewall", "check", check=False, timeout=15)
    assert p.returncode == 6, p.stderr  # EXIT_FIREWALL_BLOCKED
    assert "IPv6: no answer within 1s" in p.stderr, p.stderr
    assert "IPv4:" not in p.stderr, p.stderr
    assert "nftables chain ip6 hostfw6 input (policy drop)" in p.stderr, p.stderr
    assert (f'nft insert rule ip6 hostfw6 input iifname "{TUN}" ip6 saddr {NAT_V6} '
            f'ip6 daddr {CLAT_V6} meta l4proto tcp accept') in p.stderr, p.stderr
    assert nft_ruleset() == before
    assert not link_exists(PHONE, TUN)


@pytest.mark.parametrize("tool", ["ip6tables-nft", "ip6tables-legacy"])
def test_ip6tables_drop_policy_is_opened_and_closed(ip6_drop_policy, tool):
    ns(PHONE, "nft", "delete", "table", "ip6", "hostfw6")
    ns(PHONE, tool, "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
    ns(PHONE, tool, "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
       "-j", "ACCEPT")
    ns(PHONE, tool, "-A", "INPUT", "-p", "ipv6-icmp", "-j", "ACCEPT")
    ns(PHONE, tool, "-P", "INPUT", "DROP")
    before = ns(PHONE, tool, "-S", "INPUT").stdout
    clat = CarryClat().start()
    try:
        during = ns(PHONE, tool, "-S", "INPUT").stdout
        assert re.search(rf'-A INPUT -s {NAT_V6}/128 -d {CLAT_V6}/128 -i {TUN} -p tcp -m comment '
                         rf'--comment "clat run {TUN} pid \d+" -j ACCEPT',
                         during.splitlines()[1]), during
        what, _, _ = connect6(ip6_drop_policy, 80)
        assert what == "connected", what
    finally:
        clat.stop()
    assert ns(PHONE, tool, "-S", "INPUT").stdout == before


FIRST_FAMILY = """
import socket, sys
ai = socket.getaddrinfo(sys.argv[1], 80, type=socket.SOCK_STREAM)
print(" ".join(a[4][0] for a in ai))
"""


def test_rfc6724_ranks_ipv4_first_when_ipv6_comes_from_the_tun_ula(own_clat, server6):
    """The source-selection consequence docs/ARCHITECTURE.md decides to
    accept ("RFC 6724 and the TUN's ULA"): with --carry-ipv6 the IPv6
    source is the ULA (label 6 in glibc's default table, 13 in RFC 6724's
    and bionic's) and a global destination's label is 1, while IPv4's source
    and destination labels match (4), so getaddrinfo puts the A record of a
    dual-stack name first (rule 5); with plain `clat run` the IPv6 source
    is the uplink's global address and AAAA comes first (rule 6)."""
    name = "dual.lab.example"
    clat = own_clat(control=CONTROL)
    try:
        order = ns_python(PHONE, FIRST_FAMILY, name).stdout.split()
        assert order[0] == SERVER6 and "203.0.113.10" in order, order
    finally:
        clat.stop()
    clat = CarryClat().start()
    try:
        assert through_tun(server6)
        order = ns_python(PHONE, FIRST_FAMILY, name).stdout.split()
        assert order[0] == "203.0.113.10" and SERVER6 in order, order
    finally:
        clat.stop()


def test_carry_ipv6_with_mark_needs_a_rule_for_the_mark(own_clat, server6):
    """`--mark N` keeps the engine's sockets out of the TUN only through a
    routing rule of the user's: without one, `clat run --carry-ipv6 --mark`
    is refused at start with what to add (its IPv6 sockets would loop into
    the TUN); with `fwmark 100 lookup 100` and the uplink's default route in
    table 100 it runs and IPv6 is carried.  A rule that does not take every
    marked socket to a table with a default route is refused too: wg-quick's
    negated `not fwmark`, one with another selector (`iif`), one after the
    rule that looks up main, one whose table has no default route."""
    def refused(why: str):
        p = ns(PHONE, str(clat_binary()), "run", "--tun", TUN, "--pref64", "2001:db8:64::/96",
               "--dns", "2001:db8:1::53", "--control", CONTROL, "--carry-ipv6", "--mark", "100",
               check=False, timeout=15)
        assert p.returncode == 1, p.stderr
        assert why in p.stderr, p.stderr
        assert not link_exists(PHONE, TUN)
        return p

    p = refused("no IPv6 routing rule sends mark 100")
    assert "ip -6 rule add fwmark 100 lookup 100" in p.stderr, p.stderr
    default = ns(PHONE, "ip", "-6", "route", "show", "default").stdout.split()
    gw = default[default.index("via") + 1]
    ns(PHONE, "ip", "-6", "route", "add", "default", "via", gw, "dev", "ph0", "table", "100")
    try:
        for bad in (["not", "fwmark", "100", "lookup", "100", "pref", "100"],
                    ["fwmark", "100", "iif", "lo", "lookup", "100", "pref", "100"],
                    ["fwmark", "100", "lookup", "100", "pref", "40000"]):
            ns(PHONE, "ip", "-6", "rule", "add", *bad)
            try:
                refused("no IPv6 routing rule sends mark 100")
            finally:
                ns(PHONE, "ip", "-6", "rule", "del", *bad)
        ns(PHONE, "ip", "-6", "rule", "add", "fwmark", "100", "lookup", "101", "pref", "100")
        try:
            refused("looks up table 101, which has no IPv6 default route")
        finally:
            ns(PHONE, "ip", "-6", "rule", "del", "pref", "100")
    except BaseException:
        ns(PHONE, "ip", "-6", "route", "flush", "table", "100", check=False)
        raise
    ns(PHONE, "ip", "-6", "rule", "add", "fwmark", "100", "lookup", "100", "pref", "100")
    try:
        clat = CarryClat(protect=("--mark", "100")).start()
        try:
            what, _, src = connect6(server6, 80)
            assert (what, src) == ("connected", CLAT_V6), what
            st = clat.status()
            assert status_int(st, "flows_ipv6_total") >= 1, st
        finally:
            clat.stop()
    finally:
        ns(PHONE, "ip", "-6", "rule", "del", "pref", "100", check=False)
        ns(PHONE, "ip", "-6", "route", "flush", "table", "100", check=False)
