"""TCP through the CLAT: IPv4-only clients in phone, IPv4-only servers in inet.

Needs the engine and `clat run` (rust-core/engine, rust-core/cli cmd_run):
every test here uses the ``clat`` fixture and fails if the CLAT does not
carry TCP correctly (data integrity, concurrency, half-close, reset,
refusal, unreachable upstream).
"""

import hashlib
import os
import re

from labutil import (LAB_RUN, PHONE, PORT_CLOSED, PORT_ECHO, PORT_HALFCLOSE, PORT_HTTP,
                     PORT_RESET, PORT_SINK, SERVER, UNREACHABLE, ns, ns_python, status_int)


def served_sha256(name):
    for line in (LAB_RUN / "www" / "SHA256SUMS").read_text().splitlines():
        digest, fname = line.split()
        if fname == name:
            return digest
    raise KeyError(name)


def test_download_100mb_intact(clat):
    out = ns(PHONE, "sh", "-c",
             f"curl -sS --fail -m 240 http://{SERVER}/100M | sha256sum", timeout=260).stdout
    assert out.split()[0] == served_sha256("100M")


def test_upload_100mb_intact(clat, tmp_path):
    path = tmp_path / "up100M"
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(100):
            chunk = os.urandom(1 << 20)
            h.update(chunk)
            f.write(chunk)
    p = ns(PHONE, "curl", "-sS", "--fail", "-m", "240", "-T", str(path),
           f"http://{SERVER}/upload", timeout=260)
    n, digest = p.stdout.split()
    assert int(n) == 100 << 20
    assert digest == h.hexdigest()


def test_raw_stream_upload_sink(clat):
    """10 MB over a plain socket; the server answers the count and sha256 after our FIN."""
    code = f"""
import hashlib, os, socket
s = socket.create_connection(("{SERVER}", {PORT_SINK}), timeout=30)
h = hashlib.sha256(); n = 0
for _ in range(160):
    b = os.urandom(65536); h.update(b); n += len(b); s.sendall(b)
s.shutdown(socket.SHUT_WR)
ans = s.makefile("rb").read().decode().split()
assert ans == [str(n), h.hexdigest()], (ans, n)
print("ok")
"""
    assert ns_python(PHONE, code, timeout=60).stdout.strip() == "ok"


CONCURRENT = """
import os, socket, sys, threading
N = int(sys.argv[1])
barrier = threading.Barrier(N, timeout=60)
errors = []
def one(i):
    try:
        payload = (f"conn-{i}-".encode() + os.urandom(8)) * 500   # ~8-9 KB, unique
        s = socket.create_connection(("%s", %d), timeout=30)
        barrier.wait()          # all N connections are open at the same time
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
        s.close()
        if got != payload:
            errors.append(f"{i}: got {len(got)} bytes, want {len(payload)}")
    except Exception as e:
        errors.append(f"{i}: {e!r}")
        try:
            barrier.abort()
        except Exception:
            pass
ts = [threading.Thread(target=one, args=(i,)) for i in range(N)]
for t in ts: t.start()
for t in ts: t.join()
print(len(errors), "errors")
for e in errors[:20]: print(e)
""" % (SERVER, PORT_ECHO)


def test_200_concurrent_connections(clat):
    p = ns_python(PHONE, CONCURRENT, "200", timeout=120, check=False)
    assert p.returncode == 0 and p.stdout.startswith("0 errors"), p.stdout + p.stderr
    clat.wait_counter("flows_tcp_total", 200)


def test_half_close_carries_data_after_fin(clat):
    """We send 1 MB and FIN; the server reads to EOF and only then answers."""
    code = f"""
import hashlib, os, socket, time
data = os.urandom(1 << 20)
s = socket.create_connection(("{SERVER}", {PORT_HALFCLOSE}), timeout=20)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
time.sleep(0.5)   # the answer must still arrive well after our FIN
got = s.makefile("rb").read().decode().strip()
assert got == hashlib.sha256(data).hexdigest(), got
# and the echo service returns all of a half-closed stream
s = socket.create_connection(("{SERVER}", {PORT_ECHO}), timeout=20)
s.sendall(data[:200000]); s.shutdown(socket.SHUT_WR)
back = s.makefile("rb").read()
assert back == data[:200000], len(back)
print("ok")
"""
    assert ns_python(PHONE, code, timeout=60).stdout.strip() == "ok"


SERVER_CLOSES_FIRST = f"""
import socket, sys, time
n, ref = int(sys.argv[1]), None
for i in range(n):
    s = socket.create_connection(("{SERVER}", {PORT_HTTP}), timeout=10)
    # HTTP/1.0: the server sends the file and closes first
    s.sendall(b"GET /index.html HTTP/1.0\\r\\nHost: lab\\r\\n\\r\\n")
    with s.makefile("rb") as f:
        got = f.read()          # to the server's FIN
    body = got.split(b"\\r\\n\\r\\n", 1)[1]
    assert ref is None or body == ref, (i, len(body), len(ref))
    ref = body
    if i % 2:
        s.close()
        continue
    # Half-close after EOF and keep the socket: our FIN must be acknowledged
    # (LAST_ACK -> CLOSE) with no reset on the way (SO_ERROR stays 0).
    s.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + 5
    while s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != 7:   # TCP_CLOSE
        assert time.monotonic() < deadline, "our FIN was never acknowledged"
        time.sleep(0.001)
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    assert err == 0, f"connection {{i}} ended with {{err}}, not an orderly close"
    assert s.recv(10) == b""
    s.close()
print("ok", len(ref))
"""


def test_server_closing_first_leaves_no_time_wait(own_clat):
    """The server closes first, so the engine's side of the local leg sends
    the first FIN: without the fast close its socket would sit 60 s in
    TIME_WAIT and hold the NAT port. Every close stays orderly for the app
    (a plain close and a half-close that waits for the ACK of its FIN)."""
    n = 200
    clat = own_clat()
    lport = re.search(r"listener port (\d+)", clat.log()).group(1)
    p = ns_python(PHONE, SERVER_CLOSES_FIRST, str(n), timeout=120)
    assert p.stdout.split()[0] == "ok", p.stdout + p.stderr
    assert int(p.stdout.split()[1]) > 0
    tw = ns(PHONE, "ss", "-Htan", "state", "time-wait", "sport", "=", f":{lport}").stdout
    assert tw.strip() == "", f"listener-side TIME_WAIT left: {len(tw.splitlines())}"
    st = clat.status()
    assert status_int(st, "tcp_fast_closes") == n, st
    assert status_int(st, "tcp_rst_sent") == 0, st
    clat.wait_counter_at_most("flows_tcp", 0, timeout=10)


def test_server_reset_reaches_client(clat):
    code = f"""
import socket, time
s = socket.create_connection(("{SERVER}", {PORT_RESET}), timeout=10)
s.sendall(b"hello")
t = time.monotonic()
try:
    while True:
        d = s.recv(100)
        if not d:
            print("EOF instead of reset"); break
except ConnectionResetError:
    print("reset %.3f" % (time.monotonic() - t))
"""
    out = ns_python(PHONE, code, timeout=30).stdout.strip()
    assert out.startswith("reset"), out
    assert float(out.split()[1]) < 5


def test_closed_port_refused_promptly(clat):
    """Nothing listens on port 9: the app must learn that within a second,
    as a refusal (never an EOF or data). connect() itself fails since the
    engine holds the SYN until the upstream connect resolves
    (test_connect.py insists on that; this test takes a reset on the first
    read too).
    """
    code = f"""
import socket, time
t = time.monotonic()
try:
    s = socket.create_connection(("{SERVER}", {PORT_CLOSED}), timeout=10)
    s.settimeout(10)
    d = s.recv(100)
    print("connected, then read", repr(d))
except ConnectionRefusedError:
    print("refused %.3f connect" % (time.monotonic() - t))
except ConnectionResetError:
    print("refused %.3f reset-after-connect" % (time.monotonic() - t))
except OSError as e:
    print("other", repr(e))
"""
    out = ns_python(PHONE, code, timeout=30).stdout.strip()
    assert out.startswith("refused"), out
    assert float(out.split()[1]) < 1.0, out


def test_unreachable_host_fails_not_hangs(clat):
    """192.0.2.65 is routed 'unreachable' in plat: the NAT64 answers ICMP
    unreachable; the app must get an error, not wait for TCP's own timeout."""
    code = f"""
import socket, time
t = time.monotonic()
try:
    s = socket.create_connection(("{UNREACHABLE}", 80), timeout=20)
    # Connected to the CLAT's own listener, perhaps: the failure must come next.
    s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    d = s.recv(100)
    print("got", repr(d))
except socket.timeout:
    print("timeout %.3f" % (time.monotonic() - t))
except OSError as e:
    print("error %.3f %r" % (time.monotonic() - t, e))
"""
    out = ns_python(PHONE, code, timeout=40).stdout.strip()
    assert out.startswith("error"), out
    assert float(out.split()[1]) < 10.0, out
