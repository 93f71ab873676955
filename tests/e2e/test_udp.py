"""UDP through the CLAT.

Needs the engine and `clat run` (and `clat status` for the expiry test).
Checks every datagram size class up to the TUN MTU, endpoint-independent
mapping/filtering (one app socket, two servers) and idle expiry of flows.
"""

import json

from labutil import PHONE, SERVER, SERVER2, ns_python, status_int

SIZES = [0, 1, 100, 512, 1000, 1400, 1472]   # 1472 = 1500 - 20 (IPv4) - 8 (UDP)

ECHO_SIZES = """
import json, os, socket, sys
sizes = json.loads(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
res = {}
for n in sizes:
    payload = os.urandom(n)
    ok = "timeout"
    for attempt in range(3):           # UDP may lose one; three in a row is a bug
        s.sendto(payload, ("%s", 7))
        try:
            while True:
                d, a = s.recvfrom(65535)
                if d == payload:
                    ok = "ok" if a == ("%s", 7) else f"wrong source {a}"
                    break
                ok = f"corrupt: {len(d)} bytes"
            break
        except socket.timeout:
            continue
    res[n] = ok
print(json.dumps(res))
""" % (SERVER, SERVER)


def test_every_size_class_echoed_intact(clat):
    out = ns_python(PHONE, ECHO_SIZES, json.dumps(SIZES), timeout=60).stdout
    res = json.loads(out)
    assert res == {str(n): "ok" for n in SIZES}


EIM = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
want = {("%s", 7), ("%s", 7)}
got = set()
for attempt in range(3):
    for dst in want - got:
        s.sendto(b"eim-" + dst[0].encode(), dst)
    try:
        while got != want:
            d, a = s.recvfrom(100)
            if d == b"eim-" + a[0].encode():
                got.add(a)
    except socket.timeout:
        pass
    if got == want:
        break
print(sorted(a[0] for a in got))
""" % (SERVER, SERVER2)


def test_one_socket_two_servers(clat):
    """Endpoint-independent mapping and filtering: one app socket (one source
    port) talks to two servers and hears back from both, with the right
    source addresses."""
    out = ns_python(PHONE, EIM, timeout=30).stdout.strip()
    assert out == str(sorted([SERVER, SERVER2]))


ONE_FLOW = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(b"expire-me", ("%s", 7))
assert s.recvfrom(100)[0] == b"expire-me"
print("ok")
""" % SERVER


def test_udp_flow_expires_after_timeout(own_clat):
    clat = own_clat("--udp-timeout", "2s")
    before = status_int(clat.status(), "flows_udp")
    assert ns_python(PHONE, ONE_FLOW, timeout=20).stdout.strip() == "ok"
    clat.wait_counter("flows_udp", before + 1, timeout=1.5)
    # gone within a few seconds of the 2 s idle timeout
    clat.wait_counter_at_most("flows_udp", before, timeout=10)
    clat.wait_counter("flows_expired", 1)
