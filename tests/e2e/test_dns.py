"""DNS for IPv4-only apps behind the CLAT.

Needs the engine's DNS relay on 192.0.0.6 (forwarding to the DNS64
2001:db8:1::53, retrying over TCP when the answer is truncated) and plain
UDP/TCP to an IPv4 resolver literal (203.0.113.53, through the NAT64).
"""

from labutil import DNS_V4, PHONE, RESOLVER4, SERVER, ns, status_int, synth

BIG = sorted(f"203.0.113.{i}" for i in range(100, 140))


def dig(*args, timeout=20):
    return ns(PHONE, "dig", "+time=3", "+tries=2", *args, timeout=timeout)


def test_relay_resolves_a_only_name(clat):
    assert dig("+short", f"@{DNS_V4}", "A", "v4only.lab.example").stdout.split() == [SERVER]


def test_relay_passes_dns64_aaaa(clat):
    out = dig("+short", f"@{DNS_V4}", "AAAA", "v4only.lab.example").stdout.split()
    assert out == [synth(SERVER)]


def test_relay_nxdomain(clat):
    out = dig(f"@{DNS_V4}", "A", "nope.lab.example").stdout
    assert "status: NXDOMAIN" in out, out


def test_ipv4_resolver_literal_udp_and_tcp(clat):
    assert dig("+short", f"@{RESOLVER4}", "v4only.lab.example").stdout.split() == [SERVER]
    assert dig("+tcp", "+short", f"@{RESOLVER4}", "v4only.lab.example").stdout.split() == [SERVER]


def test_ipv4_resolver_literal_big_over_tcp(clat):
    out = dig("+tcp", "+short", f"@{RESOLVER4}", "A", "big.lab.example").stdout.split()
    assert sorted(out) == BIG


def test_truncated_answer_retried_over_tcp_by_relay(clat):
    before = status_int(clat.status(), "dns_tcp_retries")
    out = dig(f"@{DNS_V4}", "+ignore", "A", "big.lab.example").stdout
    flags = out.split("flags:")[1].split(";")[0]
    answers = sorted(l.split()[-1] for l in out.splitlines()
                     if l and not l.startswith(";") and "\tA\t" in l.replace(" ", "\t"))
    assert answers == BIG, out
    assert " tc" not in flags, out
    clat.wait_counter("dns_tcp_retries", before + 1)


def test_system_resolver_uses_relay(clat):
    """/etc/netns/phone/resolv.conf points at 192.0.0.6 (set up by lab.sh)."""
    out = ns(PHONE, "getent", "ahostsv4", "v4only.lab.example").stdout
    assert SERVER in out.split(), out
    body = ns(PHONE, "curl", "-sS", "-m", "10", "http://v4only.lab.example/index.html").stdout
    assert body.strip() == "hello from 203.0.113.10"
