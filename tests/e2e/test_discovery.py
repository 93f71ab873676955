"""NAT64 prefix discovery in the lab: `clat discover` in phone against real
BIND9 DNS64 instances in plat (RFC 7050/8880, every RFC 6052 length, two
prefixes, no DNS64, a dead and an absent resolver) and against real Router
Advertisements carrying PREF64 (RFC 8781) received through the kernel.
"""

from __future__ import annotations

import time

import pytest

import discovery_lab as dl
import labutil

# name -> (address on plat's pl0, dns64 prefixes)
SERVERS = {
    "p32": ("2001:db8:1::5332", ["2001:db8::/32"]),
    "p40": ("2001:db8:1::5340", ["2001:db8:a00::/40"]),
    "p48": ("2001:db8:1::5348", ["2001:db8:b48::/48"]),
    "p56": ("2001:db8:1::5356", ["2001:db8:c56:5600::/56"]),
    "p64": ("2001:db8:1::5364", ["2001:db8:d64:6464::/64"]),
    "p96": ("2001:db8:1::5396", ["2001:db8:e96:9696::/96"]),
    "two": ("2001:db8:1::5302", ["2001:db8:64::/96", "2001:db8:a00::/40"]),
    "plain": ("2001:db8:1::5300", []),
}
DEAD = "2001:db8:1::5399"     # on pl0, nothing listening: port unreachable
ABSENT = "2001:db8:1::53ff"   # on the link's prefix, nobody has it: silence


@pytest.fixture(scope="module")
def servers(lab):
    started = {}
    try:
        for name, (addr, prefixes) in SERVERS.items():
            started[name] = dl.Named(name, addr, prefixes).start()
        dl.add_addr(DEAD)
        yield started
    finally:
        for n in started.values():
            n.stop()
        dl.del_addr(DEAD)


def lines(p):
    return [l for l in p.stdout.splitlines() if l.strip()]


@pytest.mark.parametrize("name", ["p32", "p40", "p48", "p56", "p64", "p96"])
def test_every_rfc6052_length(servers, name):
    addr, (prefix,) = SERVERS[name]
    p = dl.discover("--dns", f"[{addr}]:53", "--timeout", "3s")
    assert p.returncode == 0, p.stderr
    assert lines(p) == [f"{prefix} rfc7050 ttl={dl.ZONE_TTL}s"], (p.stdout, p.stderr)


def test_lab_dns64(lab):
    """The lab's own DNS64 (zone TTL 300)."""
    p = dl.discover("--dns", labutil.DNS64)
    assert p.returncode == 0, p.stderr
    assert lines(p) == [f"{labutil.PREF64} rfc7050 ttl=300s"]


def test_two_prefixes_are_both_reported(servers):
    addr, prefixes = SERVERS["two"]
    # The server really synthesizes under both prefixes (2 WKAs x 2 prefixes);
    # BIND rotates the records, so the order of the lines is not fixed.
    dig = labutil.ns(labutil.PHONE, "dig", "+short", f"@{addr}", "ipv4only.arpa", "AAAA").stdout.split()
    assert len(dig) == 4, dig
    p = dl.discover("--dns", addr)
    assert p.returncode == 0, p.stderr
    got = lines(p)
    assert sorted(got) == sorted(f"{x} rfc7050 ttl={dl.ZONE_TTL}s" for x in prefixes), got


def test_plain_resolver_says_no_dns64(servers):
    addr, _ = SERVERS["plain"]
    p = dl.discover("--dns", addr)
    assert p.returncode == 1
    assert p.stdout == ""
    assert (f"resolver [{addr}]:53 answered ipv4only.arpa without a DNS64 synthesis (no AAAA record)"
            in p.stderr), p.stderr


def test_dead_resolver_fails_fast(servers):
    t = time.monotonic()
    p = dl.discover("--dns", DEAD, "--timeout", "5s")
    took = time.monotonic() - t
    assert p.returncode == 1
    assert f"resolver [{DEAD}]:53" in p.stderr and "connection refused" in p.stderr, p.stderr
    assert took < 4, f"an ICMP port unreachable should end it at once, took {took:.1f}s"


def test_absent_resolver_times_out(servers):
    t = time.monotonic()
    p = dl.discover("--dns", ABSENT, "--timeout", "2s")
    took = time.monotonic() - t
    assert p.returncode == 1
    assert f"no answer from [{ABSENT}]:53 within 2s" in p.stderr, p.stderr
    assert 1.8 <= took < 5, took


def test_good_resolver_after_bad_ones(servers):
    addr, (prefix,) = SERVERS["p56"]
    plain, _ = SERVERS["plain"]
    t = time.monotonic()
    p = dl.discover("--dns", ABSENT, "--dns", DEAD, "--dns", plain, "--dns", addr, "--timeout", "3s")
    assert p.returncode == 0, p.stderr
    assert lines(p) == [f"{prefix} rfc7050 ttl={dl.ZONE_TTL}s"]
    assert time.monotonic() - t < 2.5, "resolvers are asked in parallel"


@pytest.mark.parametrize("prefix,lifetime", [("2001:db8:64::/96", 600), ("2001:db8:a00::/40", 1800)])
def test_pref64_from_a_real_router_advertisement(servers, prefix, lifetime):
    plain, _ = SERVERS["plain"]
    with dl.AcceptRa():
        sender = dl.ra_sender(prefix, lifetime, count=12, interval=1.0)
        try:
            p = dl.discover("--pref64-listen", "ph0", "--timeout", "10s", "--dns", plain)
        finally:
            sender.terminate()
            out = sender.communicate(timeout=5)[0]
    assert p.returncode == 0, (p.stderr, out)
    assert lines(p) == [f"{prefix} pref64 lifetime={lifetime}s"], (p.stdout, p.stderr)


def test_pref64_and_rfc7050_together_pref64_first(servers):
    with dl.AcceptRa():
        sender = dl.ra_sender("2001:db8:b48::/48", 80, count=12)
        try:
            p = dl.discover("--pref64-listen", "ph0", "--timeout", "10s", "--dns", labutil.DNS64)
        finally:
            sender.terminate()
            sender.communicate(timeout=5)
    assert p.returncode == 0, p.stderr
    assert lines(p) == ["2001:db8:b48::/48 pref64 lifetime=80s", f"{labutil.PREF64} rfc7050 ttl=300s"]


def test_invalid_plc_is_not_taken(servers):
    with dl.AcceptRa():
        sender = dl.ra_sender("2001:db8:64::/96", 600, count=5, plc=6)
        try:
            p = dl.discover("--pref64-listen", "ph0", "--timeout", "3s", "--dns", DEAD)
        finally:
            sender.terminate()
            sender.communicate(timeout=5)
    assert p.returncode == 1
    assert p.stdout == ""
    assert "no Router Advertisement with PREF64 on ph0 within 3s" in p.stderr, p.stderr


def test_pref64_with_bits_64_to_71_set_is_skipped_and_said(servers):
    """RFC 6052 section 2.2: bits 64-71 of a /96 must be zero. A real RA whose
    PREF64 says 2001:db8:0:0:ff00::/96 reaches the listener through the
    kernel and is skipped by the translator's prefix check, with the reason
    in the log, rather than used (replies through it could not be mapped back)."""
    with dl.AcceptRa():
        sender = dl.ra_sender("2001:db8:0:0:ff00::/96", 600, count=5)
        try:
            p = dl.discover("--pref64-listen", "ph0", "--timeout", "3s", "--dns", DEAD)
        finally:
            sender.terminate()
            sender.communicate(timeout=5)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stdout == ""
    assert "2001:db8:0:0:ff00::/96: bits 64-71 must be zero (RFC 6052 section 2.2)" in p.stderr, p.stderr
    assert "no Router Advertisement with PREF64 on ph0 within 3s" in p.stderr, p.stderr


def test_no_ra_without_accept_ra(servers):
    """The kernel drops RAs on an interface with accept_ra=0 (the lab's
    default), so nothing reaches us: the test that proves the RA tests above
    depend on the real kernel path."""
    sender = dl.ra_sender("2001:db8:64::/96", 600, count=4)
    try:
        p = dl.discover("--pref64-listen", "ph0", "--timeout", "3s", "--dns", DEAD)
    finally:
        sender.terminate()
        sender.communicate(timeout=5)
    assert p.returncode == 1
    assert "no Router Advertisement with PREF64 on ph0" in p.stderr


def test_watch_follows_a_dns64_reconfiguration(lab):
    """RFC 7050 section 5: re-validate when the TTL runs out.  A named with a
    2 s TTL changes its dns64 prefix under a running monitor; the monitor
    reports the new prefix after the TTL, keeps it while the resolver is
    unreachable, and drops it when the resolver says there is no DNS64."""
    n = dl.Named("watch", "2001:db8:1::5310", ["2001:db8:64::/96"], ttl=2).start()
    w = dl.Watch("--dns", n.addr, "--min-revalidate", "1s", "--timeout", "1s")
    try:
        assert w.next_line(10) == "2001:db8:64::/96 rfc7050 ttl=2s"
        t = time.monotonic()
        n.reconfigure(["2001:db8:a00::/40"])
        assert w.next_line(15) == "2001:db8:a00::/40 rfc7050 ttl=2s"
        assert time.monotonic() - t < 10
        n.reconfigure([])
        assert w.next_line(15) == "none"
    finally:
        w.stop()
        n.stop()


def test_watch_pref64_expires_with_its_lifetime(servers):
    """RFC 8781: the prefix is used for the RA's lifetime, then dropped
    (here 16 s, one RA only; the resolver has no DNS64 to fall back to)."""
    plain, _ = SERVERS["plain"]
    with dl.AcceptRa():
        w = dl.Watch("--pref64-listen", "ph0", "--dns", plain, "--timeout", "1s")
        try:
            time.sleep(0.5)  # subscribed before the RA goes out
            sender = dl.ra_sender("2001:db8:c56:5600::/56", 16, count=1)
            sender.communicate(timeout=10)
            t = time.monotonic()
            assert w.next_line(5) == "2001:db8:c56:5600::/56 pref64 lifetime=16s"
            assert w.next_line(25) == "none"
            took = time.monotonic() - t
            assert 14 <= took <= 19, f"expired after {took:.1f}s, lifetime 16s"
        finally:
            w.stop()


def test_watch_pref64_beats_rfc7050_and_falls_back(servers):
    """Order of sources: PREF64 over RFC 7050; when the RA prefix expires the
    monitor falls back to the DNS64's prefix."""
    addr, (dns_prefix,) = SERVERS["p48"]
    with dl.AcceptRa():
        w = dl.Watch("--pref64-listen", "ph0", "--dns", addr, "--timeout", "1s")
        try:
            assert w.next_line(5) == f"{dns_prefix} rfc7050 ttl={dl.ZONE_TTL}s"
            sender = dl.ra_sender("2001:db8:64::/96", 8, count=1)
            sender.communicate(timeout=10)
            assert w.next_line(5) == "2001:db8:64::/96 pref64 lifetime=8s"
            assert w.next_line(15) == f"{dns_prefix} rfc7050 ttl={dl.ZONE_TTL}s"
        finally:
            w.stop()


def test_clat_run_follows_a_prefix_change(lab, own_clat):
    """`clat run` without --pref64 finds the prefix by RFC 7050 and follows
    the DNS64 when its prefix changes: re-validated at TTL expiry (2 s here,
    with the floor lowered to 2 s), and new flows use the new prefix."""
    n = dl.Named("run", "2001:db8:1::5320", [labutil.PREF64], ttl=2).start()
    try:
        clat = own_clat("--min-revalidate", "2s", pref64=None, dns=n.addr)
        st = clat.status()
        assert st.get("prefix") == labutil.PREF64, st
        assert st.get("prefix_source") == "rfc7050", st
        # Traffic flows through the NAT64 with the discovered prefix.
        labutil.ns(labutil.PHONE, "ping", "-c", "1", "-W", "3", labutil.SERVER)
        n.reconfigure(["2001:db8:a00::/40"])
        labutil.wait_until(lambda: clat.status().get("prefix") == "2001:db8:a00::/40", 30,
                           interval=0.5, what="clat run picks up the new prefix")
        # New flows now go to 2001:db8:a00::/40, which no NAT64 here serves:
        # the ping that worked a moment ago must fail.
        p = labutil.ns(labutil.PHONE, "ping", "-c", "1", "-W", "2", labutil.SERVER, check=False)
        assert p.returncode != 0, p.stdout
        n.reconfigure([labutil.PREF64])
        labutil.wait_until(lambda: clat.status().get("prefix") == labutil.PREF64, 30,
                           interval=0.5, what="clat run picks up the old prefix again")
        labutil.ns(labutil.PHONE, "ping", "-c", "1", "-W", "3", labutil.SERVER)
    finally:
        n.stop()


def test_default_resolvers_come_from_resolv_conf(clat):
    """Without --dns, `clat discover` asks the nameservers of resolv.conf: in
    phone that is the CLAT's own DNS relay 192.0.0.6 (through the running
    CLAT to the DNS64), as an IPv4-only app on the phone would."""
    p = dl.discover("--timeout", "3s")
    assert p.returncode == 0, p.stderr
    assert lines(p) == [f"{labutil.PREF64} rfc7050 ttl=300s"], (p.stdout, p.stderr)
