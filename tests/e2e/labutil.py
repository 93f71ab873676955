"""Helpers for the end-to-end tests that run in the lab namespaces.

The lab (tests/lab/lab.sh) builds three network namespaces: ``phone``
(IPv6-only, runs the CLAT and IPv4-only clients), ``plat`` (Tayga NAT64 and
BIND9 DNS64) and ``inet`` (IPv4-only servers).  Tests drive programs inside
those namespaces with ``ip netns exec``; this module keeps that plumbing in
one place so that every test reads as "run X in phone, expect Y".
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
LAB_SH = REPO / "tests" / "lab" / "lab.sh"
LAB_RUN = Path(os.environ.get("CLAT_LAB_RUN", "/run/clat-lab"))

# Fixed address plan (tests/lab/README.md, "Address plan").
PHONE, PLAT, INET = "phone", "plat", "inet"
PREF64 = "2001:db8:64::/96"
DNS64 = "2001:db8:1::53"
CLAT_V4 = "192.0.0.4"
NAT_V4 = "192.0.0.5"
DNS_V4 = "192.0.0.6"
SERVER = "203.0.113.10"
SERVER2 = "203.0.113.11"
RESOLVER4 = "203.0.113.53"
UNREACHABLE = "192.0.2.65"
TUN = "clat0"

# TCP services on SERVER (tests/lab/tcpservices.py)
PORT_HTTP = 80
PORT_ECHO = 7
PORT_RESET = 7001
PORT_HALFCLOSE = 7002
PORT_SINK = 7003
PORT_CLOSED = 9
PORT_IPERF = 5201


def synth(v4: str, prefix: str = PREF64) -> str:
    """The IPv6 address that reaches IPv4 ``v4`` through the NAT64 (RFC 6052, /96)."""
    net = ipaddress.IPv6Network(prefix)
    assert net.prefixlen == 96, "only /96 is needed by the lab helpers"
    return str(ipaddress.IPv6Address(int(net.network_address) | int(ipaddress.IPv4Address(v4))))


def _ns_argv(name: str, cmd: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", name, *[str(c) for c in cmd]]


def ns(name: str, *cmd, check: bool = True, timeout: float = 60, input=None,
       text: bool = True, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` inside namespace ``name`` and return the CompletedProcess.

    Output is captured.  With ``check`` a non-zero exit raises
    CalledProcessError whose message includes stdout/stderr, because a bare
    "exit status 1" from deep inside a namespace is useless when a test fails.
    """
    argv = _ns_argv(name, cmd)
    if isinstance(input, (bytes, bytearray)):
        text = False
    p = subprocess.run(argv, capture_output=True, timeout=timeout, input=input,
                       text=text, env=env)
    if check and p.returncode != 0:
        raise subprocess.CalledProcessError(
            p.returncode, argv,
            output=p.stdout, stderr=p.stderr,
        ) from RuntimeError(
            f"{shlex.join(argv)} exited {p.returncode}\nstdout: {p.stdout!r}\nstderr: {p.stderr!r}")
    return p


def ns_popen(name: str, *cmd, **kw) -> subprocess.Popen:
    """Start ``cmd`` inside namespace ``name`` without waiting (Popen kwargs pass through)."""
    return subprocess.Popen(_ns_argv(name, cmd), **kw)


def ns_python(name: str, code: str, *args, timeout: float = 60, check: bool = True,
              input=None) -> subprocess.CompletedProcess:
    """Run a Python snippet inside a namespace (clients that need socket-level checks)."""
    return ns(name, sys.executable, "-c", code, *args, timeout=timeout, check=check, input=input)


_CONNECT = """
import errno, socket, sys, time
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket()
s.settimeout(timeout)
t = time.monotonic()
try:
    s.connect((host, port))
    print("connected %.3f" % (time.monotonic() - t))
except socket.timeout:
    print("timeout %.3f" % (time.monotonic() - t))
except OSError as e:
    print("%s %.3f" % (errno.errorcode.get(e.errno, e.errno), time.monotonic() - t))
"""


def connect_from_phone(host: str, port: int, timeout: float = 5.0) -> tuple[str, float]:
    """An app's connect() from phone: ("connected" | "timeout" | errno name, seconds)."""
    out = ns_python(PHONE, _CONNECT, host, str(port), str(timeout), timeout=timeout + 20).stdout
    what, secs = out.split()
    return what, float(secs)


def clat_binary() -> Path:
    """Path of the built ``clat``: $CLAT_BIN, else target/release/clat, else target/debug/clat.

    $CARGO_TARGET_DIR is honoured too, since helpers build into their own target dirs.
    """
    env = os.environ.get("CLAT_BIN")
    if env:
        p = Path(env)
        if not p.is_file():
            raise FileNotFoundError(f"CLAT_BIN={env} does not exist")
        return p
    roots = []
    if os.environ.get("CARGO_TARGET_DIR"):
        roots.append(Path(os.environ["CARGO_TARGET_DIR"]))
    roots.append(REPO / "target")
    for root in roots:
        for profile in ("release", "debug"):
            p = root / profile / "clat"
            if p.is_file():
                return p
    raise FileNotFoundError(
        "no clat binary: build it with `cargo build --release -p clat-cli` or set CLAT_BIN")


def link_addrs(name: str, dev: str) -> str:
    return ns(name, "ip", "-4", "addr", "show", "dev", dev, check=False).stdout


def default_route4(name: str) -> str:
    return ns(name, "ip", "-4", "route", "show", "default", check=False).stdout


def link_exists(name: str, dev: str) -> bool:
    return ns(name, "ip", "link", "show", "dev", dev, check=False).returncode == 0


def parse_status(text: str) -> dict[str, str]:
    """Parse ``clat status`` output: one ``key value`` pair per line.

    Also tolerates ``key: value`` and ``key=value``; values that are integers
    are what the tests compare, see :func:`status_int`.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for sep in (None, ":", "="):
            parts = line.split(sep, 1)
            if len(parts) == 2:
                k, v = parts[0].strip().rstrip(":="), parts[1].strip().lstrip(":=").strip()
                if k:
                    out[k] = v
                    break
    return out


def flatten_status(doc: dict) -> dict[str, str]:
    """The JSON document of ``clat status --json`` under the names of the ``key value``
    lines of plain ``clat status`` (state, prefix, prefix_source, upstream_dns, mtu,
    flows_tcp, drop_*, ...), values as text."""
    p, a = doc["prefix"], doc["addresses"]
    out = {
        "state": doc["state"],
        "activity": doc["activity"],
        "activity_reason": doc["activity_reason"],
        # Since issue 15: "nat64" or "native" (the path of new IPv4 flows).
        "ipv4_path": doc.get("ipv4_path", "-"),
        # Since issue 15 item 1: whether IPv6 from the TUN is carried.
        "carry_ipv6": "yes" if doc.get("carry_ipv6") else "no",
        "tun": doc["tun"],
        "uptime": f"{doc['uptime_s']}s",
        # null only with --auto before the first prefix: as the `key value` lines say it
        "prefix": p["prefix"] if p else "-",
        "prefix_source": p["source"] if p else "-",
        "prefix_state": p["state"] if p else "none",
        "clat_v4": a["clat"],
        "nat_v4": a["nat"],
        "dns_v4": a["dns"],
        "mtu": str(doc["mtu"]),
        "upstream_dns": ",".join(doc["resolvers"]) or "-",
        "max_flows": str(doc["flows"]["max"]),
    }
    if doc.get("reason") is not None:
        out["reason"] = doc["reason"]
    if p and p.get("lifetime_s") is not None:
        out["prefix_lifetime"] = f"{p['lifetime_s']}s"
        out["prefix_expires_in"] = f"{p['expires_in_s']}s"
    out.update({k: str(v) for k, v in doc["counters"].items()})
    return out


def status_int(st: dict[str, str], key: str) -> int:
    """Integer value of ``key``; a missing key fails loudly (names are part of the contract)."""
    if key not in st:
        raise KeyError(f"`clat status` has no {key!r}; keys: {sorted(st)}")
    return int(st[key].split()[0])


def drop_total(st: dict[str, str]) -> int:
    return sum(int(v.split()[0]) for k, v in st.items()
               if k.startswith("drop_") and v.split() and v.split()[0].isdigit())


class ClatProcess:
    """A ``clat run`` inside ``phone``.

    Starts ``clat run --tun clat0 --pref64 2001:db8:64::/96 --dns 2001:db8:1::53
    [extra]``, waits until the TUN carries 192.0.0.4 and the IPv4 default
    route, and stops it with SIGTERM (then SIGKILL as a last resort, so that a
    broken engine cannot wedge the whole session).
    """

    def __init__(self, *extra: str, tun: str = TUN, netns: str = PHONE,
                 pref64: Optional[str] = PREF64, dns: Optional[str] = DNS64,
                 log_path: Optional[Path] = None, control: Optional[str] = None):
        self.tun = tun
        self.netns = netns
        # The control socket (`--control`, given to `clat status` too);
        # None: the default, @clat/<tun> in the instance's namespace.
        self.control = control
        self.binary = clat_binary()
        args = ["run", "--tun", tun]
        if pref64:
            args += ["--pref64", pref64]
        if dns:
            args += ["--dns", dns]
        if control:
            args += ["--control", control]
        args += list(extra)
        self.args = args
        LAB_RUN.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path or (LAB_RUN / f"clat-{tun}-{os.getpid()}-{int(time.time()*1000)}.log")
        self.proc: Optional[subprocess.Popen] = None
        # True once stop() was called: an exit before that is the CLAT's own doing (a crash).
        self.stopped = False

    def start(self, timeout: float = 15.0) -> "ClatProcess":
        self._log = open(self.log_path, "wb")
        self.proc = ns_popen(self.netns, str(self.binary), *self.args,
                             stdout=self._log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL,
                             env={**os.environ, "RUST_BACKTRACE": "1"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"clat {' '.join(self.args)} exited {self.proc.returncode} during start:\n{self.log()}")
            if self.ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"clat did not bring up {self.tun} within {timeout}s:\n{self.log()}")

    def ready(self) -> bool:
        return (f"inet {CLAT_V4}/" in link_addrs(self.netns, self.tun)
                and "default" in default_route4(self.netns))

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return "<no log>"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status_text(self, *extra: str, timeout: float = 10) -> str:
        """Output of ``clat status`` (in the same namespace, for the same TUN)."""
        extra_env = shlex.split(os.environ.get("CLAT_STATUS_ARGS", ""))
        ctl = ["--control", self.control] if self.control else []
        p = ns(self.netns, str(self.binary), "status", "--tun", self.tun, *ctl, *extra_env, *extra,
               timeout=timeout, check=False)
        if p.returncode != 0:
            raise RuntimeError(f"clat status exited {p.returncode}: {p.stdout}\n{p.stderr}")
        return p.stdout

    def status_json(self, *extra: str) -> dict:
        """``clat status --json``, parsed (schema: docs/status-json.md)."""
        doc = json.loads(self.status_text("--json", *extra))
        if doc.get("schema_version") != 1:
            raise RuntimeError(f"clat status --json: schema_version {doc.get('schema_version')!r}")
        return doc

    def status(self, *extra: str) -> dict[str, str]:
        """The status as flat ``key value`` names (see :func:`flatten_status`), read from
        ``clat status --json``: every test that reads a counter goes through the JSON."""
        return flatten_status(self.status_json(*extra))

    def wait_counter(self, key: str, at_least: int, timeout: float = 3.0) -> int:
        """Wait until status counter ``key`` is >= ``at_least``; returns its value.

        Counters may be published with a small delay (the engine thread
        updates them, `clat status` reads a snapshot), so tests wait a little
        instead of reading once.
        """
        val = wait_until(lambda: (v := status_int(self.status(), key)) >= at_least and v,
                         timeout=timeout, interval=0.1,
                         what=f"status {key} >= {at_least}")
        return int(val)

    def wait_counter_at_most(self, key: str, at_most: int, timeout: float) -> int:
        wait_until(lambda: status_int(self.status(), key) <= at_most, timeout=timeout,
                   interval=0.2, what=f"status {key} <= {at_most}")
        return status_int(self.status(), key)

    def stop(self, timeout: float = 5.0) -> Optional[int]:
        """SIGTERM, wait; SIGKILL if it ignores that.  Returns the exit code."""
        self.stopped = True
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        try:
            self._log.close()
        except Exception:
            pass
        return self.proc.returncode

    def __enter__(self) -> "ClatProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_until(pred, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll ``pred`` until it returns a truthy value; raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout}s (last: {last!r})")


def lab(cmd: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``tests/lab/lab.sh <cmd>`` (up, down, status)."""
    p = subprocess.run(["bash", str(LAB_SH), cmd], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"lab.sh {cmd} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def vm_rss_kb(pid: int) -> int:
    """Resident memory of process ``pid``, in KiB (VmRSS in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise KeyError("VmRSS")


def served_sha256(name: str) -> str:
    """SHA-256 of the file ``name`` the lab's web server serves."""
    for line in (LAB_RUN / "www" / "SHA256SUMS").read_text().splitlines():
        digest, fname = line.split()
        if fname == name:
            return digest
    raise KeyError(name)
