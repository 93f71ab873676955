"""`clat run` as a process: refusals (bad configuration, packets a CLAT must
not carry), `clat status`, and shutdown on SIGTERM with live flows.

Needs `clat run` / `clat status` (rust-core/cli cmd_run.rs, cmd_status.rs) and
the engine's drop counters (drop_multicast, drop_broadcast, drop_bad_source).
"""

import os
import subprocess
import time

import pytest

from labutil import (DNS64, DNS_V4, PHONE, RESOLVER4, SERVER, TUN, clat_binary, default_route4,
                     link_exists, ns, ns_popen, ns_python, parse_status, status_int, synth)


def send_udp(dst, port=5353, broadcast=False):
    code = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if {broadcast!r}:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
for _ in range(3):
    s.sendto(b"must not leave", ("{dst}", {port}))
print("sent")
"""
    assert ns_python(PHONE, code, timeout=10).stdout.strip() == "sent"


def counter_rises(clat, key, action, at_least=1):
    before = status_int(clat.status(), key)
    action()
    return clat.wait_counter(key, before + at_least)


def test_multicast_is_dropped_and_counted(clat):
    counter_rises(clat, "drop_multicast", lambda: send_udp("224.0.0.251"))


def test_broadcast_is_dropped_and_counted(clat):
    # 192.0.0.7 is the broadcast address of the CLAT's 192.0.0.0/29;
    # 255.255.255.255 is the limited broadcast.  Either must be refused.
    counter_rises(clat, "drop_broadcast", lambda: send_udp("192.0.0.7", broadcast=True))


SPOOF = """
import socket, struct
def csum(b):
    s = sum(struct.unpack("!%%dH" %% (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
src, dst = socket.inet_aton("10.9.9.9"), socket.inet_aton("%s")
payload = b"spoofed"
udp = struct.pack("!HHHH", 4444, 7, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src, dst)
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for _ in range(3):
    s.sendto(ip + udp, ("%s", 0))
print("sent")
""" % (SERVER, SERVER)


def test_foreign_source_is_dropped_and_counted(clat):
    """Packets whose source is not the CLAT address must not be translated."""
    def spoof():
        assert ns_python(PHONE, SPOOF, timeout=10).stdout.strip() == "sent"
    counter_rises(clat, "drop_bad_source", spoof)


def test_status_reflects_traffic(clat):
    st = clat.status()
    keys = ("tun_rx_packets", "tun_tx_bytes", "up_rx_bytes", "up_tx_bytes", "flows_tcp_total")
    before = {k: status_int(st, k) for k in keys}
    ns(PHONE, "curl", "-sS", "--fail", "-o", "/dev/null", "-m", "30", f"http://{SERVER}/1M")
    clat.wait_counter("flows_tcp_total", before["flows_tcp_total"] + 1)
    clat.wait_counter("up_rx_bytes", before["up_rx_bytes"] + (1 << 20))
    clat.wait_counter("tun_tx_bytes", before["tun_tx_bytes"] + (1 << 20))
    clat.wait_counter("tun_rx_packets", before["tun_rx_packets"] + 1)
    clat.wait_counter("up_tx_bytes", before["up_tx_bytes"] + 1)


@pytest.mark.parametrize("bad", [
    ["--pref64", "2001:db8:64::/80"],     # not an RFC 6052 length
    ["--pref64", "not-a-prefix"],
    ["--mtu", "100"],
])
def test_run_refuses_bad_configuration(own_clat, bad):
    b = clat_binary()
    args = ["run", "--tun", "clatbad"]
    if "--pref64" not in bad:
        args += ["--pref64", "2001:db8:64::/96"]
    args += ["--dns", "2001:db8:1::53", *bad]
    p = ns(PHONE, str(b), *args, check=False, timeout=10)
    assert p.returncode != 0, p.stdout + p.stderr
    assert p.stderr.strip(), "a refusal must say why"
    assert "panicked" not in p.stderr
    assert not link_exists(PHONE, "clatbad")


def test_sigterm_with_live_flows(own_clat):
    clat = own_clat()
    # A slow download and a UDP flow that are still open when SIGTERM comes.
    dl = ns_popen(PHONE, "curl", "-sS", "--limit-rate", "500k", "-o", "/dev/null",
                  f"http://{SERVER}/100M", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ns_python(PHONE, f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(b"x", ("{SERVER}", 7)); s.recvfrom(10); print("ok")
""", timeout=10)
        clat.wait_counter("flows_tcp", 1, timeout=5)
        t = time.monotonic()
        clat.proc.terminate()
        rc = clat.proc.wait(timeout=10)
        took = time.monotonic() - t
        assert took < 2.0, f"took {took:.2f}s to exit"
        assert rc == 0, f"exit code {rc}\n{clat.log()}"
        assert not link_exists(PHONE, TUN), "TUN still there after exit"
        assert "default" not in default_route4(PHONE), "IPv4 default route left behind"
    finally:
        dl.kill()
        dl.wait()


def test_status_without_instance_fails_clearly(lab):
    p = ns(PHONE, str(clat_binary()), "status", "--tun", "nosuchclat", check=False, timeout=10)
    assert p.returncode != 0
    assert "nosuchclat" in p.stderr or "cannot" in p.stderr.lower(), p.stderr
    assert "panicked" not in p.stderr


def wait_status(clat, key, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        got = clat.status().get(key)
        if got == want:
            return
        assert time.monotonic() < deadline, f"{key} is {got!r}, not {want!r}"
        time.sleep(0.1)


def test_run_follows_resolv_conf(own_clat, tmp_path):
    """Without --dns, `clat run` takes its resolvers from --resolv-conf and
    follows the file when it changes (written in place or replaced by
    rename): the relay forwards to the new resolvers and prefix discovery
    asks them at once."""
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {DNS64}\n")
    clat = own_clat("--resolv-conf", str(conf), "--min-revalidate", "300s",
                    pref64=None, dns=None)
    st = clat.status()
    assert st["upstream_dns"] == f"[{DNS64}]:53", st
    assert (st["prefix"], st["prefix_state"]) == ("2001:db8:64::/96", "ok"), st
    # Another network: its resolver has no DNS64 (the lab's IPv4 resolver,
    # reached through the NAT64). Written in place.
    plain = synth(RESOLVER4)
    with open(conf, "w") as f:
        f.write(f"# another network\nnameserver {plain}\n")
    wait_status(clat, "upstream_dns", f"[{plain}]:53")
    out = ns(PHONE, "dig", "+time=3", "+tries=2", "+short", f"@{DNS_V4}", "A",
             "v4only.lab.example").stdout.split()
    assert out == [SERVER], "the relay forwards to the new resolver"
    # Asked at once (not after --min-revalidate): no DNS64 there, so the
    # prefix is marked lost and kept.
    wait_status(clat, "prefix_state", "lost")
    # Back, by rename as NetworkManager writes it.
    tmp = tmp_path / "resolv.conf.new"
    tmp.write_text(f"nameserver {DNS64}\n")
    os.replace(tmp, conf)
    wait_status(clat, "upstream_dns", f"[{DNS64}]:53")
    wait_status(clat, "prefix_state", "ok")
    assert "upstream resolvers changed" in clat.log()


def check_status_schema(doc):
    """The shape docs/status-json.md gives for schema_version 1, field by field."""
    assert doc["schema_version"] == 1
    assert doc["state"] in ("running", "stopped")
    assert doc["reason"] is None or isinstance(doc["reason"], str)
    assert doc["activity"] in ("active", "standby") and isinstance(doc["activity_reason"], str)
    assert isinstance(doc["tun"], str) and isinstance(doc["uptime_s"], int)
    p = doc["prefix"]
    if p is None:  # --auto before the first prefix only
        assert doc["activity"] == "standby", doc
        p = {"prefix": None, "source": "config", "state": "ok", "lifetime_s": None,
             "expires_in_s": None}
    assert set(p) >= {"prefix", "source", "state", "lifetime_s", "expires_in_s"}, p
    assert p["source"] in ("config", "pref64", "rfc7050") and p["state"] in ("ok", "lost")
    assert set(doc["addresses"]) >= {"clat", "nat", "dns"}
    assert isinstance(doc["mtu"], int) and isinstance(doc["resolvers"], list)
    assert set(doc["flows"]) >= {"tcp", "udp", "icmp", "max"}
    assert doc["counters"] and all(isinstance(v, int) and v >= 0
                                   for v in doc["counters"].values())


def test_status_json_and_summary(own_clat, tmp_path):
    """`clat status --json` of a running `clat run` (with a discovered prefix,
    so that it has a lifetime) parses, has the documented shape and follows
    traffic; the human form leads with the summary, then the same values as
    `key value` lines."""
    sock = str(tmp_path / "clat.sock")
    clat = own_clat("--control", sock, pref64=None)
    t0 = time.monotonic()
    doc = clat.status_json("--control", sock)
    check_status_schema(doc)
    assert doc["state"] == "running" and doc["reason"] is None
    assert doc["activity"] == "active" and "without --auto" in doc["activity_reason"], doc
    assert doc["tun"] == TUN
    p = doc["prefix"]
    assert (p["prefix"], p["source"], p["state"]) == ("2001:db8:64::/96", "rfc7050", "ok"), p
    assert 0 < p["expires_in_s"] <= p["lifetime_s"], p
    assert doc["addresses"] == {"clat": "192.0.0.4", "nat": "192.0.0.5", "dns": DNS_V4}
    assert doc["resolvers"] == [f"[{DNS64}]:53"]
    assert doc["mtu"] == 65000 and doc["flows"]["max"] == 16384
    # Traffic moves the counters; a multicast datagram adds a drop.
    ns(PHONE, "curl", "-sS", "--fail", "-o", "/dev/null", "-m", "30", f"http://{SERVER}/1M")
    send_udp("224.0.0.251")
    time.sleep(0.5)
    after = clat.status_json("--control", sock)
    check_status_schema(after)
    c0, c1 = doc["counters"], after["counters"]
    assert c1["up_rx_bytes"] >= c0["up_rx_bytes"] + (1 << 20)
    assert c1["flows_tcp_total"] >= c0["flows_tcp_total"] + 1
    assert c1["drop_multicast"] >= c0["drop_multicast"] + 1
    assert after["uptime_s"] >= doc["uptime_s"] and after["uptime_s"] <= time.monotonic() - t0 + 20
    human = clat.status_text("--control", sock)
    summary, _, lines = human.partition("\n\n")
    head = summary.splitlines()
    assert head[0] == f"clat: {TUN}", human
    assert head[1] == "  state: running, active", human
    assert head[2].startswith("  prefix: 2001:db8:64::/96 (rfc7050, lifetime "), human
    assert any(l.startswith("  flows: ") and l.endswith("(max 16384)") for l in head), human
    assert any(l.startswith("  transfer: ") and "MiB received" in l for l in head), human
    drops = [l for l in head if l.startswith("  drops: ")]
    assert drops and "multicast" in drops[0], human
    kv = parse_status(lines)
    assert kv["prefix"] == "2001:db8:64::/96" and kv["upstream_dns"] == f"[{DNS64}]:53"
    assert int(kv["drop_multicast"]) >= c1["drop_multicast"]
    assert set(c1) <= set(kv), "every counter of the JSON is in the human list"
