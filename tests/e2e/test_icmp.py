"""ICMP through the CLAT: echo (identifier and sequence preserved) and
ICMP errors for an unreachable destination.

Needs the engine and `clat run`.  The CLAT carries echo through ICMPv6
datagram sockets, so the identifier it uses upstream differs; the app must
still see its own identifier and sequence numbers in the replies.
"""

from labutil import DNS_V4, PHONE, SERVER, UNREACHABLE, ns, ns_python, status_int

RAW_PING = """
import os, socket, struct, time

def csum(b):
    if len(b) %% 2: b += b"\\0"
    s = sum(struct.unpack("!%%dH" %% (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff

ident = 0x4c41
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(0.5)
results = []
for seq in (1, 2, 7, 300):
    payload = os.urandom(56)
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    pkt = struct.pack("!BBHHH", 8, 0, csum(hdr + payload), ident, seq) + payload
    s.sendto(pkt, ("%s", 0))
    deadline = time.monotonic() + 3
    got = None
    while time.monotonic() < deadline and got is None:
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            continue
        ihl = (data[0] & 15) * 4
        icmp = data[ihl:]
        t, c, ck, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
        if t == 0 and addr[0] == "%s":
            if csum(icmp) != 0:
                got = "bad checksum"
            elif (rid, rseq) == (ident, seq) and icmp[8:] == payload:
                got = "ok"
            elif (rid, rseq) != (ident, seq):
                continue   # a reply to someone else
            else:
                got = "payload differs"
    results.append(got or "no reply")
print(" ".join(results))
""" % (SERVER, SERVER)

DGRAM_PING = """
import socket, struct, time
# An unprivileged "ping socket", as an app without root uses; the kernel sets
# the identifier from the bound port and delivers only replies that carry it.
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
s.bind(("0.0.0.0", 0x1234))
s.settimeout(3)
out = []
for seq in (1, 2, 3):
    s.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, seq) + b"clat-ping", ("%s", 0))
    try:
        d, a = s.recvfrom(2048)
        t, c, ck, rid, rseq = struct.unpack("!BBHHH", d[:8])
        out.append("ok" if (t, rid, rseq, d[8:], a[0]) == (0, 0x1234, seq, b"clat-ping", "%s")
                   else f"bad {t} {rid:#x} {rseq} {d[8:]!r} {a}")
    except socket.timeout:
        out.append("no reply")
print(" ".join(out))
""" % (SERVER, SERVER)


def test_raw_echo_keeps_identifier_and_sequence(clat):
    out = ns_python(PHONE, RAW_PING, timeout=30).stdout.strip()
    assert out == "ok ok ok ok"


def test_ping_socket_echo(clat):
    out = ns_python(PHONE, DGRAM_PING, timeout=30).stdout.strip()
    assert out == "ok ok ok"


def test_ping_tool(clat):
    p = ns(PHONE, "ping", "-4", "-c", "3", "-i", "0.2", "-W", "2", SERVER, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "3 received" in p.stdout, p.stdout


def test_ping_the_dns_relay_address(clat):
    """Apps and network diagnostics ping the DNS server they were given
    (192.0.0.6): the engine answers it itself, payload intact (ping checks
    it), at 56 and 2,000 bytes; nothing is counted as a drop."""
    before = status_int(clat.status(), "drop_internal_dst")
    for size in ("56", "2000"):
        p = ns(PHONE, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-s", size, DNS_V4, check=False)
        assert p.returncode == 0 and " 0% packet loss" in p.stdout, p.stdout + p.stderr
    assert status_int(clat.status(), "drop_internal_dst") == before


def test_unreachable_destination_yields_icmp_error(clat):
    """plat answers ICMP unreachable for 192.0.2.65; the app must see it
    (translated by the CLAT), not silence."""
    p = ns(PHONE, "ping", "-4", "-c", "1", "-W", "3", UNREACHABLE, check=False, timeout=20)
    assert p.returncode != 0
    assert "unreachable" in p.stdout.lower(), p.stdout + p.stderr


UDP_ERR = """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_RECVERR", 11), 1)
s.connect(("%s", 4000))
s.settimeout(0.5)
res = "silence"
for i in range(6):
    try:
        s.send(b"anyone?")
        s.recv(100)
    except socket.timeout:
        continue
    except OSError as e:
        res = "error " + type(e).__name__ + " " + str(e.errno)
        break
print(res)
""" % UNREACHABLE


def test_udp_to_unreachable_gets_error(clat):
    """The ICMPv6 error the CLAT's UDP socket receives comes back to the app's
    socket as an ICMPv4 error (EHOSTUNREACH / ENETUNREACH)."""
    out = ns_python(PHONE, UDP_ERR, timeout=30).stdout.strip()
    assert out.startswith("error"), out
