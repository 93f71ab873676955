"""`clat report` in the lab (issue 17 items 3 and 5): which local processes
used IPv4 through the CLAT.

`clat run --report` attributes each flow the engine reports to the process
that owns the app's socket (sock_diag for TCP and UDP, /proc/net/icmp for
ping sockets, /proc/*/fd for the pid) and aggregates per process.  Here real
`curl` and `ping` in `phone` go through the CLAT, the relay and the lab's
Tayga and BIND9 DNS64, and the report must name them by their own pids, with
the right destinations, names and byte counts (docs/flow-events.md: whole
IPv4 packets crossing the TUN, headers included).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from labutil import (LAB_RUN, PHONE, SERVER, SERVER2, TUN, clat_binary, ns, ns_popen,
                     wait_until)

CONTROL = "@clat-e2e/report"
NAME = "v4only.lab.example"   # A 203.0.113.10 (SERVER) in the lab's zone
FILE = "1M"
FILE_SIZE = 1048576
# ping -c 3, default 56 bytes of data: 20 (IPv4) + 8 (ICMP) + 56 each way.
PINGS = 3
ECHO_PACKET = 84


def report(*extra: str, control: str = CONTROL) -> subprocess.CompletedProcess:
    return ns(PHONE, str(clat_binary()), "report", "--control", control, *extra,
              check=False, timeout=15)


def report_json(*extra: str) -> dict:
    p = report("--json", *extra)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["schema_version"] == 1, doc
    return doc


def run_in_phone(*cmd: str, timeout: float = 30) -> int:
    """Runs ``cmd`` in phone and returns its pid (`ip netns exec` execs the
    command in place, so the pid we started is the command's)."""
    p = ns_popen(PHONE, *cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, f"{cmd} exited {p.returncode}: {out} {err}"
    return p.pid


def by_pid(doc: dict) -> dict[int, dict]:
    return {p["pid"]: p for p in doc["processes"]}


def test_curl_and_ping_show_up_under_their_names(own_clat):
    clat = own_clat("--report", "--icmp-timeout", "2s", control=CONTROL)
    # The literal first: the relay has resolved nothing yet, so this flow
    # has no name; then the same server by name, through the relay and the
    # DNS64 (-4: the A record, the IPv4 path).
    curl_literal = run_in_phone("curl", "-4", "-sSf", "-o", "/dev/null", f"http://{SERVER}/{FILE}")
    curl_name = run_in_phone("curl", "-4", "-sSf", "-o", "/dev/null", f"http://{NAME}/{FILE}")
    # An ICMP datagram ("ping") socket: the lab sets net.ipv4.ping_group_range in phone.
    ping = run_in_phone("ping", "-n", "-c", str(PINGS), "-i", "0.2", "-W", "2", SERVER2)
    ours = (curl_literal, curl_name, ping)

    # TCP ends are reported 2 s after the close, the echo mapping's after
    # --icmp-timeout: wait until the three processes have no open flow.
    def settled():
        doc = report_json()
        procs = by_pid(doc)
        return doc if all(p in procs and procs[p]["open_flows"] == 0 for p in ours) else None

    doc = wait_until(settled, timeout=30, interval=0.5, what="the three processes' flows ended")
    human = report().stdout
    print(human)
    print(json.dumps(doc, indent=1))
    (LAB_RUN / "report-sample.json").write_text(json.dumps(doc, indent=1))
    (LAB_RUN / "report-sample.txt").write_text(human)
    procs = by_pid(doc)

    for pid in (curl_literal, curl_name):
        c = procs[pid]
        assert c["command"] == "curl" and c["exe"].endswith("/curl") and c["uid"] == 0, c
        assert (c["flows"], c["flows_tcp"], c["flows_udp"], c["flows_icmp"]) == (1, 1, 0, 0), c
        assert (c["flows_nat64"], c["flows_native"]) == (1, 0), c
        assert [d["address"] for d in c["destinations"]] == [SERVER], c
        # Whole IPv4 packets: the file, the HTTP response header and 40 to
        # 60 bytes of IPv4 and TCP headers per segment; segments carry at
        # least 536 bytes (RFC 879's default MSS), so headers are at most
        # 60/596, about 10 %.
        assert FILE_SIZE < c["bytes_down"] < FILE_SIZE * 1.11 + 4096, c
        # The request and the ACKs.
        assert 100 < c["bytes_up"] < FILE_SIZE // 20, c
        d = c["destinations"][0]
        assert (d["flows"], d["bytes_up"], d["bytes_down"]) == (1, c["bytes_up"], c["bytes_down"]), c
        assert c["first_use_ms"] <= c["last_use_ms"] <= doc["generated_ms"], c

    lit, named = procs[curl_literal], procs[curl_name]
    assert (lit["flows_by_literal"], lit["flows_by_name"], lit["names"]) == (1, 0, []), lit
    assert (named["flows_by_literal"], named["flows_by_name"]) == (0, 1), named
    assert named["names"] == [{"name": NAME, "flows": 1}], named

    p = procs[ping]
    assert p["command"] == "ping" and p["uid"] == 0, p
    assert (p["flows"], p["flows_icmp"]) == (1, 1), p
    assert [d["address"] for d in p["destinations"]] == [SERVER2], p
    assert (p["bytes_up"], p["bytes_down"]) == (PINGS * ECHO_PACKET, PINGS * ECHO_PACKET), p
    assert p["flows_by_literal"] == 1 and p["names"] == [], p

    # The table names them too.
    rows = [line.split() for line in human.splitlines()]
    for pid, cmd in ((curl_literal, "curl"), (curl_name, "curl"), (ping, "ping")):
        assert any(r[:3] == [str(pid), "0", cmd] for r in rows if len(r) > 3), human
    assert f"names {NAME}" in human, human

    # --since selects by last use: a second after everything ended, none of
    # ours were used within the last second; within the hour, all were.
    time.sleep(2.5)
    recent = by_pid(report_json("--since", "1s"))
    assert not set(ours) & set(recent), recent
    assert set(ours) <= set(by_pid(report_json("--since", "1h")))

    # Names and destinations are not logged above debug (the default level is info).
    log = clat.log()
    assert NAME not in log and SERVER2 not in log, log


UDP_AND_RAW_ECHO = """
import os, socket, struct, sys
server = sys.argv[1]
# UDP: one 100-byte datagram to the lab's echo service, its echo back.
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(3)
u.sendto(b"x" * 100, (server, 7))
assert u.recvfrom(2048)[0] == b"x" * 100
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
# ICMP echo through a raw socket: no ping socket bound to its identifier.
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
r.settimeout(3)
payload = os.urandom(56)
hdr = struct.pack("!BBHHH", 8, 0, 0, 0x4c42, 1)
r.sendto(struct.pack("!BBHHH", 8, 0, csum(hdr + payload), 0x4c42, 1) + payload, (server, 0))
while True:
    data, _ = r.recvfrom(2048)
    icmp = data[(data[0] & 15) * 4:]
    if icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == 0x4c42:
        break
"""


def test_udp_is_named_and_raw_socket_echo_is_unattributed(own_clat):
    own_clat("--report", "--udp-timeout", "2s", "--icmp-timeout", "2s", control=CONTROL)
    py = run_in_phone(sys.executable, "-c", UDP_AND_RAW_ECHO, SERVER)

    def settled():
        doc = report_json()
        un = doc["unattributed"]
        p = by_pid(doc).get(py)
        done = p and p["open_flows"] == 0 and un and un["open_flows"] == 0
        return doc if done else None

    doc = wait_until(settled, timeout=30, interval=0.5, what="the UDP and echo mappings ended")
    p = by_pid(doc)[py]
    assert p["command"].startswith("python3"), p
    assert (p["flows"], p["flows_udp"]) == (1, 1), p
    assert [d["address"] for d in p["destinations"]] == [SERVER], p
    # 20 (IPv4) + 8 (UDP) + 100 each way.
    assert (p["bytes_up"], p["bytes_down"]) == (128, 128), p
    un = doc["unattributed"]
    assert un["reasons"] == {"socket_not_found": 1}, un
    assert (un["flows"], un["flows_icmp"]) == (1, 1), un
    assert [d["address"] for d in un["destinations"]] == [SERVER], un
    assert (un["bytes_up"], un["bytes_down"]) == (ECHO_PACKET, ECHO_PACKET), un
    assert "(unattributed)" in report().stdout


BOUND_TO_THE_TUN = """
import socket, sys
server, tun = sys.argv[1], sys.argv[2].encode()
# Both sockets bound to the TUN (SO_BINDTODEVICE), as an app that picks
# its interface does: the kernel's lookup finds them only by its index.
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, tun)
t.settimeout(5)
t.connect((server, 80))
t.sendall(b"HEAD / HTTP/1.0\\r\\n\\r\\n")
assert t.recv(100).startswith(b"HTTP/")
t.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, tun)
u.settimeout(3)
u.sendto(b"x" * 100, (server, 7))
assert u.recvfrom(2048)[0] == b"x" * 100
"""


def test_sockets_bound_to_the_tun_are_named(own_clat):
    """TCP and UDP from sockets bound to the TUN with SO_BINDTODEVICE: the
    sock_diag request names the TUN's interface index, so they are named by
    their pid (with index 0 the kernel finds no socket for them)."""
    own_clat("--report", "--udp-timeout", "2s", control=CONTROL)
    py = run_in_phone(sys.executable, "-c", BOUND_TO_THE_TUN, SERVER, TUN)
    doc = wait_until(lambda: (d := report_json()) and py in by_pid(d) and d, timeout=15,
                     interval=0.5, what="the bound sockets' process in the report")
    p = by_pid(doc)[py]
    assert (p["flows"], p["flows_tcp"], p["flows_udp"]) == (2, 1, 1), (p, doc["unattributed"])
    assert doc["unattributed"] is None, doc["unattributed"]


def test_without_report_the_instance_says_so(own_clat):
    own_clat(control=CONTROL)
    p = report()
    assert p.returncode == 1 and "--report" in p.stderr and p.stdout == "", p
