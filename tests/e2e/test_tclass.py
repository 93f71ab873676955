"""DSCP of TCP connections through the CLAT, per connection, both ways (issue 12
item 5, TCP; RFC 7915 sections 4.1 and 5.1 copy the TOS octet and the Traffic
Class).

- App to server: the app sets IP_TOS 0xb8 (DSCP EF) before connect(); the
  server in inet reads the TOS of the connection's packets
  (IP_RECVTOS + getsockopt(IP_PKTOPTIONS): Linux latches it from the handshake).
- Server to app: the server marks its listener with IP_TOS 0x28 (AF11), so its
  SYN-ACK and data carry it; the data the app receives on clat0 must carry it
  too (read from the TUN with an AF_PACKET socket: Linux does not report the
  TOS of received TCP segments to a connecting IPv4 socket).

Each case is run over the phone's plain IPv6 path too (IPV6_TCLASS, through
Tayga), which shows the lab carries the marking end to end; the CLAT must do
the same. ECN bits are not part of this: Linux manages them per TCP socket.

Needs the engine and ``clat run`` (tcp_relay::prepare_upstream,
mirror_traffic_class).
"""

import subprocess
import sys

import pytest

from labutil import INET, PHONE, SERVER, ns, ns_popen, ns_python, synth, wait_until

PORT_READ_TOS = 7013   # answers the TOS it received, e.g. "0xb8"
PORT_MARKED = 7014     # listener marked AF11: sends "hello", then waits for EOF

SERVER_CODE = r"""
import socket, struct, threading
IP_PKTOPTIONS, IP_RECVTOS = 9, 13
def read_tos(c):
    opts = c.getsockopt(socket.IPPROTO_IP, IP_PKTOPTIONS, 64)
    while len(opts) >= 16:            # struct cmsghdr: size_t len, int level, int type
        ln, level, typ = struct.unpack_from("=QII", opts)
        if level == socket.IPPROTO_IP and typ == socket.IP_TOS:
            return struct.unpack_from("=I", opts, 16)[0]
        opts = opts[(ln + 7) & ~7:]
    return None
def serve(port, tos):
    l = socket.create_server(("%s", port), family=socket.AF_INET, backlog=16)
    l.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
    l.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
    while True:
        c, _ = l.accept()
        c.settimeout(20)
        try:
            if port == %d:
                c.sendall(("0x%%02x" %% read_tos(c)).encode() if read_tos(c) is not None else b"none")
            else:
                c.sendall(b"hello")
            c.shutdown(socket.SHUT_WR)
            while c.recv(100):
                pass
        except OSError:
            pass
        c.close()
threading.Thread(target=serve, args=(%d, 0), daemon=True).start()
threading.Thread(target=serve, args=(%d, 0x28), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
""" % (SERVER, PORT_READ_TOS, PORT_READ_TOS, PORT_MARKED)

# The app: connects with `tos` set, reads to EOF; prints what it read and the
# marking of what it received: over IPv6 from IPV6_2292PKTOPTIONS, over IPv4
# from the segments carrying data seen on the TUN.
APP_CODE = r"""
import socket, struct, sys, threading
host, port, tos = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 0)
v6 = ":" in host
seen = []
if not v6:
    cap = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(3))   # ETH_P_ALL
    cap.bind(("clat0", 0))
    cap.settimeout(0.2)
    stop = threading.Event()
    def capture():
        # Stops only once nothing came for 0.2 s after the app's read: the
        # data segments are queued on `cap` by then, but a loaded machine
        # may not have run this thread yet (it used to check `stop` first
        # and leave them unread: "TOS []").
        while True:
            try:
                p = cap.recv(65535)
            except socket.timeout:
                if stop.is_set():
                    break
                continue
            if len(p) < 40 or p[0] >> 4 != 4 or p[9] != 6:
                continue
            ihl = (p[0] & 15) * 4
            sport = struct.unpack_from("!H", p, ihl)[0]
            doff = (p[ihl + 12] >> 4) * 4
            total = struct.unpack_from("!H", p, 2)[0]
            if socket.inet_ntoa(p[12:16]) == host and sport == port and total > ihl + doff:
                seen.append(p[1])
    th = threading.Thread(target=capture); th.start()
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(20)
if v6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tos)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
else:
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
s.connect((host, port))
data = s.makefile("rb").read()
if v6:
    opts = s.getsockopt(socket.IPPROTO_IPV6, 6, 64)       # IPV6_2292PKTOPTIONS
    while len(opts) >= 16:
        ln, level, typ = struct.unpack_from("=QII", opts)
        if level == socket.IPPROTO_IPV6 and typ == socket.IPV6_TCLASS:
            seen.append(struct.unpack_from("=I", opts, 16)[0])
        opts = opts[(ln + 7) & ~7:]
else:
    stop.set(); th.join()
s.close()
print(data.decode(), " ".join("0x%02x" % t for t in seen))
"""


@pytest.fixture(scope="module")
def tos_server(lab):
    p = ns_popen(INET, sys.executable, "-u", "-c", SERVER_CODE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        wait_until(lambda: str(PORT_MARKED) in ns(INET, "ss", "-Hltn").stdout, timeout=5)
        yield p
    finally:
        p.terminate()
        p.wait(5)


def run_app(host, port, tos):
    return ns_python(PHONE, APP_CODE, host, str(port), hex(tos), timeout=30).stdout.split()


def test_app_dscp_reaches_server(clat, tos_server):
    direct = run_app(synth(SERVER), PORT_READ_TOS, 0xb8)
    assert direct[0] == "0xb8", f"plain IPv6 path: {direct}"
    through = run_app(SERVER, PORT_READ_TOS, 0xb8)
    assert through[0] == "0xb8", f"the server saw TOS {through[0]} through the CLAT"
    # And an unmarked connection stays unmarked (no marking left over).
    assert run_app(SERVER, PORT_READ_TOS, 0)[0] == "0x00"


def test_server_dscp_reaches_app(clat, tos_server):
    direct = run_app(synth(SERVER), PORT_MARKED, 0)
    assert direct == ["hello", "0x28"], f"plain IPv6 path: {direct}"
    through = run_app(SERVER, PORT_MARKED, 0)
    assert through[0] == "hello"
    assert through[1:] and set(through[1:]) == {"0x28"}, \
        f"data reached the app with TOS {through[1:]}, the server sent 0x28"
