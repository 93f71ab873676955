"""Faults around a running CLAT: the server dies mid-transfer, the NAT64 and
the DNS64 go away and come back, the uplink goes down and up, the TUN is
deleted under the engine, and the CLAT restarts while apps retry.

Each test restores the lab in a ``finally`` (links up, routes and addresses
back, DNS64 resumed), because the lab is shared with the other e2e files.
The DNS64 outage is a SIGSTOP of the lab's BIND (resumed with SIGCONT), the
NAT64 outage is ``ip link set nat64 down`` in plat: both are undone exactly,
without restarting lab daemons.  The prefix changing mid-flow is covered by
test_discovery.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from labutil import (INET, LAB_RUN, PHONE, PLAT, SERVER, TUN, clat_binary, default_route4,
                     link_exists, ns, ns_popen, ns_python, status_int, wait_until)

FAULT_PORT = 7200

# A server that streams random data slowly until it is killed.
STREAMER = """
import os, socket, sys, time
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2]))); l.listen(4)
print("listening", flush=True)
c, _ = l.accept()
chunk = os.urandom(65536)
while True:
    c.sendall(chunk)
    time.sleep(0.01)
"""

# Reads until the connection ends; prints how it ended and when.
READER = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(b"unread request bytes\\n" * 10)
s.settimeout(20)
n = 0
announced = False
try:
    while True:
        d = s.recv(65536)
        if not d:
            print("eof", n, time.monotonic(), flush=True); break
        n += len(d)
        if n >= 1 << 20 and not announced:
            print("flowing", n, time.monotonic(), flush=True); announced = True
except ConnectionResetError:
    print("reset", n, time.monotonic(), flush=True)
except socket.timeout:
    print("hang", n, time.monotonic(), flush=True)
"""


def udp_echo(timeout=2.0, check=True):
    return ns_python(PHONE, f"""
import os, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout({timeout})
m = os.urandom(32); s.sendto(m, ("{SERVER}", 7))
assert s.recvfrom(100)[0] == m
print("ok")
""", timeout=timeout + 10, check=check)


def curl_rc(url=f"http://{SERVER}/index.html", timeout=5) -> int:
    """curl's exit status: 0 success, 7 connection refused or unreachable, 28 timed out."""
    return ns(PHONE, "curl", "-sS", "--fail", "-o", "/dev/null", "-m", str(timeout), url,
              check=False, timeout=timeout + 10).returncode


def curl_ok(url=f"http://{SERVER}/index.html", timeout=5) -> bool:
    return curl_rc(url, timeout) == 0


def test_server_dies_mid_transfer(clat):
    """The app sees a reset or a close promptly, not a hang."""
    srv = ns_popen(INET, sys.executable, "-c", STREAMER, SERVER, str(FAULT_PORT),
                   stdout=subprocess.PIPE, text=True)
    rd = None
    try:
        assert srv.stdout.readline().strip() == "listening"
        rd = ns_popen(PHONE, sys.executable, "-c", READER, SERVER, str(FAULT_PORT),
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = rd.stdout.readline().split()
        assert first and first[0] == "flowing", (first, rd.stderr.read() if rd.poll() else "")
        killed_at = time.monotonic()
        srv.kill()
        srv.wait(5)
        line = rd.stdout.readline().split()
        rd.wait(30)
        assert line and line[0] in ("eof", "reset"), line
        took = float(line[2]) - killed_at
        assert took < 5, f"the app learnt of the dead server only after {took:.1f}s"
        assert clat.running()
        assert curl_ok()
    finally:
        for p in (srv, rd):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def _nat64_up():
    ns(PLAT, "ip", "link", "set", "nat64", "up")
    ns(PLAT, "ip", "-6", "route", "replace", "2001:db8:64::/96", "dev", "nat64")
    ns(PLAT, "ip", "-4", "route", "replace", "198.51.100.0/24", "dev", "nat64")


def test_nat64_down_and_back(clat):
    assert curl_ok()
    try:
        ns(PLAT, "ip", "link", "set", "nat64", "down")
        # The PLAT answers "no route" (ICMPv6 unreachable): the app's flow must
        # fail at once, not time out (curl 28). Today the engine completes the
        # app's handshake before the upstream connect resolves, so the app sees
        # a reset after connecting (curl 56); a real IPv4 path fails connect()
        # itself (curl 7), which is what holding the SYN will give.
        rc = curl_rc(timeout=8)
        assert rc in (7, 56), f"curl exit {rc} with the NAT64 down (7/56: failed at once, 28: hung)"
        assert udp_echo(timeout=1.0, check=False).returncode != 0
        assert clat.running(), clat.log()
    finally:
        _nat64_up()
    # New flows work again once it is back.
    wait_until(curl_ok, timeout=20, interval=0.5, what="HTTP through the NAT64 again")
    udp_echo()


def _named_plat_pid() -> int:
    return int((LAB_RUN / "pids" / "named-plat.pid").read_text().strip())


def dig(name, rtype="A", time_s=8):
    t = time.monotonic()
    p = ns(PHONE, "dig", "+time=%d" % time_s, "+tries=1", "@192.0.0.6", name, rtype,
           check=False, timeout=time_s + 10)
    return p, time.monotonic() - t


def test_dns64_down_answers_servfail_promptly_then_recovers(own_clat):
    clat = own_clat("--dns-timeout", "1s")
    p, _ = dig("v4only.lab.example")
    assert "status: NOERROR" in p.stdout and "203.0.113.10" in p.stdout, p.stdout
    before = clat.status()
    pid = _named_plat_pid()
    try:
        os.kill(pid, signal.SIGSTOP)
        p, took = dig("v4only2.lab.example")
        assert "status: SERVFAIL" in p.stdout, p.stdout + p.stderr
        assert took < 3.0, f"SERVFAIL after {took:.1f}s with --dns-timeout 1s"
        st = clat.status()
        assert status_int(st, "dns_servfail") > status_int(before, "dns_servfail")
        assert status_int(st, "dns_upstream_timeouts") > status_int(before,
                                                                     "dns_upstream_timeouts")
    finally:
        os.kill(pid, signal.SIGCONT)

    def resolves():
        p, _ = dig("v4only2.lab.example", time_s=2)
        return "status: NOERROR" in p.stdout and "203.0.113.11" in p.stdout
    wait_until(resolves, timeout=15, interval=0.3, what="DNS through the relay again")
    assert clat.running()


def _uplink_up():
    ns(PHONE, "ip", "link", "set", "ph0", "up")
    ns(PHONE, "ip", "-6", "addr", "replace", "2001:db8:1::2/64", "dev", "ph0", "nodad")
    ns(PHONE, "ip", "-6", "route", "replace", "default", "via", "2001:db8:1::1", "dev", "ph0")


def test_uplink_down_and_up(clat):
    """While ph0 is down, new flows fail (counted, answered), the engine keeps
    running; afterwards new flows work again and a download started before
    resumes and completes whole."""
    dl = ns_popen(PHONE, "curl", "-sS", "-o", "/dev/null", "-m", "50", "--limit-rate", "5M",
                  "-w", "%{http_code} %{size_download}", f"http://{SERVER}/100M",
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        clat.wait_counter("flows_tcp", 1, timeout=10)
        before = clat.status()
        ns(PHONE, "ip", "link", "set", "ph0", "down")
        r = udp_echo(timeout=1.0, check=False)
        assert r.returncode != 0
        assert not curl_ok(timeout=3)
        st = clat.status()
        failed = sum(status_int(st, k) - status_int(before, k)
                     for k in ("drop_upstream_send", "tcp_rst_sent", "icmp_errors_sent",
                               "drop_upstream_socket"))
        assert failed >= 1, "failures while the uplink is down are counted"
        time.sleep(2)
        assert clat.running(), clat.log()
    finally:
        _uplink_up()
    wait_until(curl_ok, timeout=20, interval=0.5, what="HTTP after the uplink came back")
    # One datagram may be lost while the path relearns its neighbours (UDP
    # has no retransmission; TCP above had); new UDP flows must work again.
    wait_until(lambda: udp_echo(check=False).returncode == 0, timeout=10, interval=0.2,
               what="UDP echo after the uplink came back")
    out, err = dl.communicate(timeout=70)
    # TCP on both legs retransmits across the outage: the download resumes and
    # completes whole (20 s at 5 MB/s plus the outage, within curl's -m 50).
    assert (dl.returncode, out) == (0, "200 104857600"), f"curl exit {dl.returncode}: {out} {err}"


def test_tun_deleted_under_engine(own_clat):
    """`ip link del clat0` from outside: clat run notices, says why, cleans up
    and exits non-zero (the engine ended on its own: a failure)."""
    clat = own_clat()
    assert curl_ok()
    t = time.monotonic()
    ns(PHONE, "ip", "link", "del", TUN)
    rc = clat.proc.wait(timeout=15)
    took = time.monotonic() - t
    log = clat.log()
    assert rc != 0, log
    assert "TUN" in log, log
    assert "panicked" not in log, log
    # the engine watcher signals the main thread: no wait for its 5 s poll
    assert took < 2.5, f"exit took {took:.1f}s"
    assert not link_exists(PHONE, TUN)
    assert "default" not in default_route4(PHONE)
    # The control socket (abstract, @clat/clat0) went with the process.
    st = ns(PHONE, str(clat_binary()), "status", "--tun", TUN, check=False, timeout=10)
    assert st.returncode != 0, f"a control socket is still answering: {st.stdout}"


RETRIER = """
import subprocess, sys, time
end = time.monotonic() + float(sys.argv[1])
tries = 0
while time.monotonic() < end:
    tries += 1
    r = subprocess.run(["curl", "-sS", "--fail", "-m", "2", "-o", "/dev/null",
                        "http://v4only.lab.example/index.html"], capture_output=True)
    if r.returncode == 0:
        print("ok", tries, flush=True); sys.exit(0)
    time.sleep(0.3)
print("gave-up", tries, flush=True); sys.exit(1)
"""


def test_restart_while_apps_retry(own_clat):
    """SIGTERM the CLAT while an app retries (by name: DNS relay and TCP);
    the app succeeds once a new instance is up."""
    first = own_clat()
    assert first.stop() == 0
    app = ns_popen(PHONE, sys.executable, "-c", RETRIER, "30",
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        assert app.poll() is None, "succeeded without a CLAT?"
        own_clat()
        out, err = app.communicate(timeout=40)
        words = out.split()
        assert words and words[0] == "ok", out + err
        assert int(words[1]) >= 2, "the app never saw the CLAT missing"
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
