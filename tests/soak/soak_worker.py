"""One soak load generator; runs INSIDE the phone namespace (IPv4-only
clients through the CLAT) until its deadline, then prints a JSON summary.

Kinds (every byte is checked, every failure is counted and described):
  download  HTTP GET /1M from the lab server, SHA-256 against SHA256SUMS
  upload    random bytes to the sink service (:7003), which answers
            "<bytes> <sha256>" after our FIN
  churn     many short TCP echo connections (:7), each payload compared
  udp       UDP echo (:7, both servers), random sizes up to 8 KB, compared
  icmp      ICMP echo through a ping socket, payload compared
  dns       A queries for lab.example names through the CLAT's DNS relay
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import struct
import sys
import time
from pathlib import Path

# The Internet checksum of the e2e packet builders, not a second copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from hostile_inject import csum  # noqa: E402

SERVER, SERVER2, RELAY = "203.0.113.10", "203.0.113.11", "192.0.0.6"


class Tally:
    def __init__(self):
        self.ok = 0
        self.fail = 0
        self.bytes = 0
        self.errors: dict[str, int] = {}

    def error(self, what: str):
        self.fail += 1
        self.errors[what] = self.errors.get(what, 0) + 1


def http_get(path: str) -> bytes:
    s = socket.create_connection((SERVER, 80), timeout=20)
    s.sendall(f"GET {path} HTTP/1.0\r\nHost: {SERVER}\r\n\r\n".encode())
    buf = bytearray()
    while True:
        d = s.recv(1 << 16)
        if not d:
            break
        buf += d
    s.close()
    head, _, body = bytes(buf).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0]:
        raise ValueError("status " + head.split(b"\r\n")[0].decode(errors="replace"))
    return body


def download(t: Tally, want: str):
    body = http_get("/1M")
    if hashlib.sha256(body).hexdigest() != want:
        return t.error(f"sha mismatch ({len(body)} bytes)")
    t.ok += 1
    t.bytes += len(body)


def upload(t: Tally, _):
    n = random.randint(1, 4 << 20)
    data = os.urandom(n)
    s = socket.create_connection((SERVER, 7003), timeout=20)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    ans = s.makefile("rb").read().decode().split()
    s.close()
    if ans != [str(n), hashlib.sha256(data).hexdigest()]:
        return t.error("sink answer mismatch")
    t.ok += 1
    t.bytes += n


def churn(t: Tally, _):
    for _ in range(20):
        m = os.urandom(random.randint(1, 2048))
        s = socket.create_connection((SERVER, 7), timeout=10)
        s.sendall(m)
        s.shutdown(socket.SHUT_WR)
        with s.makefile("rb") as f:
            got = f.read()      # the echo, to the server's FIN
        s.close()
        if got != m:
            t.error("echo mismatch")
        else:
            t.ok += 1
            t.bytes += len(m)


def udp(t: Tally, _):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    sent = set()
    try:
        for _ in range(20):
            dst = random.choice((SERVER, SERVER2))
            m = os.urandom(random.choice((1, 64, 512, 1400, 4000, 8000)))
            sent.add(m)
            s.sendto(m, (dst, 7))
            try:
                while True:
                    d, a = s.recvfrom(65536)
                    if d == m:
                        break
                    if d not in sent:
                        # Not a late echo of an earlier datagram: corrupted, never allowed.
                        t.error("udp corrupt")
            except socket.timeout:
                t.error("udp timeout")
                continue
            if a[0] != dst:
                t.error("udp answer from wrong address")
            else:
                t.ok += 1
                t.bytes += len(m)
            time.sleep(0.01)
    finally:
        s.close()    # a new source port next round: mappings churn too


def icmp(t: Tally, _):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    s.settimeout(2)
    sent = set()
    try:
        for seq in range(10):
            payload = os.urandom(56)
            sent.add(payload)
            m = struct.pack("!BBHHH", 8, 0, 0, 0, seq) + payload
            m = m[:2] + struct.pack("!H", csum(m)) + m[4:]
            s.sendto(m, (SERVER, 0))
            try:
                while True:
                    d, _ = s.recvfrom(2048)
                    if d[0] == 0 and d[8:] == payload:
                        break
                    if d[0] == 0 and d[8:] not in sent:
                        # An echo reply carrying what no request of ours carried: corrupted.
                        t.error("ping corrupt")
            except socket.timeout:
                t.error("ping timeout")
                continue
            t.ok += 1
            t.bytes += len(payload)
            time.sleep(0.05)
    finally:
        s.close()


def dns_query(name: str, qid: int) -> bytes:
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", 1, 1)


def dns(t: Tally, _):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    try:
        for _ in range(10):
            name, want = random.choice((("v4only.lab.example", SERVER),
                                        ("v4only2.lab.example", SERVER2)))
            qid = random.randint(0, 0xFFFF)
            s.sendto(dns_query(name, qid), (RELAY, 53))
            try:
                d, _ = s.recvfrom(4096)
            except socket.timeout:
                t.error("dns timeout")
                continue
            rcode = d[3] & 15 if len(d) >= 4 else -1
            if len(d) < 12 or struct.unpack("!H", d[:2])[0] != qid or rcode != 0:
                t.error(f"dns bad answer rcode={rcode}")
            elif socket.inet_aton(want) not in d[12:]:
                t.error("dns answer lacks the address")
            else:
                t.ok += 1
                t.bytes += len(d)
            time.sleep(0.05)
    finally:
        s.close()


KINDS = {"download": download, "upload": upload, "churn": churn, "udp": udp, "icmp": icmp,
         "dns": dns}


def main():
    kind, seconds = sys.argv[1], float(sys.argv[2])
    arg = sys.argv[3] if len(sys.argv) > 3 else None
    fn = KINDS[kind]
    t = Tally()
    end = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < end:
        rounds += 1
        try:
            fn(t, arg)
        except Exception as e:    # noqa: BLE001 - every failure is counted and named
            t.error(f"{type(e).__name__}: {e}"[:120])
            time.sleep(0.2)
    print(json.dumps({"kind": kind, "rounds": rounds, "ok": t.ok, "fail": t.fail,
                      "bytes": t.bytes, "errors": t.errors}))


if __name__ == "__main__":
    main()
