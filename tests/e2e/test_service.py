"""`clat run` as packaging/clat.service runs it, in the lab.

The unit runs clat as a transient unprivileged user (DynamicUser=) with
CAP_NET_ADMIN as its only capability (AmbientCapabilities=,
CapabilityBoundingSet=), Type=notify, with stderr connected to the journal.
systemd does not run on this machine (a container without systemd as PID 1),
so this test reproduces that part of the unit with setpriv (same uid change,
same ambient, inheritable and bounding sets, no_new_privs) and stands in for
the service manager's two sockets: NOTIFY_SOCKET is a datagram socket of the
test, and JOURNAL_STREAM names the log file the test reads. What it does not
cover: the unit's mount and seccomp sandbox (checked statically by
`systemd-analyze verify`, see tests/run-all.sh, stage "linux packaging").

/dev/net/tun is mode 0600 in this container; on a Debian host systemd's udev
rule (50-udev-default.rules: KERNEL=="tun", MODE="0666") makes it 0666, so
the test gives clat's mount namespace such a node (a private bind mount,
nothing changes on the machine).

It runs `clat run --auto`, as the unit's ExecStart does, with the default
firewall mode (the lab's phone has no firewall: the probe finds the path
open and nothing is changed) and an abstract control socket of its own (the
unit uses the default, @clat/clat0; root's `clat status` is answered by the
transient user's instance through SO_PEERCRED). A second test starts it
where native IPv4 exists: READY=1 comes in standby too.

CLAT_BIN=/usr/bin/clat runs it against the installed package
(packaging/test-deb.sh).
"""

import os
import shlex
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from labutil import (CLAT_V4, PHONE, PREF64, DNS64, SERVER, TUN, clat_binary, default_route4,
                     link_addrs, link_exists, ns, ns_popen)
from test_auto import IN_ADDR, PH_DEV, native_path  # noqa: F401 (a fixture)

NOBODY = 65534
CAP_NET_ADMIN = 1 << 12
CONTROL = "@clat-e2e/service"


def recv_notification(sock, timeout):
    sock.settimeout(timeout)
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines() if "=" in line)


def start_as_unit(work):
    """`clat run --auto` as clat.service starts it; returns the process, the
    notification socket and the log ("journal") path."""
    os.chmod(work, 0o755)
    tun_node = os.path.join(work, "tun")
    notify_path = os.path.join(work, "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    os.chmod(notify_path, 0o666)
    log_path = os.path.join(work, "journal")
    log = open(log_path, "wb")
    st = os.fstat(log.fileno())
    binary = str(clat_binary())
    clat_cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                "--inh-caps=-all,+net_admin", "--ambient-caps=-all,+net_admin",
                "--bounding-set=-all,+net_admin", "--no-new-privs", "--",
                binary, "run", "--auto", "--tun", TUN, "--pref64", PREF64, "--dns", DNS64,
                "--control", CONTROL]
    script = (f"mknod -m 0666 {tun_node} c 10 200 && mount --bind {tun_node} /dev/net/tun && "
              f"exec {shlex.join(clat_cmd)}")
    env = {k: v for k, v in os.environ.items() if k not in ("RUST_LOG",)}
    env.update(NOTIFY_SOCKET=notify_path, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    proc = ns_popen(PHONE, "sh", "-c", script, stdout=log, stderr=log,
                    stdin=subprocess.DEVNULL, env=env)
    log.close()
    return proc, notify, log_path


def stop(proc, notify):
    """SIGTERM, as `systemctl stop` sends it: STOPPING=1, then a clean exit."""
    proc.send_signal(signal.SIGTERM)
    stopping = recv_notification(notify, 5)
    assert stopping.get("STOPPING") == "1", stopping
    assert proc.wait(10) == 0


def test_runs_as_the_unit_does(no_clat):
    work = tempfile.mkdtemp(prefix="clat-service-")
    binary = str(clat_binary())
    lab_range = ns(PHONE, "cat", "/proc/sys/net/ipv4/ping_group_range").stdout
    # The kernel's default (no group may use ping sockets), as on a host
    # whose sysctl configuration does not widen it: clat must widen it.
    ns(PHONE, "sysctl", "-qw", "net.ipv4.ping_group_range=1 0")
    t0 = time.monotonic()
    proc, notify, log_path = start_as_unit(work)
    try:
        ready = recv_notification(notify, 15)
        took = time.monotonic() - t0
        # Ready means ready: the TUN, its address and the route are there.
        assert ready.get("READY") == "1", ready
        assert ready.get("STATUS", "").startswith("active: "), ready
        assert f"prefix {PREF64}" in ready["STATUS"], ready
        assert f"inet {CLAT_V4}/29" in link_addrs(PHONE, TUN)
        assert "default dev " + TUN in default_route4(PHONE)
        print(f"READY=1 {took:.2f}s after start")
        # The user and capabilities are the unit's, and nothing more.
        with open(f"/proc/{proc.pid}/status") as f:
            status = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
        assert status["Uid"].split()[:2] == [str(NOBODY)] * 2, status["Uid"]
        for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
            assert int(status[k], 16) == CAP_NET_ADMIN, (k, status[k])
        # IPv4 works through it: TCP, and ICMP echo through its ping sockets
        # (it widened ping_group_range for its own gid, unprivileged).
        ns(PHONE, "curl", "-sS", "--fail", "-o", "/dev/null", "-m", "20", f"http://{SERVER}/")
        ns(PHONE, "ping", "-c", "1", "-W", "5", SERVER, timeout=15)
        assert ns(PHONE, "cat", "/proc/sys/net/ipv4/ping_group_range").stdout.split() == \
            [str(NOBODY)] * 2
        assert ns(PHONE, "cat", f"/proc/sys/net/ipv6/conf/{TUN}/disable_ipv6").stdout.strip() == "1"
        # root asks the transient user's instance (SO_PEERCRED lets root in).
        doc = json.loads(ns(PHONE, binary, "status", "--json", "--control", CONTROL).stdout)
        assert (doc["state"], doc["activity"]) == ("running", "active"), doc
        stop(proc, notify)
        assert not link_exists(PHONE, TUN)
        assert ns(PHONE, "cat", "/proc/sys/net/ipv4/ping_group_range").stdout.split() == ["1", "0"]
    finally:
        ns(PHONE, "sysctl", "-qw", "net.ipv4.ping_group_range=" + " ".join(lab_range.split()))
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        notify.close()
    lines = open(log_path, errors="replace").read().splitlines()
    shutil.rmtree(work)
    # Journal lines: a syslog priority and no timestamp of their own.
    assert lines, "no log"
    assert all(l[:1] == "<" and l[2:3] == ">" for l in lines), lines
    assert any(l.startswith("<6>clat running on " + TUN) for l in lines), lines
    assert not any("Z INFO" in l or "Z WARN" in l for l in lines), lines


def test_ready_in_standby(no_clat, native_path):
    """Started where the host has native IPv4 (as the unit may be at boot),
    `clat run --auto` stands by, and says READY=1 all the same (with why in
    STATUS=), so that systemd does not time the unit out; no route of its own."""
    ns(PHONE, "ip", "route", "add", "default", "via", IN_ADDR, "dev", PH_DEV)
    work = tempfile.mkdtemp(prefix="clat-service-")
    proc, notify, log_path = start_as_unit(work)
    try:
        ready = recv_notification(notify, 15)
        assert ready.get("READY") == "1", ready
        assert ready.get("STATUS") == \
            f"standby on {TUN}: native IPv4 default route via {IN_ADDR} dev {PH_DEV}", ready
        assert f"dev {TUN}" not in default_route4(PHONE)
        doc = json.loads(ns(PHONE, str(clat_binary()), "status", "--json",
                            "--control", CONTROL).stdout)
        assert (doc["activity"], doc["prefix"]["prefix"]) == ("standby", PREF64), doc
        # Native IPv4 goes: active, and systemd hears it (STATUS= only).
        ns(PHONE, "ip", "route", "del", "default", "via", IN_ADDR, "dev", PH_DEV)
        change = recv_notification(notify, 5)
        assert "READY" not in change and change.get("STATUS", "").startswith("active: "), change
        stop(proc, notify)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        notify.close()
        shutil.rmtree(work)
