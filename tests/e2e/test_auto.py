"""`clat run --auto` (issue 14 item 2): the CLAT carries IPv4 only while the
phone has no native IPv4 default route, following route netlink events.

The lab's phone is IPv6-only; this test gives it a native IPv4 path of its
own for a while: a veth pair from phone to inet (192.0.2.200/30, a
documentation prefix that the lab does not use), over which inet's servers
answer 203.0.113.10 natively.  Adding the default route through it must make
`clat run --auto` withdraw its route and close its flows; removing it must
bring the CLAT back.  IPv4 apps keep working throughout: through the CLAT,
then natively, then through the CLAT.
"""

from __future__ import annotations

import datetime
import re
import subprocess
import time

import pytest

from labutil import (CLAT_V4, DNS64, INET, PHONE, SERVER, TUN, ClatProcess, default_route4,
                     link_addrs, ns, ns_popen, status_int)

CONTROL = "@clat-e2e/auto"
PH_DEV, IN_DEV = "v4ph", "v4in"
PH_ADDR, IN_ADDR = "192.0.2.202", "192.0.2.201"


@pytest.fixture
def native_path(lab):
    """The veth from phone to inet, without a default route yet."""
    ns(PHONE, "ip", "link", "del", PH_DEV, check=False)
    subprocess.run(["ip", "link", "add", PH_DEV, "netns", PHONE, "type", "veth",
                    "peer", "name", IN_DEV, "netns", INET], check=True)
    ns(PHONE, "ip", "addr", "add", f"{PH_ADDR}/30", "dev", PH_DEV)
    ns(INET, "ip", "addr", "add", f"{IN_ADDR}/30", "dev", IN_DEV)
    ns(PHONE, "ip", "link", "set", PH_DEV, "up")
    ns(INET, "ip", "link", "set", IN_DEV, "up")
    yield
    ns(PHONE, "ip", "link", "del", PH_DEV, check=False)


def curl_ok() -> bool:
    r = ns(PHONE, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-m", "3",
           f"http://{SERVER}/", check=False, timeout=10)
    return r.stdout == "200"


def wait_state(clat, activity, clat_route, timeout=5.0):
    """Polls `clat status` and the routes until the CLAT's activity and
    route are as wanted; returns the seconds it took."""
    t = time.monotonic()
    while True:
        st = clat.status()
        has_route = f"dev {TUN}" in default_route4(PHONE)
        if st["activity"] == activity and has_route == clat_route:
            return time.monotonic() - t, st
        assert time.monotonic() - t < timeout, (st, default_route4(PHONE))
        time.sleep(0.01)


HOLD = f"""
import socket, sys, time
s = socket.create_connection(("{SERVER}", 7), timeout=5)
s.sendall(b"x"); assert s.recv(10) == b"x"
print("connected", flush=True)
sys.stdin.readline()
t = time.monotonic()
s.settimeout(10)
try:
    got = s.recv(10)
    print("closed" if got == b"" else "data", round(time.monotonic() - t, 3), flush=True)
except ConnectionResetError:
    print("reset", round(time.monotonic() - t, 3), flush=True)
except socket.timeout:
    print("hung", flush=True)
"""

LOOP = f"""
import subprocess, sys, time
ok = fail = 0
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-m", "2", "http://{SERVER}/"],
                       capture_output=True)
    if r.returncode == 0:
        ok += 1
    else:
        fail += 1
    time.sleep(0.05)
print(ok, fail)
"""


def logged_switch_after(clat, change: str, since: float) -> float:
    """Seconds from wall-clock time ``since`` to the log line of the switch
    ``change`` (e.g. "active -> standby"): clat's own account of how fast it
    followed the route event, without the polling of `clat status`."""
    for line in clat.log().splitlines():
        m = re.match(r"\[(\S+)Z INFO  clat::cmd_run\] " + re.escape(change), line)
        if m:
            t = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc)
            if t.timestamp() >= since - 0.001:
                return t.timestamp() - since
    raise AssertionError(f"no {change!r} in the log after {since}:\n{clat.log()}")


def test_auto_steps_aside_for_native_ipv4_and_comes_back(own_clat, native_path):
    clat = own_clat("--auto", control=CONTROL)
    took, st = wait_state(clat, "active", True)
    assert st["activity_reason"].startswith("no native IPv4 default route"), st
    assert curl_ok()
    via_clat = status_int(clat.status(), "flows_tcp_total")
    assert via_clat >= 1

    # A connection through the CLAT that is open when native IPv4 appears.
    hold = ns_popen(PHONE, "python3", "-c", HOLD, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    text=True)
    assert hold.stdout.readline().strip() == "connected"
    loop = ns_popen(PHONE, "python3", "-c", LOOP, "6", stdout=subprocess.PIPE, text=True)
    time.sleep(1)

    # Native IPv4 appears.
    t_add = time.time()
    ns(PHONE, "ip", "route", "add", "default", "via", IN_ADDR, "dev", PH_DEV)
    hold.stdin.write("go\n")
    hold.stdin.flush()
    to_standby, st = wait_state(clat, "standby", False)
    assert st["activity_reason"] == f"native IPv4 default route via {IN_ADDR} dev {PH_DEV}", st
    # The flow through the CLAT is closed at once, not left hanging.
    held = hold.stdout.readline().split()
    hold.wait(5)
    assert held and held[0] in ("reset", "closed") and float(held[1]) < 2, held
    in_standby = status_int(clat.status(), "flows_tcp_total")
    assert curl_ok()
    time.sleep(1)
    assert status_int(clat.status(), "flows_tcp_total") == in_standby, "went through the CLAT"

    # Native IPv4 goes away: the CLAT comes back.
    t_del = time.time()
    ns(PHONE, "ip", "route", "del", "default", "via", IN_ADDR, "dev", PH_DEV)
    to_active, st = wait_state(clat, "active", True)
    assert curl_ok()
    assert status_int(clat.status(), "flows_tcp_total") > in_standby, "not through the CLAT"

    ok, fail = map(int, loop.communicate(timeout=20)[0].split())
    log_standby = logged_switch_after(clat, "active -> standby", t_add)
    log_active = logged_switch_after(clat, "standby -> active", t_del)
    print(f"\nauto: active after start {took*1000:.0f} ms; native route added -> standby "
          f"{to_standby*1000:.0f} ms; removed -> active {to_active*1000:.0f} ms (polled); "
          f"logged {log_standby*1000:.0f} ms / {log_active*1000:.0f} ms after `ip route` "
          f"started; held flow {held[0]} after {float(held[1])*1000:.0f} ms; background curl "
          f"{ok} ok, {fail} failed")
    # A request in flight at a switch may fail (a flow through the CLAT is
    # reset when native IPv4 appears; a native one loses its path when it
    # goes): at most one per switch. Every request started after works.
    assert fail <= 2, f"{fail} of {ok + fail} requests failed across two switches"
    assert clat.running()
    clat.stop()
    assert clat.proc.returncode == 0
    assert "default" not in default_route4(PHONE)


class StandbyClat(ClatProcess):
    """A `clat run --auto` that starts in standby: ready once its TUN has
    the CLAT address and its control socket answers (no route expected)."""

    def ready(self) -> bool:
        if f"inet {CLAT_V4}/" not in link_addrs(self.netns, self.tun):
            return False
        try:
            self.status()
            return True
        except RuntimeError:
            return False


def test_auto_waits_for_a_prefix_instead_of_failing(own_clat, tmp_path):
    """Where no NAT64 prefix can be found (no DNS64 among the resolvers),
    `clat run --auto` stands by instead of exiting, and becomes active as
    soon as discovery finds one (here: resolv.conf names the DNS64)."""
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 2001:db8:1::99\n")  # nobody there
    clat = StandbyClat("--auto", "--resolv-conf", str(conf), "--discover-timeout", "1s",
                       pref64=None, dns=None, control=CONTROL)
    try:
        clat.start(timeout=20)
        st = clat.status()
        assert (st["activity"], st["activity_reason"], st["prefix"], st["prefix_state"]) == \
            ("standby", "no NAT64 prefix known", "-", "none"), st
        # The JSON says it with a null prefix (docs/status-json.md), the summary with standby.
        assert clat.status_json()["prefix"] is None
        head = clat.status_text().splitlines()
        assert head[1:3] == ["  state: running, standby (no NAT64 prefix known)",
                             "  prefix: none yet (discovery goes on)"], head
        assert f"dev {TUN}" not in default_route4(PHONE)
        t = time.monotonic()
        conf.write_text(f"nameserver {DNS64}\n")
        took, st = wait_state(clat, "active", True, timeout=10)
        assert st["prefix"] == "2001:db8:64::/96" and st["prefix_source"] != "-", st
        assert curl_ok()
        print(f"\nauto: prefix found {took * 1000:.0f} ms after resolv.conf named the DNS64")
    finally:
        clat.stop()
    assert clat.proc.returncode == 0, clat.log()
