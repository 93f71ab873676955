"""`clat run` behind a host firewall (issue 14 item 1).

The engine's rewritten SYNs reach its listener through the INPUT hook as new
connections on the TUN, so a host firewall with a drop policy drops every TCP
flow while ping and DNS still work.  Here the phone gets the firewalls users
have: an nftables input chain with `policy drop` that accepts lo,
established/related and ICMPv6 (what UFW or firewalld's public zone amount
to), and iptables with a DROP policy through both back ends (iptables-nft,
iptables-legacy).  `clat run` either works (the default `--firewall auto`
opens the TUN alone and removes that at exit, leaving the ruleset as it was)
or, with `--firewall check`, stops within 10 s naming the firewall and the
command that opens it.  The opening is narrow: TCP from the CLAT's NAT address
(192.0.0.5) to its own address on the TUN, nothing else; the apps' traffic
passes as replies to their own connections (conntrack), and a datagram from an
endpoint an app never talked to stays under the host's drop policy.

firewalld runs in phone too, on a D-Bus system bus of its own (a private
dbus-daemon whose address `clat run` and `firewall-cmd` get from
DBUS_SYSTEM_BUS_ADDRESS), so that it manages the phone's ruleset only.

Needs the Debian packages `nftables`, `iptables` and `firewalld`, see
tests/lab/install-deps.sh.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from labutil import (CLAT_V4, DNS_V4, INET, LAB_RUN, NAT_V4, PHONE, SERVER, SERVER2, TUN,
                     ClatProcess, clat_binary, link_exists, ns, ns_popen, ns_python, wait_until)
from test_udp import WHOAMI

# The nft rule `clat run` inserts (as `nft list ruleset` prints it back).
NFT_OPENING = (rf'iifname "{TUN}" ip saddr {re.escape(NAT_V4)} ip daddr {re.escape(CLAT_V4)} '
               rf'meta l4proto tcp accept comment "clat run {TUN} pid \d+"')
RICH_RULE = (f'rule family="ipv4" source address="{NAT_V4}" destination address="{CLAT_V4}" '
             f'protocol value="tcp" accept')

CONTROL = "@clat-e2e/firewall"

UFW_LIKE = """
table inet hostfw {
  chain input {
    type filter hook input priority 0; policy drop;
    iifname "lo" accept
    ct state established,related accept
    meta l4proto ipv6-icmp accept
  }
}
"""


def curl(timeout=5):
    return ns(PHONE, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-m", str(timeout),
              f"http://{SERVER}/", check=False, timeout=timeout + 10)


def nft_ruleset() -> str:
    return ns(PHONE, "nft", "list", "ruleset").stdout


def iptables_s(tool: str) -> str:
    return ns(PHONE, tool, "-S", "INPUT").stdout


def _reset_firewalls():
    ns(PHONE, "nft", "flush", "ruleset", check=False)
    for tool in ("iptables-legacy", "iptables-nft"):
        ns(PHONE, tool, "-P", "INPUT", "ACCEPT", check=False)
        ns(PHONE, tool, "-F", "INPUT", check=False)
    # iptables-nft leaves its (now empty) table behind: flush once more.
    ns(PHONE, "nft", "flush", "ruleset", check=False)


@pytest.fixture
def hostfw(own_clat):
    """The phone with no firewall before and after the test, whatever the test did."""
    _reset_firewalls()
    yield own_clat
    _reset_firewalls()


def nft_ufw_like():
    ns(PHONE, "nft", "-f", "-", input=UFW_LIKE)


def iptables_drop(tool: str):
    ns(PHONE, tool, "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
    ns(PHONE, tool, "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
       "-j", "ACCEPT")
    ns(PHONE, tool, "-P", "INPUT", "DROP")


def test_nftables_drop_policy_blocks_tcp_without_the_check(hostfw):
    """The problem as users meet it: with --firewall off, TCP times out."""
    nft_ufw_like()
    clat = hostfw("--firewall", "off", control=CONTROL)
    r = curl(timeout=4)
    assert r.returncode == 28, f"curl exit {r.returncode} {r.stdout} {r.stderr}"
    assert clat.running()


def test_nftables_drop_policy_is_opened_for_the_tun_and_closed_at_exit(hostfw):
    nft_ufw_like()
    before = nft_ruleset()
    t = time.monotonic()
    clat = hostfw(control=CONTROL)
    started = time.monotonic() - t
    during = nft_ruleset()
    assert re.search(NFT_OPENING, during), during
    assert during.count(f'iifname "{TUN}"') == 1, during
    assert curl().stdout == "200"
    assert "opened nftables chain inet hostfw input (policy drop)" in clat.log(), clat.log()
    clat.stop()
    assert nft_ruleset() == before
    print(f"\nnftables: started with the opening in {started:.2f}s")


def test_nftables_check_mode_stops_with_the_command(hostfw):
    nft_ufw_like()
    before = nft_ruleset()
    t = time.monotonic()
    p = ns(PHONE, str(clat_binary()), "run", "--tun", TUN, "--pref64", "2001:db8:64::/96",
           "--dns", "2001:db8:1::53", "--control", CONTROL, "--firewall", "check",
           check=False, timeout=15)
    took = time.monotonic() - t
    assert p.returncode == 6, p.stderr  # EXIT_FIREWALL_BLOCKED
    assert took < 10, f"{took:.1f}s"
    assert "nftables chain inet hostfw input (policy drop)" in p.stderr, p.stderr
    assert (f'nft insert rule inet hostfw input iifname "{TUN}" ip saddr {NAT_V4} ip daddr {CLAT_V4} '
            'meta l4proto tcp accept') in p.stderr, p.stderr
    assert "panicked" not in p.stderr
    assert nft_ruleset() == before
    assert not link_exists(PHONE, TUN)
    print(f"\ncheck mode: refused in {took:.2f}s: {p.stderr.strip().splitlines()[-1]}")


def test_nftables_opening_reloaded_away_is_not_deleted_at_exit(hostfw):
    """A firewall reloaded while clat runs drops our rule and may give its
    handle to one of the user's: at exit clat must not delete that rule."""
    nft_ufw_like()
    clat = hostfw(control=CONTROL)
    m = re.search(r'comment "clat run [^"]*" # handle (\d+)',
                  ns(PHONE, "nft", "-a", "list", "ruleset").stdout)
    assert m, nft_ruleset()
    ours = int(m.group(1))
    # Reload: the same ruleset again, plus rules up to our handle number.
    ns(PHONE, "nft", "flush", "ruleset")
    nft_ufw_like()
    listing = ""
    for i in range(ours + 2):
        ns(PHONE, "nft", "add", "rule", "inet", "hostfw", "input", "tcp", "dport", str(10000 + i),
           "accept")
        listing = ns(PHONE, "nft", "-a", "list", "ruleset").stdout
        if f"# handle {ours}\n" in listing:
            break
    assert f"# handle {ours}\n" in listing, listing
    before = nft_ruleset()
    clat.stop()
    assert clat.proc.returncode == 0, clat.log()
    assert nft_ruleset() == before, "clat deleted a rule that was not its own"
    assert "no longer ours; left alone" in clat.log(), clat.log()


@pytest.mark.parametrize("backend", ["nft", "iptables-legacy"])
def test_an_opening_left_by_a_killed_instance_is_removed_by_the_next(hostfw, backend):
    """SIGKILL runs no guard: the rule stays, tagged with a dead pid; the
    next `clat run` for the same TUN removes it."""
    if backend == "nft":
        nft_ufw_like()
        listing = nft_ruleset
    else:
        iptables_drop(backend)
        def listing():
            return iptables_s(backend)
    before = listing()
    first = hostfw(control=CONTROL)
    first.proc.kill()
    first.proc.wait(5)
    assert f"clat run {TUN} pid {first.pid}" in listing()
    ns(PHONE, "ip", "link", "del", TUN, check=False)
    ns(PHONE, "ip", "route", "del", "default", "dev", TUN, check=False)
    second = hostfw(control=CONTROL)
    now = listing()
    assert f"clat run {TUN} pid {first.pid}" not in now, now
    assert f"clat run {TUN} pid {second.pid}" in now, now
    assert "removed the stale opening of pid" in second.log(), second.log()
    assert curl().stdout == "200"
    second.stop()
    assert listing() == before


@pytest.mark.parametrize("tool", ["iptables-nft", "iptables-legacy"])
def test_iptables_drop_policy_is_opened_and_closed(hostfw, tool):
    iptables_drop(tool)
    before = iptables_s(tool)
    clat = hostfw(control=CONTROL)
    during = iptables_s(tool)
    assert re.search(rf'-A INPUT -s {NAT_V4}/32 -d {CLAT_V4}/32 -i {TUN} -p tcp -m comment '
                     rf'--comment "clat run {TUN} pid \d+" -j ACCEPT',
                     during.splitlines()[1]), during
    assert curl().stdout == "200"
    clat.stop()
    assert iptables_s(tool) == before


@pytest.mark.parametrize("tool", ["iptables-nft", "iptables-legacy"])
def test_iptables_check_mode_names_the_back_end(hostfw, tool):
    iptables_drop(tool)
    t = time.monotonic()
    p = ns(PHONE, str(clat_binary()), "run", "--tun", TUN, "--pref64", "2001:db8:64::/96",
           "--dns", "2001:db8:1::53", "--control", CONTROL, "--firewall", "check",
           check=False, timeout=15)
    took = time.monotonic() - t
    assert p.returncode == 6 and took < 10, (took, p.stderr)  # EXIT_FIREWALL_BLOCKED
    assert f"{tool} INPUT (policy DROP)" in p.stderr, p.stderr
    assert f"{tool} -I INPUT -i {TUN} -s {NAT_V4} -d {CLAT_V4} -p tcp -j ACCEPT" in p.stderr, \
        p.stderr


# In phone: one app socket asks SERVER and SERVER2 (its own flows: their
# answers are replies), then pokes SERVER so that a third endpoint it never
# sent to (SERVER2, another port) sends to its mapping; prints what arrived.
SOLICITED_THEN_UNSOLICITED = """
import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
def ask(host, msg=b"who"):
    for _ in range(3):
        s.sendto(msg, (host, port))
        try:
            return s.recvfrom(100)[1]
        except socket.timeout:
            pass
    return None
print(repr((ask("%s"), ask("%s"), ask("%s", b"poke"))))
""" % (SERVER, SERVER2, SERVER)


@pytest.mark.parametrize("firewall", ["nft", "iptables-nft"])
def test_the_opening_does_not_let_unsolicited_traffic_in(hostfw, firewall):
    """The engine filters UDP endpoint-independently (RFC 4787), so a
    datagram from an endpoint the app never talked to comes out of the TUN;
    it is a new inbound flow for the host, which its drop policy must still
    drop while clat's opening is in place (the opening accepts only TCP from
    the NAT address to the CLAT's listener).  Replies to the app's own
    datagrams, TCP, echo and the DNS relay pass.

    The drop policy is IPv4's only (an `ip` table, or iptables): an `inet`
    one would already drop the datagram on the engine's upstream IPv6 socket
    (a new inbound IPv6 flow), before the TUN, whatever the opening."""
    if firewall == "nft":
        ns(PHONE, "nft", "-f", "-", input=UFW_LIKE.replace("table inet", "table ip")
           .replace("    meta l4proto ipv6-icmp accept\n", ""))
    else:
        iptables_drop(firewall)
    port = 40017
    srv = ns_popen(INET, "python3", "-c", WHOAMI, str(port), stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "ready"
        clat = hostfw(control=CONTROL)
        assert curl().stdout == "200"
        # Echo and the DNS relay: replies to the apps' own flows.
        ping = ns(PHONE, "ping", "-4", "-c", "2", "-i", "0.2", "-W", "2", SERVER, check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        dig = ns(PHONE, "dig", "+time=3", "+tries=2", "+short", f"@{DNS_V4}", "A",
                 "v4only.lab.example")
        assert dig.stdout.split() == [SERVER], dig.stdout
        out = ns_python(PHONE, SOLICITED_THEN_UNSOLICITED, str(port), timeout=30).stdout.strip()
        first, second, unsolicited = eval(out)  # noqa: S307 - our own script's tuple
        assert first == (SERVER, port) and second == (SERVER2, port), out
        assert unsolicited is None, f"unsolicited datagram let in by the opening: {out}"
        clat.stop()
    finally:
        srv.kill()
        srv.wait()


def test_no_firewall_changes_nothing(hostfw):
    clat = hostfw(control=CONTROL)
    assert curl().stdout == "200"
    assert nft_ruleset().strip() == ""
    assert "opened" not in clat.log()
    clat.stop()


BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""


@pytest.fixture
def firewalld(hostfw, monkeypatch):
    """firewalld (default zone public: new connections on unknown interfaces
    rejected) running in phone on a private system bus."""
    d = LAB_RUN / f"firewalld-{os.getpid()}"
    d.mkdir(parents=True, exist_ok=True)
    sock = d / "bus.sock"
    (d / "bus.conf").write_text(BUS_CONF % sock)
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={sock}"}
    bus = ns_popen(PHONE, "dbus-daemon", "--config-file", str(d / "bus.conf"), "--nofork",
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(sock.exists, timeout=10, what="the private D-Bus socket")
    log = open(d / "firewalld.log", "wb")
    fwd = ns_popen(PHONE, "firewalld", "--nofork", "--nopid", env=env, stdout=log,
                   stderr=subprocess.STDOUT)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", env["DBUS_SYSTEM_BUS_ADDRESS"])
    try:
        wait_until(lambda: ns(PHONE, "firewall-cmd", "--state", check=False, env=env)
                   .stdout.strip() == "running", timeout=60, interval=0.5,
                   what="firewalld running in phone")
        yield env
    finally:
        for p in (fwd, bus):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        log.close()


def fw_cmd(env, *args):
    return ns(PHONE, "firewall-cmd", *args, check=False, env=env).stdout.strip()


def test_firewalld_check_mode_names_it(firewalld):
    t = time.monotonic()
    p = ns(PHONE, str(clat_binary()), "run", "--tun", TUN, "--pref64", "2001:db8:64::/96",
           "--dns", "2001:db8:1::53", "--control", CONTROL, "--firewall", "check",
           check=False, timeout=15, env=firewalld)
    took = time.monotonic() - t
    assert p.returncode == 6 and took < 10, (took, p.stderr)  # EXIT_FIREWALL_BLOCKED
    assert "firewalld" in p.stderr, p.stderr
    assert f"firewall-cmd --add-rich-rule='{RICH_RULE}'" in p.stderr, p.stderr
    print(f"\nfirewalld check mode: refused in {took:.2f}s")


def test_firewalld_allows_the_listener_path_until_exit(firewalld):
    """A rich rule in the default zone (the TUN is in none) for TCP from the
    NAT address to the CLAT address; the TUN joins no zone."""
    t = time.monotonic()
    clat = ClatProcess(control=CONTROL)
    clat.start()
    started = time.monotonic() - t
    try:
        zone = fw_cmd(firewalld, "--get-default-zone")
        assert fw_cmd(firewalld, f"--zone={zone}", "--list-rich-rules") == RICH_RULE
        assert fw_cmd(firewalld, f"--get-zone-of-interface={TUN}") != "trusted"
        assert curl().stdout == "200"
    finally:
        t = time.monotonic()
        clat.stop(timeout=10)
        stopped = time.monotonic() - t
    assert clat.proc.returncode == 0, clat.log()
    assert fw_cmd(firewalld, f"--zone={zone}", "--list-rich-rules") == ""
    print(f"\nfirewalld: started in {started:.2f}s, stopped in {stopped:.2f}s")


def test_firewalld_rule_left_by_a_killed_instance_is_removed_by_the_next(firewalld):
    """Rich rules carry no tag: the instance records the rules it adds under
    /run/clat, and the next one removes those of a dead pid. Without the
    record the next instance took the rule for the user's own (already
    there), never removed it, and it stayed until firewalld reloaded."""
    first = ClatProcess(control=CONTROL)
    first.start()
    zone = fw_cmd(firewalld, "--get-default-zone")
    assert fw_cmd(firewalld, f"--zone={zone}", "--list-rich-rules") == RICH_RULE
    first.proc.kill()
    first.proc.wait(5)
    assert fw_cmd(firewalld, f"--zone={zone}", "--list-rich-rules") == RICH_RULE
    ns(PHONE, "ip", "link", "del", TUN, check=False)
    ns(PHONE, "ip", "route", "del", "default", "dev", TUN, check=False)
    second = ClatProcess(control=CONTROL)
    second.start()
    try:
        assert (f"removed the stale opening of pid {first.proc.pid} from firewalld zone {zone}"
                in second.log()), second.log()
        assert fw_cmd(firewalld, f"--zone={zone}", "--list-rich-rules") == RICH_RULE
        assert curl().stdout == "200"
    finally:
        second.stop(timeout=10)
    assert second.proc.returncode == 0, second.log()
    assert fw_cmd(firewalld, f"--zone={zone}", "--list-rich-rules") == ""
