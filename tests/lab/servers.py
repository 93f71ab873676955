#!/usr/bin/env python3
"""Test servers for the lab's `inet` namespace (IPv4), and for the IPv6
server address the IPv6 pass-through tests give `plat` (an ADDR with a
colon is served over IPv6).

One small program, several services, each chosen by a subcommand so that
lab.sh can run (and pidfile) them separately:

  http ADDR PORT DIR      GET serves files from DIR; POST/PUT answers the
                          sha256 hex of the request body (uploads checked
                          without storing 100 MB).
  udpecho ADDR PORT       echoes every datagram back to its sender, intact
                          (0-byte datagrams included).
  tcpecho ADDR PORT       echoes the stream until EOF, then closes.
  tcpreset ADDR PORT      accepts, then closes with SO_LINGER 0 so the kernel
                          sends RST: the client must see a reset, not an EOF.
  tcphalfclose ADDR PORT  reads until EOF (the client's FIN), then sends the
                          sha256 hex of everything read and closes: proves
                          that a half-closed connection still carries data
                          the other way.
  tcpsink ADDR PORT       like tcphalfclose but writes "<bytes> <sha256>\n".

Why Python: no build step, available on every machine that runs the lab,
and fast enough for the sizes the e2e tests use (threads per connection).
"""

import hashlib
import http.server
import os
import socket
import socketserver
import struct
import sys
import threading


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def family(addr):
    """AF_INET6 for an IPv6 literal, else AF_INET."""
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


class ThreadingTCP(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024


class ThreadingTCP6(ThreadingTCP):
    address_family = socket.AF_INET6


class ThreadingHTTP6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


class HTTPHandler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _hash_body(self):
        h = hashlib.sha256()
        n = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until an empty line
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = size
                while left:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        raise ConnectionError("short chunk")
                    h.update(chunk)
                    n += len(chunk)
                    left -= len(chunk)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    raise ConnectionError("short body")
                h.update(chunk)
                n += len(chunk)
                left -= len(chunk)
        return n, h.hexdigest()

    def do_POST(self):
        n, digest = self._hash_body()
        body = f"{n} {digest}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_POST

    def log_message(self, fmt, *args):
        pass


def serve_http(addr, port, directory):
    handler = lambda *a, **kw: HTTPHandler(*a, directory=directory, **kw)  # noqa: E731
    cls = ThreadingHTTP6 if family(addr) == socket.AF_INET6 else http.server.ThreadingHTTPServer
    srv = cls((addr, int(port)), handler)
    srv.daemon_threads = True
    srv.serve_forever()


def serve_udpecho(addr, port):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family(addr) == socket.AF_INET6:
        s.bind((addr, int(port)))
        while True:
            data, peer = s.recvfrom(65535)
            s.sendto(data, peer)
    # No DF on answers: a full-size (1472-byte) answer becomes a 1520-byte
    # IPv6 packet behind the NAT64, and with DF set the first one would be
    # lost to path-MTU discovery (Tayga answers "fragmentation needed").
    # Without DF the NAT64 fragments it, so every size class echoes at once.
    s.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_MTU_DISCOVER", 10),
                 getattr(socket, "IP_PMTUDISC_DONT", 0))
    s.bind((addr, int(port)))
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        c = self.request
        while True:
            data = c.recv(65536)
            if not data:
                break
            c.sendall(data)
        c.shutdown(socket.SHUT_WR)


class ResetHandler(socketserver.BaseRequestHandler):
    def handle(self):
        c = self.request
        # Wait briefly for the client's first bytes so that the RST answers
        # data in flight (the realistic case), then abort.
        c.settimeout(2)
        try:
            c.recv(1024)
        except OSError:
            pass
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()


class HalfCloseHandler(socketserver.BaseRequestHandler):
    with_count = False

    def handle(self):
        c = self.request
        h = hashlib.sha256()
        n = 0
        while True:
            data = c.recv(1 << 16)
            if not data:
                break
            h.update(data)
            n += len(data)
        out = f"{n} {h.hexdigest()}\n" if self.with_count else h.hexdigest() + "\n"
        c.sendall(out.encode())
        c.shutdown(socket.SHUT_WR)


class SinkHandler(HalfCloseHandler):
    with_count = True


def serve_tcp(addr, port, handler):
    cls = ThreadingTCP6 if family(addr) == socket.AF_INET6 else ThreadingTCP
    srv = cls((addr, int(port)), handler)
    srv.serve_forever()


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    kind, addr, port = argv[0], argv[1], argv[2]
    if kind == "http":
        serve_http(addr, port, argv[3])
    elif kind == "udpecho":
        serve_udpecho(addr, port)
    elif kind == "tcpecho":
        serve_tcp(addr, port, EchoHandler)
    elif kind == "tcpreset":
        serve_tcp(addr, port, ResetHandler)
    elif kind == "tcphalfclose":
        serve_tcp(addr, port, HalfCloseHandler)
    elif kind == "tcpsink":
        serve_tcp(addr, port, SinkHandler)
    else:
        sys.exit(f"unknown service {kind!r}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv[1:])
