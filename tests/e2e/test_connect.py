"""connect() through the CLAT resolves as the real IPv4 path would (issue 12
item 1, DESIGN.md "Fidelity"): the app's SYN is held until the upstream
connect resolves, so a refusal is ECONNREFUSED from connect() itself, an
unreachable destination EHOSTUNREACH/ENETUNREACH from connect(), silence a
timeout of the app's own, and the connect time includes the path's.

Also keepalives (item 2): every packet of a flow refreshes its idle timer,
and app keepalives give the upstream socket keepalives.

Path conditions are made with nft rules in a table of the test's own in
``inet``, deleted afterwards (the lab kernel has no netem: a delay is made by
dropping the first SYN, which the upstream retransmits after its 1 s RTO).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager

from labutil import (INET, PHONE, PORT_CLOSED, PORT_ECHO, SERVER, UNREACHABLE, connect_from_phone, ns,
                     ns_popen,
                     ns_python, status_int, synth)

# Ports on SERVER that nothing in the lab uses: the tests' nft rules act on these.
PORT_BLACKHOLE = 7098


@contextmanager
def nft_table(*rules: str):
    """A table of this test in ``inet`` with an input chain holding ``rules``."""
    name = f"clattest_{os.getpid()}"
    ns(INET, "nft", "add", "table", "inet", name)
    try:
        ns(INET, "nft", f"add chain inet {name} input {{ type filter hook input priority 0; }}")
        for r in rules:
            ns(INET, "nft", r.replace("{t}", f"inet {name}"))
        yield
    finally:
        ns(INET, "nft", "delete", "table", "inet", name, check=False)


def test_connect_to_closed_port_is_refused_by_connect(clat):
    """Nothing listens on port 9 in inet: its RST comes back through the
    NAT64 and the app's connect() fails with ECONNREFUSED, promptly."""
    what, secs = connect_from_phone(SERVER, PORT_CLOSED)
    assert what == "ECONNREFUSED", (what, secs)
    assert secs < 1.0, secs
    st = clat.status()
    assert status_int(st, "tcp_rst_sent") >= 1, st


def test_connect_to_unreachable_destination_fails_with_unreachable(clat):
    """plat routes 192.0.2.64/26 'unreachable': the NAT64 answers the
    upstream SYN with ICMPv6 unreachable, and the app's connect() must fail
    with EHOSTUNREACH or ENETUNREACH, never connect. Routers rate-limit ICMP
    errors (RFC 1812 4.3.2.8), so up to three attempts 1.1 s apart: each
    must fail, one must be answered unreachable."""
    seen = []
    for _ in range(3):
        what, secs = connect_from_phone(UNREACHABLE, 80, timeout=3.0)
        seen.append((what, secs))
        assert what != "connected", seen
        if what in ("EHOSTUNREACH", "ENETUNREACH"):
            assert secs < 2.0, seen
            st = clat.status()
            assert status_int(st, "icmp_errors_sent") >= 1, st
            return
        ns(PHONE, "sleep", "1.1")
    raise AssertionError(f"never answered unreachable: {seen}")


def test_connect_to_blackholed_destination_times_out_in_the_app(clat):
    """The server's packets on PORT_BLACKHOLE are dropped: no answer at all.
    The app's own 3 s timeout must decide; it must never see 'connected'.
    Its SYN retransmission (after 1 s) is absorbed while the upstream
    connect is pending."""
    before = status_int(clat.status(), "tcp_syns_absorbed")
    with nft_table("add rule {t} input tcp dport %d drop" % PORT_BLACKHOLE):
        what, secs = connect_from_phone(SERVER, PORT_BLACKHOLE, timeout=3.0)
    assert what == "timeout", (what, secs)
    assert 2.9 <= secs < 4.0, secs
    st = clat.status()
    assert status_int(st, "tcp_syns_absorbed") >= before + 1, st


def test_connect_time_includes_the_path(clat):
    """The first upstream SYN to the echo port is dropped in inet, so the
    upstream connect takes one SYN retransmission (Linux's initial RTO,
    1 s): the app's connect() must take that long too, then work."""
    rules = [
        "add set {t} seen { type ipv4_addr; flags dynamic; }",
        "add rule {t} input tcp dport %d tcp flags & (syn | ack) == syn ip saddr @seen accept"
        % PORT_ECHO,
        "add rule {t} input tcp dport %d tcp flags & (syn | ack) == syn add @seen { ip saddr } drop"
        % PORT_ECHO,
    ]
    code = f"""
import socket, time
t = time.monotonic()
s = socket.create_connection(("{SERVER}", {PORT_ECHO}), timeout=10)
c = time.monotonic() - t
s.sendall(b"ping"); assert s.recv(16) == b"ping"
print("%.3f" % c)
"""
    with nft_table(*rules):
        secs = float(ns_python(PHONE, code, timeout=30).stdout)
    assert 0.9 <= secs < 5.0, secs


KEEPALIVE = """
import socket, sys, time
keepalive = sys.argv[1] == "1"
s = socket.create_connection(("%(srv)s", %(port)d), timeout=5)
if keepalive:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 5)
s.sendall(b"a"); assert s.recv(16) == b"a"
print("idle", flush=True)
time.sleep(12)
try:
    s.sendall(b"b")
    d = s.recv(16)
    print("alive" if d == b"b" else "dead %%r" %% d)
except OSError as e:
    print("dead %%r" %% e)
""" % {"srv": SERVER, "port": PORT_ECHO}


def upstream_keepalive_secs() -> list[float]:
    """Seconds left on the keepalive timers of the CLAT's upstream sockets to
    the echo port (``ss -o``: ``timer:(keepalive,9.5sec,0)``)."""
    out = ns(PHONE, "ss", "-tnoH", "state", "established",
             "dst", f"[{synth(SERVER)}]:{PORT_ECHO}").stdout
    secs = []
    for m in re.finditer(r"timer:\(keepalive,(?:(\d+)min)?([\d.]+)(ms|sec)", out):
        v = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
        secs.append(60 * int(m.group(1) or 0) + v)
    return secs


def test_keepalives_keep_an_idle_flow_and_reach_upstream(own_clat):
    """--tcp-est-timeout 5s; the app sends keepalives every second and is
    otherwise idle for 12 s: the connection still works, and meanwhile the
    CLAT's upstream socket runs keepalives of its own (so the NAT64's state
    lives too), at the 10 s floor (tcp_flows.rs KEEPALIVE_MIN)."""
    clat = own_clat("--tcp-est-timeout", "5s")
    app = ns_popen(PHONE, sys.executable, "-c", KEEPALIVE, "1",
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(5)
        timers = upstream_keepalive_secs()
        sockets = ns(PHONE, "ss", "-tno").stdout
    finally:
        out, err = app.communicate(timeout=30)
    assert out.split("\n")[:2] == ["idle", "alive"], (out, err)
    assert len(timers) == 1 and 0 < timers[0] <= 10.0, (timers, sockets)
    st = clat.status()
    assert status_int(st, "tcp_upstream_keepalives") == 1, st
    assert status_int(st, "flows_expired") == 0, st


def test_without_keepalives_an_idle_flow_is_reset(own_clat):
    """The same idle 12 s without keepalives: the 5 s timeout resets it, and
    the upstream socket never got keepalives."""
    clat = own_clat("--tcp-est-timeout", "5s")
    p = ns_python(PHONE, KEEPALIVE, "0", timeout=40, check=False)
    out = p.stdout.split("\n")
    assert out[0] == "idle" and out[1].startswith("dead"), (p.stdout, p.stderr)
    st = clat.status()
    assert status_int(st, "flows_expired") >= 1, st
    assert status_int(st, "tcp_upstream_keepalives") == 0, st


# A port on SERVER that nothing in the lab uses: a server that never reads.
PORT_STALLED = 7097

STALLED_SERVER = """
import socket, sys, time
l = socket.socket(socket.AF_INET6)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("::", int(sys.argv[1])))
l.listen(1)
print("ready", flush=True)
c, _ = l.accept()
c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
time.sleep(60)
"""

STALLED_UPLOAD = """
import select, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.setblocking(False)
chunk, sent, last = b"x" * 65536, 0, time.monotonic()
while time.monotonic() - last < 2:
    if select.select([], [s], [], 0.5)[1]:
        try:
            n = s.send(chunk)
        except BlockingIOError:
            continue
        sent += n
        last = time.monotonic()
print("stalled after %d bytes" % sent, flush=True)
time.sleep(10)
print("done", flush=True)
"""


def test_zero_window_probes_do_not_turn_on_upstream_keepalives(clat):
    """An upload to a server that stops reading: the CLAT's local socket
    closes its window, and the app's kernel probes it (from about 200 ms,
    backing off) with segments that look exactly like keepalive probes.
    They are not keepalives: the upstream socket must not get SO_KEEPALIVE
    (at the 10 s floor, for the connection's life, waking the radio)."""
    server = ns_popen(INET, sys.executable, "-c", STALLED_SERVER, str(PORT_STALLED),
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready", server.stderr.read()
        before = status_int(clat.status(), "tcp_upstream_keepalives")
        p = ns_python(PHONE, STALLED_UPLOAD, SERVER, str(PORT_STALLED), timeout=60)
        out = p.stdout.split("\n")
        assert out[0].startswith("stalled") and out[1] == "done", (p.stdout, p.stderr)
        after = status_int(clat.status(), "tcp_upstream_keepalives")
    finally:
        server.kill()
        server.wait()
    assert after == before, (before, after, p.stdout)
