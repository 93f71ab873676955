"""The lab itself, checked without the CLAT: IPv6 clients in phone reach the
IPv4-only servers through the real NAT64/DNS64 in plat.

If these fail, every CLAT test after them is meaningless, so they come first
(and need no engine).
"""

import hashlib
import time

import pytest

from labutil import (DNS64, INET, PHONE, PLAT, PORT_ECHO, PORT_HALFCLOSE, RESOLVER4,
                     SERVER, SERVER2, UNREACHABLE, LAB_RUN, ns, ns_python, synth)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def test_phone_has_no_ipv4(no_clat):
    out = ns(PHONE, "ip", "-4", "addr", "show").stdout
    addrs = [l.split()[1] for l in out.splitlines() if l.strip().startswith("inet ")]
    assert addrs == ["127.0.0.1/8"], out
    assert ns(PHONE, "ip", "-4", "route", "show").stdout.strip() == ""


def test_phone_cannot_reach_ipv4_directly(no_clat):
    p = ns(PHONE, "ping", "-4", "-c1", "-W1", SERVER, check=False)
    assert p.returncode != 0


def test_http_over_nat64(lab):
    url = f"http://[{synth(SERVER)}]/1M"
    out = ns(PHONE, "sh", "-c", f"curl -sS -m 20 {url} | sha256sum").stdout.split()[0]
    assert out == sha256_file(LAB_RUN / "www" / "1M")


def test_upload_over_nat64(lab):
    data = bytes(range(256)) * 4096  # 1 MiB
    url = f"http://[{synth(SERVER)}]/upload"
    p = ns(PHONE, "curl", "-sS", "-m", "20", "--data-binary", "@-", url, input=data)
    n, digest = p.stdout.decode().split()
    assert int(n) == len(data)
    assert digest == hashlib.sha256(data).hexdigest()


def test_tcp_services_over_nat64(lab):
    code = f"""
import socket, hashlib
s = socket.create_connection(("{synth(SERVER)}", {PORT_ECHO}), timeout=5)
s.sendall(b"ping-echo"); s.shutdown(socket.SHUT_WR)
buf = b""
while True:
    d = s.recv(100)
    if not d: break
    buf += d
assert buf == b"ping-echo", buf
s = socket.create_connection(("{synth(SERVER)}", {PORT_HALFCLOSE}), timeout=5)
s.sendall(b"x" * 100000); s.shutdown(socket.SHUT_WR)
got = s.makefile("rb").read().decode().strip()
assert got == hashlib.sha256(b"x" * 100000).hexdigest(), got
print("ok")
"""
    assert ns_python(PHONE, code).stdout.strip() == "ok"


@pytest.mark.parametrize("server", [SERVER, SERVER2])
def test_udp_echo_over_nat64(lab, server):
    code = f"""
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(b"hello-udp", ("{synth(server)}", 7))
d, a = s.recvfrom(100)
assert d == b"hello-udp" and a[0] == "{synth(server)}", (d, a)
print("ok")
"""
    assert ns_python(PHONE, code).stdout.strip() == "ok"


def test_dns64_synthesises_for_a_only_name(lab):
    out = ns(PHONE, "dig", "+short", f"@{DNS64}", "AAAA", "v4only.lab.example").stdout.split()
    assert out == [synth(SERVER)]


def test_dns64_keeps_real_aaaa(lab):
    out = ns(PHONE, "dig", "+short", f"@{DNS64}", "AAAA", "dual.lab.example").stdout.split()
    assert out == ["2001:db8:2::10"]


def test_dns64_ipv4only_arpa(lab):
    out = ns(PHONE, "dig", "+short", f"@{DNS64}", "AAAA", "ipv4only.arpa").stdout.split()
    assert sorted(out) == sorted([synth("192.0.0.170"), synth("192.0.0.171")])


def test_big_answer_truncated_over_udp_complete_over_tcp(lab):
    udp = ns(PHONE, "dig", "+ignore", "+noedns", f"@{DNS64}", "A", "big.lab.example").stdout
    assert " tc" in udp.split("flags:")[1].split(";")[0], udp
    tcp = ns(PHONE, "dig", "+tcp", "+short", f"@{DNS64}", "A", "big.lab.example").stdout.split()
    assert sorted(tcp) == sorted(f"203.0.113.{i}" for i in range(100, 140))


def test_ipv4_resolver_on_inet(lab):
    out = ns(INET, "dig", "+short", f"@{RESOLVER4}", "A", "v4only.lab.example").stdout.split()
    assert out == [SERVER]
    # and reachable from phone through the NAT64
    out = ns(PHONE, "dig", "+short", f"@{synth(RESOLVER4)}", "A", "v4only.lab.example").stdout.split()
    assert out == [SERVER]


def test_unreachable_gives_icmp_error(lab):
    # Routers rate-limit ICMP errors (RFC 1812 section 4.3.2.8; Linux
    # icmp_ratelimit, 1 s per destination after a burst), and the tests just
    # before provoke errors about the same address: up to three probes, 1.1 s
    # apart. Each must fail; one of them must be answered "unreachable".
    outs = []
    for _ in range(3):
        p = ns(PHONE, "ping", "-c1", "-W3", synth(UNREACHABLE), check=False)
        assert p.returncode != 0, p.stdout
        outs.append(p.stdout)
        if "unreachable" in p.stdout.lower():
            return
        time.sleep(1.1)
    raise AssertionError("no ICMPv6 unreachable in three probes:\n" + "\n".join(outs))


def test_closed_port_refused_over_nat64(lab):
    code = f"""
import socket
try:
    socket.create_connection(("{synth(SERVER)}", 9), timeout=3)
except ConnectionRefusedError:
    print("refused")
"""
    assert ns_python(PHONE, code).stdout.strip() == "refused"


def test_plat_does_not_route_outside_the_lab(lab):
    # Only lab prefixes are routed in plat: no default route to anywhere.
    assert "default" not in ns(PLAT, "ip", "-4", "route").stdout
    assert "default" not in ns(PLAT, "ip", "-6", "route").stdout
