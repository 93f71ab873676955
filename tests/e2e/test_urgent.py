"""Urgent data (TCP MSG_OOB) through the CLAT, compared with the plain IPv6 path.

The issue's case (issue 12 item 3): the app sends ``abc``, then ``!`` with
MSG_OOB, then ``def``. Over a plain path, a receiver with SO_OOBINLINE reads
``abc!def`` with the urgent mark just before ``!`` (sockatmark), and a receiver
without it reads ``abcdef`` and gets ``!`` from recv(MSG_OOB). The same must
hold through the CLAT, in both directions. The plain path here is the phone's
own IPv6 to the server's NAT64 address (Tayga translates the IP header only, so
the TCP urgent pointer crosses it as sent); the CLAT path is IPv4 to the server.

Each receiver waits until all seven bytes are queued before it reads, so that
what it sees depends only on what arrived (the bytes and where the kernel put
the mark), not on when it read.

Needs the engine and ``clat run`` (rust-core/engine tcp_relay: SO_OOBINLINE on
both legs, the urgent byte re-sent with MSG_OOB).
"""

import json
import subprocess
import sys

import pytest

from labutil import INET, PHONE, SERVER, ns, ns_popen, ns_python, synth, wait_until

PORT_RECV_INLINE = 7010   # reads what the app sends, with SO_OOBINLINE
PORT_RECV_PLAIN = 7011    # reads what the app sends, without it
PORT_SEND = 7012          # sends abc, ! (MSG_OOB), def to the app

# The receiving side, the same code in the server and in the app: waits until
# `n` bytes have arrived (tcpi_bytes_received of TCP_INFO, at offset 128 of
# struct tcp_info; SIOCINQ stops at a pending urgent byte without
# SO_OOBINLINE), then reads with sockatmark before each read; without
# SO_OOBINLINE it takes the urgent byte with recv(MSG_OOB) at the mark.
RECEIVE = r"""
import array, fcntl, socket, struct, time
SIOCATMARK = 0x8905
def ioctl_int(s, req):
    b = array.array("i", [0]); fcntl.ioctl(s.fileno(), req, b); return b[0]
def received(s):
    return struct.unpack_from("=Q", s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256), 128)[0]
def receive(s, n=7):
    inline = bool(s.getsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE))
    deadline = time.monotonic() + 10
    while received(s) < n:
        if time.monotonic() > deadline:
            return {"error": "only %d bytes arrived" % received(s)}
        time.sleep(0.01)
    data, marks, oob = b"", [], b""
    want = n if inline else n - 1
    while len(data) < want:
        if ioctl_int(s, SIOCATMARK):
            if len(data) not in marks:   # still true after recv(MSG_OOB)
                marks.append(len(data))
            if not inline and not oob:
                oob = s.recv(1, socket.MSG_OOB)
                continue
        d = s.recv(100)
        if not d:
            break
        data += d
    if not inline and not oob:
        try:
            oob = s.recv(1, socket.MSG_OOB)
        except OSError as e:
            oob = ("error: " + e.strerror).encode()
    return {"data": data.decode(), "marks": marks, "oob": oob.decode()}
def send_urgent(s):
    s.sendall(b"abc"); s.send(b"!", socket.MSG_OOB); s.sendall(b"def")
"""

SERVER_CODE = RECEIVE + r"""
import json, sys, threading
def serve(port, mode):
    l = socket.create_server(("%s", port), family=socket.AF_INET, backlog=16)
    if mode == "inline":
        l.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)   # accepted sockets inherit it
    while True:
        c, _ = l.accept()
        c.settimeout(20)
        try:
            if mode == "send":
                send_urgent(c)
                c.recv(1)            # until the app closes
            else:
                c.sendall(json.dumps(receive(c)).encode())
                c.shutdown(socket.SHUT_WR)
                while c.recv(100):   # to the app's FIN: close without a reset
                    pass
        except OSError:
            pass
        c.close()
for port, mode in ((%d, "inline"), (%d, "plain"), (%d, "send")):
    threading.Thread(target=serve, args=(port, mode), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
""" % (SERVER, PORT_RECV_INLINE, PORT_RECV_PLAIN, PORT_SEND)

APP_CODE = RECEIVE + r"""
import json, sys
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(20)
if mode == "recv-inline":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
s.connect((host, port))
if mode.startswith("recv"):
    out = receive(s)
else:
    send_urgent(s)
    s.shutdown(socket.SHUT_WR)
    out = json.loads(s.makefile("rb").read())
s.close()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def urgent_server(lab):
    p = ns_popen(INET, sys.executable, "-u", "-c", SERVER_CODE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        wait_until(lambda: str(PORT_SEND) in ns(INET, "ss", "-Hltn").stdout, timeout=5)
        yield p
    finally:
        p.terminate()
        p.wait(5)


def run_app(host, port, mode):
    out = ns_python(PHONE, APP_CODE, host, str(port), mode, timeout=30).stdout
    return json.loads(out)


INLINE = {"data": "abc!def", "marks": [3], "oob": ""}
PLAIN = {"data": "abcdef", "marks": [3], "oob": "!"}

CASES = [
    # (what, port, app mode, expected)
    ("app to server, server with SO_OOBINLINE", PORT_RECV_INLINE, "send", INLINE),
    ("app to server, server without SO_OOBINLINE", PORT_RECV_PLAIN, "send", PLAIN),
    ("server to app, app with SO_OOBINLINE", PORT_SEND, "recv-inline", INLINE),
    ("server to app, app without SO_OOBINLINE", PORT_SEND, "recv-plain", PLAIN),
]


@pytest.mark.parametrize("what,port,mode,expected", CASES, ids=[c[0] for c in CASES])
def test_urgent_data_as_over_plain_ipv6(clat, urgent_server, what, port, mode, expected):
    direct = run_app(synth(SERVER), port, mode)
    assert direct == expected, f"plain IPv6 path: {direct}"
    through = run_app(SERVER, port, mode)
    assert through == direct, f"{what}: CLAT {through}, plain IPv6 {direct}"


def test_urgent_data_repeatedly_back_to_back(clat, urgent_server):
    """The three sends come back to back, so the urgent byte can arrive
    while the engine is reading `abc` (when the relay read on to EAGAIN, 2
    of 300 server-to-app runs lost the mark that way): 20 connections each
    way must all keep the byte and its mark."""
    for _ in range(20):
        assert run_app(SERVER, PORT_RECV_PLAIN, "send") == PLAIN
        assert run_app(SERVER, PORT_SEND, "recv-inline") == INLINE
