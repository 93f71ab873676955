"""UDP through the CLAT.

Needs the engine and `clat run` (and `clat status` for the expiry test).
Checks every datagram size class up to the TUN MTU, endpoint-independent
mapping and filtering as the servers see them (one app socket, two servers
that report the source port they saw, a third endpoint never contacted) and
idle expiry of flows.
"""

import json
import subprocess
import sys

from labutil import INET, PHONE, SERVER, SERVER2, ns_popen, ns_python, status_int

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


# In `inet`: two "who am I" servers, on SERVER and SERVER2, that answer each
# datagram with the source address and port they saw; a "poke" to the first
# makes a third endpoint (SERVER2, another port), never contacted by the app,
# send to that source: what endpoint-independent filtering must let through.
WHOAMI = """
import selectors, socket, sys
port = int(sys.argv[1])
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(("%s", port))
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.bind(("%s", port))
third = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); third.bind(("%s", port + 1))
sel = selectors.DefaultSelector()
sel.register(a, selectors.EVENT_READ); sel.register(b, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        d, src = key.fileobj.recvfrom(100)
        if d == b"poke":
            third.sendto(b"unsolicited", src)
        else:
            key.fileobj.sendto(("%%s:%%d" %% src).encode(), src)
""" % (SERVER, SERVER2, SERVER2)

EIM_EIF = """
import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
def ask(host, msg=b"who"):
    for _ in range(3):
        s.sendto(msg, (host, port))
        try:
            return s.recvfrom(100)
        except socket.timeout:
            pass
    raise SystemExit("no answer from %%s" %% host)
seen1, src1 = ask("%s")
seen2, src2 = ask("%s")
unsolicited = ask("%s", b"poke")
print(repr((seen1.decode(), src1, seen2.decode(), src2, unsolicited)))
""" % (SERVER, SERVER2, SERVER)


def test_endpoint_independent_mapping_and_filtering(clat):
    """RFC 4787 REQ-1 and REQ-8 as the servers see them: one app socket sends
    to two servers, and both see the same source address and port (one
    mapping, not one per destination); then an endpoint the app never sent to
    reaches the app through that mapping (endpoint-independent filtering)."""
    port = 40007
    srv = ns_popen(INET, sys.executable, "-c", WHOAMI, str(port), stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "ready"
        out = ns_python(PHONE, EIM_EIF, str(port), timeout=30).stdout.strip()
        seen1, src1, seen2, src2, (data, third) = eval(out)  # noqa: S307 - our own script's tuple
        assert src1 == (SERVER, port) and src2 == (SERVER2, port), out
        assert seen1 == seen2, f"one app socket, two mappings: {seen1} vs {seen2}"
        assert (data, third) == (b"unsolicited", (SERVER2, port + 1)), out
    finally:
        srv.kill()
        srv.wait()


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
