"""Lab pieces for the discovery tests: extra BIND9 instances in ``plat``
(each with its own dns64 configuration, on its own address on pl0) and a
PREF64 Router Advertisement sender.

Kept apart from labutil/lab.sh on purpose: these servers exist only while
test_discovery.py runs, and the main lab DNS64 on 2001:db8:1::53 is left
alone (it listens on that one address, so extra instances on other
addresses of pl0 do not collide with it).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import labutil

RUN = labutil.LAB_RUN / "discovery"
SEND_RA = labutil.REPO / "tests" / "lab" / "discovery" / "send_ra.py"
ZONE_TTL = 120



def zone(ttl: int = ZONE_TTL) -> str:
    return f"""$TTL {ttl}
@  IN SOA ns.lab.example. hostmaster.lab.example. 1 3600 600 86400 {ttl}
@  IN NS  ns.lab.example.
@  IN A   192.0.0.170
@  IN A   192.0.0.171
"""


def _conf(d: Path, addr: str, prefixes: Sequence[str]) -> str:
    dns64 = "\n".join(f"  dns64 {p} {{ clients {{ any; }}; }};" for p in prefixes)
    return f"""options {{
  directory "{d}";
  pid-file "{d}/named.pid";
  session-keyfile "{d}/session.key";
  managed-keys-directory "{d}";
  listen-on {{ none; }};
  listen-on-v6 {{ {addr}; }};
  recursion yes;
  allow-recursion {{ any; }};
  allow-query {{ any; }};
  dnssec-validation no;
  notify no;
{dns64}
}};
controls {{ }};
logging {{ channel default_stderr {{ stderr; severity info; }}; category default {{ default_stderr; }}; }};
zone "ipv4only.arpa" {{ type primary; file "{d}/ipv4only.arpa.zone"; }};
// Recursion never leaves the lab: the root is the lab's IPv4 resolver on inet.
zone "." {{ type hint; file "{d}/root.hint"; }};
"""

ROOT_HINT = """.           3600000 NS a.root.
a.root.     3600000 A  203.0.113.53
"""


class Named:
    """One named in plat on ``addr`` (added to pl0) with the given dns64 prefixes
    (none: a plain resolver that answers ipv4only.arpa AAAA with no data)."""

    def __init__(self, name: str, addr: str, prefixes: Sequence[str], ttl: int = ZONE_TTL):
        self.name, self.addr, self.prefixes, self.ttl = name, addr, list(prefixes), ttl
        self.dir = RUN / name
        self.proc: Optional[subprocess.Popen] = None

    def write(self, prefixes: Optional[Sequence[str]] = None) -> None:
        if prefixes is not None:
            self.prefixes = list(prefixes)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "ipv4only.arpa.zone").write_text(zone(self.ttl))
        (self.dir / "root.hint").write_text(ROOT_HINT)
        (self.dir / "named.conf").write_text(_conf(self.dir, self.addr, self.prefixes))
        chk = subprocess.run(["named-checkconf", str(self.dir / "named.conf")], capture_output=True, text=True)
        if chk.returncode != 0:
            raise RuntimeError(f"named-checkconf {self.name}: {chk.stdout}{chk.stderr}")

    def start(self) -> "Named":
        add_addr(self.addr)
        self.write()
        self.log = open(self.dir / "named.log", "wb")
        self.proc = labutil.ns_popen(labutil.PLAT, "named", "-f", "-n", "1", "-c", str(self.dir / "named.conf"),
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"named {self.name} exited {self.proc.returncode}:\n{self.log_text()}")
            p = labutil.ns(labutil.PLAT, "dig", "+time=1", "+tries=1", f"@{self.addr}", "ipv4only.arpa", "AAAA",
                           check=False)
            if "status: NOERROR" in p.stdout:
                return
            time.sleep(0.2)
        raise TimeoutError(f"named {self.name} on {self.addr} not answering:\n{self.log_text()}")

    def reconfigure(self, prefixes: Sequence[str]) -> None:
        """New dns64 prefixes: rewrite the config and reload (SIGHUP)."""
        self.write(prefixes)
        assert self.proc is not None
        self.proc.send_signal(1)
        time.sleep(0.5)
        self.wait_ready()

    def log_text(self) -> str:
        try:
            return (self.dir / "named.log").read_text(errors="replace")[-4000:]
        except OSError:
            return "<no log>"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        del_addr(self.addr)


def add_addr(addr: str) -> None:
    labutil.ns(labutil.PLAT, "ip", "-6", "addr", "replace", f"{addr}/64", "dev", "pl0", "nodad")


def del_addr(addr: str) -> None:
    labutil.ns(labutil.PLAT, "ip", "-6", "addr", "del", f"{addr}/64", "dev", "pl0", check=False)


def discover(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """``clat discover ARGS`` in phone (never raises on a non-zero exit)."""
    return labutil.ns(labutil.PHONE, str(labutil.clat_binary()), "discover", *args, check=False, timeout=timeout)


class AcceptRa:
    """Let ph0 in phone accept RAs (the lab sets accept_ra=0) so that the kernel
    forwards the PREF64 option over netlink; nothing else of the RA is used
    (no default route, no prefixes, no MTU).  Restores the old values."""

    KEYS = ("accept_ra", "accept_ra_defrtr", "accept_ra_pinfo", "accept_ra_rtr_pref", "accept_ra_mtu")

    def __enter__(self):
        self.old = {}
        for k in self.KEYS:
            key = f"net.ipv6.conf.ph0.{k}"
            p = labutil.ns(labutil.PHONE, "sysctl", "-n", key, check=False)
            if p.returncode == 0:
                self.old[key] = p.stdout.strip()
        labutil.ns(labutil.PHONE, "sysctl", "-qw", "net.ipv6.conf.ph0.accept_ra=2")
        for k in self.KEYS[1:]:
            labutil.ns(labutil.PHONE, "sysctl", "-qw", f"net.ipv6.conf.ph0.{k}=0", check=False)
        return self

    def __exit__(self, *exc):
        for key, val in self.old.items():
            labutil.ns(labutil.PHONE, "sysctl", "-qw", f"{key}={val}", check=False)


def ra_sender(prefix: str, lifetime: int, count: int = 15, interval: float = 1.0,
              plc: Optional[int] = None) -> subprocess.Popen:
    """Start sending PREF64 RAs from plat's pl0 (background; stop with .terminate())."""
    extra = ["--plc", str(plc)] if plc is not None else []
    return labutil.ns_popen(labutil.PLAT, sys.executable, str(SEND_RA), "pl0", prefix, str(lifetime),
                            "--count", str(count), "--interval", str(interval), *extra,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class Watch:
    """``clat discover --watch ARGS`` in phone; its lines arrive on a queue."""

    def __init__(self, *args: str):
        import queue
        import threading
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.proc = labutil.ns_popen(labutil.PHONE, str(labutil.clat_binary()), "discover", "--watch", *args,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     stdin=subprocess.DEVNULL)
        self.err: list[str] = []

        def pump(stream, sink):
            for line in stream:
                sink(line.rstrip("\n"))

        threading.Thread(target=pump, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=pump, args=(self.proc.stderr, self.err.append), daemon=True).start()

    def next_line(self, timeout: float) -> str:
        import queue
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no line from clat discover --watch within {timeout}s; stderr: {self.err[-10:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
