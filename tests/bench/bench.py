#!/usr/bin/env python3
"""The CLAT benchmark's measurements (run by tests/bench/run.sh, as root,
with the lab up and tests/bench/setup.sh applied).

Three paths from `phone` to the same server socket in `inet`, over IPv6:
  (a) IPv6 direct to prefix+IPv4 (the ceiling),
  (b) IPv4 through our CLAT (`clat run` in phone),
  (c) IPv4 through Tayga as a CLAT in phone (the clatd way).
(b) and (c) both want phone's IPv4 default route, so they run one after the
other.  Engine-only figures (memory per flow, CPU per GB, idle wake-ups,
TUN MTU) use fresh `clat run` instances so that one test's leftovers (TCP
flows lingering after close, allocator growth) do not skew the next.

A benchmark never fails on a number: it exits 1 only when something could
not be measured (the CLAT did not start, a tool failed), and says which.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time

# The repository's root: paths in a report are written relative to it, so that
# a committed report names no directory of the machine it ran on.
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def shown(path):
    """`path` relative to the repository, or `.../<parent>/<name>` outside it."""
    p = os.path.abspath(path)
    if p == REPO or p.startswith(REPO + os.sep):
        return os.path.relpath(p, REPO)
    parent, name = os.path.split(p)
    return os.path.join("...", os.path.basename(parent), name)


def shown_command(cmd):
    """A command line with each absolute path argument written by `shown`."""
    return " ".join(shown(w) if w.startswith("/") else w for w in cmd.split(" "))

PREFIX = "2001:db8:64::/96"
DNS = "[2001:db8:1::53]:53"
IPERF_PORT = int(os.environ.get("BENCH_IPERF_PORT", "5202"))
TOOL_PORT = int(os.environ.get("BENCH_TOOL_PORT", "5301"))
V4 = os.environ.get("BENCH_V4", "203.0.113.10")
LAB_RUN = os.environ.get("CLAT_LAB_RUN", "/run/clat-lab")
BENCH_RUN = os.path.join(LAB_RUN, "bench")
TOOL = os.path.join(BENCH_RUN, "benchtool")
HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def v6_of(v4):
    a, b, c, d = (int(x) for x in v4.split("."))
    return "2001:db8:64::%x:%x" % ((a << 8) | b, (c << 8) | d)


V6 = v6_of(V4)
PATHS = {"a": "IPv6 direct", "b": "our CLAT", "c": "Tayga CLAT"}

errors = []  # what could not be measured


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def phone(*cmd):
    return ["ip", "netns", "exec", "phone", *cmd]


def run(cmd, timeout=None, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), p.returncode,
                                                (p.stderr or p.stdout).strip()[-400:]))
    return p.stdout


def raise_nofile():
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def nofile_hard():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def measure(name, fn, *args, **kw):
    """Runs one measurement; a failure is recorded, not raised."""
    try:
        return fn(*args, **kw)
    except Exception as e:  # noqa: BLE001 - any failure means "not measured"
        log("could not measure %s: %s" % (name, e))
        errors.append("%s: %s" % (name, e))
        return None


# ------------------------------------------------------------------ tools

def iperf(host, secs=None, nbytes=None, parallel=1, reverse=False, udp_len=None):
    cmd = ["iperf3", "-c", host, "-p", str(IPERF_PORT), "-J"]
    if nbytes:
        cmd += ["-n", str(nbytes)]
    else:
        cmd += ["-t", str(secs)]
    if parallel > 1:
        cmd += ["-P", str(parallel)]
    if reverse:
        cmd += ["-R"]
    if udp_len:
        cmd += ["-u", "-b", "0", "-l", str(udp_len)]
    last = None
    limit = (secs or 60) * 3 + 30
    for attempt in range(3):
        p = subprocess.run(phone(*cmd), capture_output=True, text=True, timeout=limit)
        try:
            d = json.loads(p.stdout)
        except ValueError:
            d = {"error": (p.stderr or p.stdout).strip()[-300:] or "no output"}
        if "error" not in d:
            return d
        last = d["error"]
        # The server may still be finishing the previous test.
        time.sleep(1 + attempt)
    raise RuntimeError("iperf3 %s: %s" % (" ".join(cmd[1:]), last))


def tcp_gbps(host, secs, parallel, reverse):
    d = iperf(host, secs=secs, parallel=parallel, reverse=reverse)
    return d["end"]["sum_received"]["bits_per_second"] / 1e9


def udp_pps(host, secs, size, reverse):
    d = iperf(host, secs=secs, reverse=reverse, udp_len=size)
    r = d["end"]["sum_received"]
    s = d["end"]["sum"]
    pkts = r["bytes"] / size
    return {"pps": pkts / max(r["seconds"], 1e-9), "loss": s.get("lost_percent", 0.0)}


def latency(kind, host, n):
    out = run(phone(TOOL, kind, host, str(TOOL_PORT), str(n)), timeout=n * 0.01 + 60)
    f = out.split()
    d = {f[i]: float(f[i + 1]) for i in range(0, len(f) - 1, 2)}
    if d.get("n", 0) == 0:
        raise RuntimeError("%s %s: no answers (lost %d)" % (kind, host, d.get("lost", 0)))
    return d


def cps(host, threads, secs):
    out = run(phone(TOOL, "cps", host, str(TOOL_PORT + 1), str(threads), str(secs)),
              timeout=secs + 60)
    f = out.split()
    d = {f[i]: float(f[i + 1]) for i in range(0, len(f) - 1, 2)}
    if d["ok"] == 0:
        raise RuntimeError("cps %s: no connection succeeded (%d failed)" % (host, d["fail"]))
    return d


class Hold:
    """N idle flows held open by `benchtool hold` in phone."""

    def __init__(self, proto, host, n, burst=0):
        # TCP idle flows go to the hold service; with a burst, to the echo.
        port = TOOL_PORT + 2 if proto == "tcp" and not burst else TOOL_PORT
        self.p = subprocess.Popen(phone(TOOL, "hold", proto, host, str(port), str(n), str(burst)),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, preexec_fn=raise_nofile)
        line = self.p.stdout.readline().split()
        if len(line) != 2 or line[0] != "ready":
            self.close()
            raise RuntimeError("hold %s %d: client did not get ready" % (proto, n))
        self.n = int(line[1])

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


# ------------------------------------------------------------- the CLATs

class Clat:
    """A `clat run` in phone, with the process-level probes we need."""

    def __init__(self, binary, mtu=None, max_flows=65536, extra=()):  # max_flows None: clat's default
        """mtu None: the TUN MTU `clat run` chooses by default (the product
        as shipped); the MTU suite sets it explicitly. extra: more options
        of `clat run` (the IPv6 pass-through row's `--carry-ipv6`)."""
        # Leftovers of an earlier engine in phone would be this one's strays.
        settle_phone(2)
        self.sock = os.path.join(BENCH_RUN, "clat.sock")
        self.binary = binary
        logf = open(os.path.join(BENCH_RUN, "clat-run.log"), "a")
        cmd = phone(binary, "run", "--pref64", PREFIX, "--dns", DNS, "--control", self.sock)
        if max_flows is not None:
            cmd += ["--max-flows", str(max_flows)]
        if mtu is not None:
            cmd += ["--mtu", str(mtu)]
        cmd += list(extra)
        logf.write("\n# %s %s\n" % (time.strftime("%H:%M:%S"), " ".join(cmd)))
        logf.flush()
        # `ip netns exec` execs the command: this pid is clat's own.
        self.p = subprocess.Popen(cmd, stdout=logf, stderr=logf, preexec_fn=raise_nofile)
        self.pid = self.p.pid
        end = time.time() + 15
        while time.time() < end:
            if self.p.poll() is not None:
                raise RuntimeError("clat run (mtu %s) exited with %d; see %s" %
                                   (mtu or "default", self.p.returncode, logf.name))
            st = self.status(check=False)
            if st.get("state") == "running":
                break
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError("clat run (mtu %s) did not report running" % (mtu or "default"))
        # The first packets prove the path, not just the process.
        end = time.time() + 10
        while True:
            try:
                latency("tcplat", V4, 20)
                break
            except Exception:
                if time.time() > end:
                    self.stop()
                    raise RuntimeError("no TCP through clat run (mtu %s)" % (mtu or "default"))
                time.sleep(0.2)
        self.mtu = self.status(check=False).get("mtu", str(mtu))

    def status(self, check=True):
        p = subprocess.run(phone(self.binary, "status", "--control", self.sock),
                           capture_output=True, text=True)
        if p.returncode != 0:
            if check:
                raise RuntimeError("clat status: " + p.stderr.strip())
            return {}
        d = {}
        # The `key value` lines after the summary (`clat status` for people).
        for line in p.stdout.partition("\n\n")[2].splitlines():
            k, _, v = line.partition(" ")
            d[k] = v
        return d

    def counter(self, name):
        v = self.status().get(name)
        return int(v) if v is not None and v.isdigit() else None

    def rss_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        # Lingering TUN (a crash): the next instance needs the name.
        subprocess.run(phone("ip", "link", "del", "clat0"), capture_output=True)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    # fields 14 and 15 (utime, stime) are rest[11], rest[12]
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def ctx_switches(pid):
    total = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def tayga_clat_up():
    run([os.path.join(HERE, "setup.sh"), "tayga-clat-up"], timeout=60)
    with open(os.path.join(LAB_RUN, "pids", "bench-tayga-clat.pid")) as f:
        return int(f.read().strip())


def tayga_clat_down():
    run([os.path.join(HERE, "setup.sh"), "tayga-clat-down"], timeout=60, check=False)


# ------------------------------------------------------------ the phases

def cps_syscalls(clat, host, threads, secs):
    """System calls of the clat process per new connection (load-independent,
    unlike the rate): `perf stat` counts each call's entry tracepoint while
    the connection test runs, divided by the connections made. A run of its
    own, after the rate's, so that the counting does not slow the rate."""
    sc = subprocess.Popen(["perf", "stat", "-x,", "-e", "syscalls:sys_enter_*", "-p", str(clat.pid),
                           "--", "sleep", str(secs + 1)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    d = cps(host, threads, secs)
    _, err = sc.communicate()
    by_call = {}
    for line in err.splitlines():
        f = line.split(",")
        if len(f) > 2 and f[2].startswith("syscalls:sys_enter_") and f[0].strip().isdigit():
            if int(f[0]):
                by_call[f[2][len("syscalls:sys_enter_"):]] = int(f[0])
    if not by_call:
        raise RuntimeError("perf stat counted no system calls: %s" % err.strip()[-300:])
    n = d["ok"] + d["fail"]
    per = {k: v / n for k, v in sorted(by_call.items(), key=lambda kv: -kv[1])}
    return {"connections": n, "per_connection": sum(by_call.values()) / n, "by_call": per}


def path_suite(path, host, cfg, res, cpu_pid=None, clat=None, conn_only=False):
    """Every per-path measurement; cps last (it leaves closing flows).
    conn_only: round trips and new connections only (the "conn" part)."""
    r = res.setdefault(path, {})
    t = cfg["secs"]
    for par in () if conn_only else (1, 8):
        for rev, dname in ((False, "up"), (True, "down")):
            key = "tcp_%s_%d" % (dname, par)
            log("(%s) TCP %s, %d stream(s)" % (path, dname, par))
            r[key] = measure("%s %s" % (path, key), tcp_gbps, host, t, par, rev)
    for size in () if conn_only else (64, 1400):
        for rev, dname in ((False, "up"), (True, "down")):
            key = "udp%d_%s" % (size, dname)
            log("(%s) UDP %d bytes %s" % (path, size, dname))
            r[key] = measure("%s %s" % (path, key), udp_pps, host, t, size, rev)
    time.sleep(2)  # the UDP floods' tail (queued datagrams) must not skew latency
    for kind in ("tcplat", "udplat"):
        log("(%s) %s x %d" % (path, kind, cfg["lat_n"]))
        r[kind] = measure("%s %s" % (path, kind), latency, kind, host, cfg["lat_n"])
    if cpu_pid is not None and not conn_only:
        log("(%s) CPU per GB (%d MB down, then up)" % (path, cfg["cpu_bytes"] >> 20))
        r["cpu_per_gb"] = measure("%s cpu/GB" % path, cpu_per_gb, cpu_pid, host, cfg["cpu_bytes"])
    log("(%s) new TCP connections/s, %d threads, %ds" % (path, cfg["cps_threads"], cfg["cps_secs"]))
    r["cps"] = measure("%s cps" % path, cps, host, cfg["cps_threads"], cfg["cps_secs"])
    if clat is not None:
        # Closed flows the engine still keeps (their NAT port is not reused
        # at once) and connections refused for want of a flow slot.
        st = clat.status(check=False)
        r["after_cps"] = {k: st.get(k) for k in ("flows_tcp", "flows_tcp_total",
                                                 "drop_flow_limit", "tcp_rst_sent")}
        if conn_only:
            log("(%s) system calls per new connection (perf stat)" % path)
            r["cps_syscalls"] = measure("%s cps syscalls" % path, cps_syscalls, clat, host,
                                        cfg["cps_threads"], min(cfg["cps_secs"], 4))


def cpu_per_gb(pid, host, nbytes):
    out = {}
    for rev, dname in ((True, "down"), (False, "up")):
        c0 = cpu_seconds(pid)
        d = iperf(host, nbytes=nbytes, reverse=rev)
        c1 = cpu_seconds(pid)
        carried = d["end"]["sum_received"]["bytes"]
        out[dname] = (c1 - c0) / (carried / 1e9)
    return out


def wait_drained(clat, key, secs=15):
    end = time.time() + secs
    while time.time() < end and (clat.counter(key) or 0) > 0:
        time.sleep(0.2)


CLOSING_STATES = ["state", "fin-wait-1", "state", "fin-wait-2", "state", "last-ack",
                  "state", "closing", "state", "syn-sent"]


def settle_phone(secs=10):
    """Ends phone's TCP sockets left closing by earlier tests (orphans of a
    stopped engine's listener side, apps' FIN retransmissions): they would
    reach the next engine as strays and wake it.  Waits a little, then
    destroys the rest (`ss -K`, lab namespace only)."""
    end = time.time() + secs
    out = ""
    while time.time() < end:
        out = run(phone("ss", "-Htan", *CLOSING_STATES), check=False)
        if not out.strip():
            return
        time.sleep(0.5)
    run(phone("ss", "-K", "-Htan", *CLOSING_STATES), check=False)
    left = run(phone("ss", "-Htan", *CLOSING_STATES), check=False).splitlines()
    log("destroyed %d closing TCP sockets in phone (left: %d)" % (len(out.splitlines()), len(left)))


def wait_flows(clat, key, want, secs=20):
    end = time.time() + secs
    v = clat.counter(key)
    while time.time() < end and (v is None or v < want):
        time.sleep(0.2)
        v = clat.counter(key)
    return v


# `clat run`'s cap on live UDP mappings: EngineConfig::max_udp_flows's default
# (rust-core/engine/src/config.rs), which `clat run` has no option for.
# Beyond it each new source port is refused with an ICMP error over the
# engine's ICMP rate limit (silence past it, where `hold` waits 3 s per
# socket): asking for more flows than this measured the wrong thing (the
# first mappings expired after their 5 minutes while `hold` waited, and
# the RSS of 4096 mappings' tables was divided by the few hundred left).
ENGINE_UDP_CAP = 4096


def memory_suite(binary, cfg, res):
    """RSS growth per idle flow: TCP (`memtcp`) and UDP (`memudp`)."""
    memory_tcp_suite(binary, cfg, res)
    memory_udp_suite(binary, cfg, res)


def memory_tcp_suite(binary, cfg, res):
    m = res.setdefault("mem", {})
    # Two fds per TCP flow in the engine (accepted + upstream socket): the
    # TCP count is capped by our RLIMIT_NOFILE hard limit.
    hard = nofile_hard()
    tcp_max = min(cfg["mem_flows"], (hard - 256) // 2)
    if tcp_max < cfg["mem_flows"]:
        m["tcp_note"] = ("%d TCP flows instead of %d: RLIMIT_NOFILE hard limit %d and "
                         "2 fds per TCP flow in the engine" % (tcp_max, cfg["mem_flows"], hard))
        log(m["tcp_note"])
    c = Clat(binary)
    try:
        time.sleep(1)
        base = c.rss_kib()
        m["base_kib"] = base
        held = []
        for n in sorted({min(1000, tcp_max), tcp_max}):
            have = sum(h.n for h in held)
            log("memory: %d idle TCP flows" % n)
            held.append(Hold("tcp", V4, n - have))
            got = wait_flows(c, "flows_tcp", n)
            time.sleep(1)
            rss = c.rss_kib()
            m["tcp_%d" % n] = {"flows": got, "rss_kib": rss,
                               "bytes_per_flow": (rss - base) * 1024 / max(got or n, 1)}
        for h in held:
            h.close()
        wait_drained(c, "flows_tcp")
    finally:
        c.stop()
    # Real flows carry data before they idle: what stays resident then?
    c = Clat(binary)
    try:
        time.sleep(1)
        base = c.rss_kib()
        n, burst = 1000, 64 << 10
        log("memory: %d idle TCP flows after a %d KiB echo each" % (n, burst >> 10))
        h = Hold("tcp", V4, n, burst=burst)
        got = wait_flows(c, "flows_tcp", n)
        time.sleep(1)
        rss = c.rss_kib()
        m["tcpburst_%d" % n] = {"flows": got, "rss_kib": rss, "base_kib": base,
                                "bytes_per_flow": (rss - base) * 1024 / max(got or n, 1)}
        h.close()
        wait_drained(c, "flows_tcp")
    finally:
        c.stop()


def memory_udp_suite(binary, cfg, res):
    """Idle UDP mappings, 1000 and the engine's cap, in one engine, as
    for TCP. Each row also says how many sockets the app got an echo on
    and whether any mapping expired or was refused meanwhile, so that a
    row whose count is not the engine's own cannot pass unnoticed."""
    m = res.setdefault("mem", {})
    hard = nofile_hard()
    # One fd per UDP mapping in the engine, one per socket in `hold`.
    top = min(cfg["mem_flows"], ENGINE_UDP_CAP, hard - 256)
    c = Clat(binary)
    try:
        time.sleep(1)
        base = c.rss_kib()
        held = []
        for n in sorted({min(1000, top), top}):
            have = sum(h.n for h in held)
            log("memory: %d idle UDP flows" % n)
            held.append(Hold("udp", V4, n - have))
            got = wait_flows(c, "flows_udp", n)
            time.sleep(1)
            rss = c.rss_kib()
            st = c.status()
            m["udp_%d" % n] = {
                "flows": got, "rss_kib": rss, "base_kib": base,
                "bytes_per_flow": (rss - base) * 1024 / max(got or n, 1),
                "app_sockets": sum(h.n for h in held),
                "expired": int(st.get("flows_expired", 0)),
                "refused": int(st.get("drop_flow_limit", 0))}
        for h in held:
            h.close()
    finally:
        c.stop()


def cap_suite(binary, cfg, res):
    """Connection rate with clat run's default --max-flows, two rounds back
    to back: closed TCP flows keep their slot for a while, so a burst of
    short connections can exhaust the cap for the next round."""
    c = Clat(binary, max_flows=None)
    try:
        out = {"max_flows": c.status(check=False).get("max_flows")}
        for i in (1, 2):
            log("connections/s with the default flow cap, round %d" % i)
            out["round%d" % i] = cps(V4, cfg["cps_threads"], cfg["cps_secs"])
            # TIME_WAIT sockets in phone between the NAT address and the
            # engine's listener: they block reuse of a NAT port for 60 s.
            tw = run(phone("ss", "-Htan", "state", "time-wait", "src", "192.0.0.4", "dst",
                           "192.0.0.5"), check=False)
            out["time_wait%d" % i] = len(tw.splitlines())
        out["drop_flow_limit"] = c.counter("drop_flow_limit")
        res["cap"] = out
    finally:
        c.stop()


def wakeup_suite(binary, cfg, res):
    settle_phone()
    c = Clat(binary)
    try:
        h = Hold("tcp", V4, 100)
        wait_flows(c, "flows_tcp", 100)
        time.sleep(2)  # let the handshakes' aftermath settle
        st0 = c.status()
        w0, x0, t0 = int(st0["loop_wakeups"]), ctx_switches(c.pid), time.time()
        log("wake-ups: 100 idle TCP flows for %ds" % cfg["idle_secs"])
        time.sleep(cfg["idle_secs"])
        # ctx switches first: the status query itself wakes the process.
        x1, t1 = ctx_switches(c.pid), time.time()
        st1 = c.status()
        w1 = int(st1["loop_wakeups"])
        el = t1 - t0
        # What happened meanwhile (packets from the kernel, expiries...).
        moved = {k: int(v) - int(st0[k]) for k, v in st1.items()
                 if v.isdigit() and st0.get(k, "").isdigit() and int(v) != int(st0[k])
                 and k != "loop_wakeups"}
        res["wakeups"] = {"seconds": el, "flows": c.counter("flows_tcp"),
                          "ctx_per_s": (x1 - x0) / el,
                          "loop_per_s": (w1 - w0) / el, "other_counters_moved": moved}
        h.close()
    finally:
        c.stop()


# What Android's VpnService hands the app (frameworks/base,
# services/core/jni/com_android_server_connectivity_Vpn.cpp, create_interface:
# open("/dev/tun", O_RDWR | O_NONBLOCK), TUNSETIFF with IFF_TUN | IFF_NO_PI,
# then only IFF_UP and SIOCSIFMTU): one queue, no packet-info header, no
# virtio-net header, and no TUNSETOFFLOAD, so no checksum or segmentation
# offload. `clat run --no-tun-offloads` opens its TUN with the same flags
# (engine sys.rs, open_tun), so `clat run --no-tun-offloads --mtu N` is that
# descriptor; each run checks it. By default `clat run` adds IFF_VNET_HDR
# and the checksum and TSO offloads (open_tun_offload): the "clat run
# default" row.
ANDROID_TUN = {"pi": False, "vnet_hdr": False, "multi_queue": False,
               "tx-checksumming": "off", "tcp-segmentation-offload": "off"}
ANDROID_MTUS = [1280, 1500, 9000, 65000]
# The app's default TUN MTU (android/app ... logic/ClatSettings.kt, MTU_DEFAULT).
ANDROID_APP_MTU = 65000


def tun_descriptor(dev="clat0"):
    """The TUN's flags (ip -d link) and offloads (ethtool -k, when installed)."""
    info = json.loads(run(phone("ip", "-d", "-j", "link", "show", dev)))[0]
    d = {k: info.get("linkinfo", {}).get("info_data", {}).get(k)
         for k in ("pi", "vnet_hdr", "multi_queue")}
    d["mtu"] = info.get("mtu")
    d["queues"] = info.get("num_rx_queues")
    p = subprocess.run(phone("ethtool", "-k", dev), capture_output=True, text=True)
    for line in p.stdout.splitlines():
        k, _, v = line.strip().partition(":")
        if k in ("tx-checksumming", "tcp-segmentation-offload", "scatter-gather"):
            d[k] = v.split()[0] if v.split() else v
    return d


def android_like(desc):
    """Whether `desc` is the descriptor a VpnService hands over ("unknown"
    when ethtool is missing and the offloads could not be read)."""
    if any(desc.get(k) is None for k in ANDROID_TUN):
        return "unknown"
    return "yes" if all(desc.get(k) == v for k, v in ANDROID_TUN.items()) else "no"


def direct_ref(cfg, res):
    """(a)'s one-stream TCP and UDP figures for the ratios: those of the
    paths part when it ran, else measured now."""
    a = res.setdefault("a", {})
    for rev, dname in ((False, "up"), (True, "down")):
        k = "tcp_%s_1" % dname
        if a.get(k) is None:
            log("(a) TCP %s, 1 stream (reference)" % dname)
            a[k] = measure("a " + k, tcp_gbps, V6, cfg["secs"], 1, rev)
        for size in (64, 1400):
            k = "udp%d_%s" % (size, dname)
            if a.get(k) is None:
                log("(a) UDP %d bytes %s (reference)" % (size, dname))
                a[k] = measure("a " + k, udp_pps, V6, cfg["secs"], size, rev)


def has_option(binary, option):
    """Whether `clat run` of `binary` knows `option` (its --help)."""
    p = subprocess.run([binary, "run", "--help"], capture_output=True, text=True)
    return option in p.stdout


def android_suite(binary, cfg, res):
    """The engine on the TUN descriptor a VpnService hands the app, at the
    app's MTUs, and `clat run` as it starts by default: TCP one stream each
    way, UDP 64 and 1400 bytes each way, and the clat process's CPU seconds
    per GB received, for each (one fresh `clat run` per row)."""
    direct_ref(cfg, res)
    out = res.setdefault("android", {})
    # A binary from before the offloads has a plain TUN anyway.
    plain = ("--no-tun-offloads",) if has_option(binary, "--no-tun-offloads") else ()
    rows = [("mtu %d" % m, m, plain) for m in cfg["android_mtus"]]
    rows.append(("clat run default", None, ()))
    for name, mtu, extra in rows:
        try:
            c = Clat(binary, mtu=mtu, max_flows=None, extra=extra)
        except Exception as e:  # noqa: BLE001
            errors.append("android %s: %s" % (name, e))
            continue
        r = {"mtu": c.mtu}
        try:
            r["tun"] = measure("android %s descriptor" % name, tun_descriptor)
            r["android_descriptor"] = android_like(r["tun"] or {})
            engine_row(c, "android " + name, V4, cfg, r)
        finally:
            c.stop()
        out[name] = r


def engine_row(c, name, host, cfg, r):
    """One row of an engine table, through the `clat run` `c` to `host`:
    TCP one stream each way and UDP 64 and 1400 bytes each way, each with
    the clat process's CPU seconds per GB received, into `r`."""
    for rev, dname in ((False, "up"), (True, "down")):
        log("%s: TCP %s, 1 stream" % (name, dname))
        c0 = cpu_seconds(c.pid)
        d = measure("%s tcp %s" % (name, dname), iperf, host, secs=cfg["secs"], reverse=rev)
        if d:
            s = d["end"]["sum_received"]
            r["tcp_" + dname] = s["bits_per_second"] / 1e9
            r["tcp_%s_cpu_per_gb" % dname] = (cpu_seconds(c.pid) - c0) / (s["bytes"] / 1e9)
    for size in (64, 1400):
        for rev, dname in ((False, "up"), (True, "down")):
            k = "udp%d_%s" % (size, dname)
            log("%s: UDP %d bytes %s" % (name, size, dname))
            c0 = cpu_seconds(c.pid)
            d = measure("%s %s" % (name, k), iperf, host, secs=cfg["secs"], reverse=rev,
                        udp_len=size)
            if d:
                got = d["end"]["sum_received"]
                r[k] = {"pps": got["bytes"] / size / max(got["seconds"], 1e-9),
                        "loss": d["end"]["sum"].get("lost_percent", 0.0),
                        "cpu_per_gb": (cpu_seconds(c.pid) - c0) / max(got["bytes"] / 1e9, 1e-9)}


# The phone's uplink in the lab (tests/lab/lab.sh): where `clat run
# --carry-ipv6` sends the IPv6 it carries (--bind-device).
PHONE_UPLINK = "ph0"


def carry6_suite(binary, cfg, res):
    """Issue 15 item 5: IPv6 through the engine (`clat run --carry-ipv6
    --bind-device ph0`, its default TUN MTU: phone's IPv6 to (a)'s server
    address goes into the TUN, and the engine re-originates it on the
    uplink) against (a) IPv6 direct in the same run, as engine_row
    measures. The row is refused unless the route to the server goes
    through the TUN (otherwise it would measure (a) again)."""
    direct_ref(cfg, res)
    c = Clat(binary, max_flows=None, extra=("--carry-ipv6", "--bind-device", PHONE_UPLINK))
    r = {"mtu": c.mtu}
    try:
        route = run(phone("ip", "-6", "route", "get", V6)).strip()
        r["route"] = route
        if " dev clat0 " not in route + " ":
            raise RuntimeError("IPv6 to %s does not go through the TUN: %s" % (V6, route))
        engine_row(c, "carry6", V6, cfg, r)
        st = c.status(check=False)
        r["counters"] = {k: st.get(k) for k in ("flows_tcp_total", "up_tx_bytes", "up_rx_bytes")}
    finally:
        c.stop()
    res["carry6"] = r


def perf_workload(name, clat, secs, work, outdir):
    """perf record + syscall count of the clat process while `work` runs."""
    def counters():
        st = clat.status(check=False)
        return {k: int(v) for k, v in st.items() if v.isdigit() and not k.startswith("flows_")
                and k not in ("mtu", "max_flows")}

    def tun_drops():
        # Packets the kernel could not queue to the engine (TUN tx queue full).
        out = run(phone("ip", "-s", "-j", "link", "show", "clat0"), check=False)
        try:
            return json.loads(out)[0]["stats64"]["tx"]["dropped"]
        except (ValueError, LookupError):
            return 0
    c0 = counters()
    k0 = tun_drops()
    cpu0 = cpu_seconds(clat.pid)
    data = os.path.join(BENCH_RUN, "perf-%s.data" % name)
    rec = subprocess.Popen(["perf", "record", "-F", "1999", "-g", "-o", data, "-p", str(clat.pid),
                            "--", "sleep", str(secs)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    # Per system call (one counting tracepoint each), so that a change is
    # seen in the call it moves.
    sc = subprocess.Popen(["perf", "stat", "-x,", "-e", "syscalls:sys_enter_*", "-p", str(clat.pid),
                           "--", "sleep", str(secs)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    work()
    rec.wait()
    _, err = sc.communicate()
    cpu1 = cpu_seconds(clat.pid)
    c1 = counters()
    d = {k: c1[k] - c0.get(k, 0) for k in c1 if c1[k] != c0.get(k, 0)}
    d["kernel_tun_queue_drops"] = tun_drops() - k0
    by_call = {}
    for line in err.splitlines():
        f = line.split(",")
        if len(f) > 2 and f[2].startswith("syscalls:sys_enter_") and f[0].strip().isdigit():
            if int(f[0]):
                by_call[f[2][len("syscalls:sys_enter_"):]] = int(f[0])
    syscalls = sum(by_call.values()) or None
    calls = sorted(by_call.items(), key=lambda kv: -kv[1])
    pkts = d.get("tun_rx_packets", 0) + d.get("tun_tx_packets", 0)
    rep = run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "symbol",
               "--percent-limit", "1.5", "-g", "none"], check=False, timeout=120)
    dso = run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso",
               "-g", "none"], check=False, timeout=120)
    user = run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "symbol",
                "--dsos", os.path.basename(clat.binary), "--percent-limit", "0.3", "-g", "none"],
               check=False, timeout=120)
    # Who calls the copy and checksum routines (the bytes' cost), by call chain.
    chains = run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "symbol",
                  "--symbols", "_copy_to_iter,_copy_from_iter,__pi_memcpy,memcpy,csum_partial",
                  "-g", "caller,2,callee,function,percent", "--percent-limit", "2"],
                 check=False, timeout=120)
    lines = lambda t, n: [" ".join(x.split()) for x in t.splitlines() if x.strip() and not x.startswith("#")][:n]
    top = (["-- system calls: " + ", ".join("%s %d" % kv for kv in calls[:8])]
           + ["-- by binary:"] + lines(dso, 4) + ["-- hottest symbols (kernel [k], user [.]):"]
           + lines(rep, 12) + ["-- hottest symbols inside clat:"] + lines(user, 8))
    txt = os.path.join(outdir, "profile-%s.txt" % name)
    with open(txt, "w") as f:
        f.write("workload %s: counters %s, cpu %.2fs, syscalls %s %s\n\n" % (name, d, cpu1 - cpu0, syscalls,
                                                                     dict(calls)))
        f.write(dso + "\n" + rep + "\n" + user + "\n" + chains)
    return {"counters": d, "cpu_s": cpu1 - cpu0, "syscalls": syscalls, "by_call": dict(calls),
            "syscalls_per_tun_packet": None if not syscalls or not pkts else syscalls / pkts,
            "top": top, "file": shown(txt)}


def profile_suite(binary, cfg, res, outdir):
    """Where the engine spends its time (not part of the default run)."""
    out = res.setdefault("profile", {})
    secs = 4 if cfg["quick"] else 8
    os.makedirs(outdir, exist_ok=True)
    works = {
        "tcp_up_1": lambda: iperf(V4, secs=secs - 1),
        "tcp_down_1": lambda: iperf(V4, secs=secs - 1, reverse=True),
        "udp64_up": lambda: iperf(V4, secs=secs - 1, udp_len=64),
        "udp64_down": lambda: iperf(V4, secs=secs - 1, udp_len=64, reverse=True),
        "cps": lambda: cps(V4, cfg["cps_threads"], secs - 1),
        "tcplat": lambda: latency("tcplat", V4, 20000),
    }
    # MTU 1500 (the app's default until 2026-11-30; now it is clat run's 65000).
    works["tcp_up_1_mtu1500"] = works["tcp_up_1"]
    works["tcp_down_1_mtu1500"] = works["tcp_down_1"]
    for name, work in works.items():
        c = Clat(binary, mtu=1500 if name.endswith("mtu1500") else None)
        try:
            log("profile: %s" % name)
            out[name] = measure("profile " + name, perf_workload, name, c, secs, work, outdir)
        finally:
            c.stop()


# ------------------------------------------------------------ the report

def fnum(v, unit="", digits=2):
    if v is None:
        return "n/a"
    if abs(v) >= 1000 and unit != "us":
        return "{:,.0f}{}".format(v, unit)
    return "{:.{d}f}{}".format(v, unit, d=digits)


def ratio(x, y):
    if x is None or y is None or y == 0:
        return "n/a"
    return "%.2fx" % (x / y)


def get(res, path, key, sub=None):
    v = res.get(path, {}).get(key)
    if v is not None and sub is not None:
        v = v.get(sub)
    return v


def report(res, cfg, meta):
    L = []
    L.append("# CLAT benchmark %s%s" % (meta["date"], " (--quick)" if cfg["quick"] else ""))
    L.append("")
    L.append("- machine: %s, %s CPUs, kernel %s" % (meta["cpu"], meta["nproc"], meta["kernel"]))
    L.append("- load average at start / end: %s / %s" % (meta["load_start"], meta["load_end"]))
    L.append("- command: `%s`" % meta["command"])
    L.append("- clat: `%s` (git %s)" % (meta["clat"], meta["git"]))
    L.append("- paths: (a) IPv6 direct to [%s]; (b) our CLAT (`clat run --pref64 %s`, its "
             "default TUN MTU: %s) to %s; (c) Tayga as a CLAT in phone (TUN MTU 1500) to %s. "
             "All end at the same server in `inet` over a native IPv6 path (no NAT64 in the "
             "way)." % (V6, PREFIX, get(res, "b", "mtu"), V4, V4))
    L.append("- durations: %ss per throughput test, %d latency samples, %ss of connections, "
             "%ss idle" % (cfg["secs"], cfg["lat_n"], cfg["cps_secs"], cfg["idle_secs"]))
    L.append("")
    L.append("## Throughput, packet rate, connection rate")
    L.append("")
    L.append("| measurement | (a) IPv6 direct | (b) our CLAT | (c) Tayga CLAT | b/a | b/c |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for par in (1, 8):
        for d in ("up", "down"):
            k = "tcp_%s_%d" % (d, par)
            a, b, c = (get(res, p, k) for p in "abc")
            L.append("| TCP %s, %d stream%s (Gbit/s) | %s | %s | %s | %s | %s |" % (
                d, par, "s" if par > 1 else "", fnum(a), fnum(b), fnum(c), ratio(b, a), ratio(b, c)))
    for size in (64, 1400):
        for d in ("up", "down"):
            k = "udp%d_%s" % (size, d)
            a, b, c = (get(res, p, k, "pps") for p in "abc")
            la, lb, lc = (get(res, p, k, "loss") for p in "abc")
            L.append("| UDP %d B %s (pkt/s received, loss %%) | %s (%s%%) | %s (%s%%) | %s (%s%%) "
                     "| %s | %s |" % (size, d, fnum(a), fnum(la, digits=1), fnum(b),
                                      fnum(lb, digits=1), fnum(c), fnum(lc, digits=1),
                                      ratio(b, a), ratio(b, c)))
    a, b, c = (get(res, p, "cps", "rate") for p in "abc")
    fa, fb, fc = (get(res, p, "cps", "fail") for p in "abc")
    L.append("| new TCP connections/s (failed) | %s (%s) | %s (%s) | %s (%s) | %s | %s |" % (
        fnum(a), fnum(fa, digits=0), fnum(b), fnum(fb, digits=0), fnum(c), fnum(fc, digits=0),
        ratio(b, a), ratio(b, c)))
    ac = get(res, "b", "after_cps")
    if ac:
        L.append("| our CLAT right after the connection test: live TCP flows / created / "
                 "refused (flow cap) | | %s / %s / %s | | | |" % (
                     ac.get("flows_tcp"), ac.get("flows_tcp_total"), ac.get("drop_flow_limit")))
    sy = get(res, "b", "cps_syscalls")
    if sy:
        L.append("| our CLAT: system calls per new connection (%d connections, perf stat) | | "
                 "%.1f: %s | | | |" % (sy["connections"], sy["per_connection"], ", ".join(
                     "%s %.1f" % kv for kv in list(sy["by_call"].items())[:10])))
    cap = res.get("cap")
    if cap:
        r1, r2 = cap.get("round1") or {}, cap.get("round2") or {}
        L.append("| our CLAT, default `--max-flows` (%s): connections/s round 1 / round 2 right "
                 "after (failed; listener-side TIME_WAIT sockets after the round) | | "
                 "%s (%s; %s) / %s (%s; %s) | | | |" % (
                     cap.get("max_flows"), fnum(r1.get("rate")), fnum(r1.get("fail"), digits=0),
                     cap.get("time_wait1"), fnum(r2.get("rate")), fnum(r2.get("fail"), digits=0),
                     cap.get("time_wait2")))
    cb, cc = get(res, "b", "cpu_per_gb"), get(res, "c", "cpu_per_gb")
    for d in ("down", "up"):
        L.append("| translator CPU s per GB, TCP %s (clat / tayga process) | - | %s | %s | - | %s |" % (
            d, fnum(cb and cb.get(d), digits=3), fnum(cc and cc.get(d), digits=3),
            ratio(cb and cb.get(d), cc and cc.get(d))))
    L.append("")
    L.append("## Round-trip latency (microseconds)")
    L.append("")
    L.append("| measurement | (a) IPv6 direct | (b) our CLAT | (c) Tayga CLAT | added by (b) | added by (c) |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for kind, name in (("tcplat", "TCP 1-byte ping-pong"), ("udplat", "UDP 1-byte ping-pong")):
        for q in ("p50", "p99"):
            a, b, c = (get(res, p, kind, q) for p in "abc")
            L.append("| %s %s | %s | %s | %s | %s | %s |" % (
                name, q, fnum(a, digits=1), fnum(b, digits=1), fnum(c, digits=1),
                fnum(None if a is None or b is None else b - a, digits=1),
                fnum(None if a is None or c is None else c - a, digits=1)))
    L.append("")
    L.append("## Engine resources (our CLAT)")
    L.append("")
    m = res.get("mem", {})
    L.append("| measurement | value |")
    L.append("| --- | ---: |")
    if "base_kib" in m:
        L.append("| RSS with 0 flows | %s KiB |" % fnum(m["base_kib"], digits=0))
    for k in sorted((k for k in m if isinstance(m[k], dict)),
                    key=lambda k: (k.split("_")[0], int(k.split("_")[1]))):
        v = m[k]
        L.append("| %s idle %s flows%s (counted by the engine: %s) | RSS %s KiB, **%s bytes/flow** |" % (
            k.split("_")[1], k[:3].upper(),
            ", each after a 64 KiB echo" if k.startswith("tcpburst") else "", v.get("flows"),
            fnum(v["rss_kib"], digits=0), fnum(v["bytes_per_flow"], digits=0)))
    for k in sorted(k for k in m if k.startswith("udp_")):
        v = m[k]
        if "app_sockets" in v:
            L.append("| %s idle UDP flows: sockets with an echo in the app; mappings expired, "
                     "refused by the cap meanwhile | %s; %s, %s |" % (
                         k.split("_")[1], v["app_sockets"], v["expired"], v["refused"]))
    if m.get("tcp_note"):
        L.append("| note | %s |" % m["tcp_note"])
    w = res.get("wakeups")
    if w:
        L.append("| idle wake-ups, 100 TCP flows, %.0f s: engine loop (`loop_wakeups`) | %s /s |" % (
            w["seconds"], fnum(w["loop_per_s"])))
        L.append("| idle context switches, all threads of `clat run` | %s /s |" % fnum(w["ctx_per_s"]))
        L.append("| engine counters that moved while idle | %s |" % (
            ", ".join("%s +%d" % kv for kv in sorted(w.get("other_counters_moved", {}).items()))
            or "none"))
    L.append("")
    an = res.get("android", {})
    if an:
        L.append("## The Android configuration: the TUN descriptor a VpnService hands over, "
                 "at the app's MTUs, and `clat run`'s defaults")
        L.append("")
        L.append("One `clat run` per row; TCP one stream (Gbit/s), UDP packets per second "
                 "received (loss %), each with its ratio to (a) IPv6 direct in this run; "
                 "CPU s/GB: utime+stime of the clat process per GB received. Android "
                 "descriptor: single queue, no packet-info header, no vnet header, no "
                 "checksum or segmentation offload (`clat run --no-tun-offloads`), as "
                 "`ip -d link` and `ethtool -k` report it; `clat run`'s default has the "
                 "vnet header with checksum and TCP segmentation offloads.")
        L.append("")
        L.append("| configuration | TUN MTU | Android descriptor | TCP up | TCP down "
                 "| UDP 64 B up | UDP 64 B down | UDP 1400 B up | UDP 1400 B down "
                 "| CPU s/GB TCP up | CPU s/GB TCP down | CPU s/GB UDP 1400 up "
                 "| CPU s/GB UDP 1400 down |")
        L.append("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
                 "| ---: | ---: |")

        for name, v in an.items():
            L.append("| %s | %s | %s | %s |" % (
                name, v.get("mtu"), v.get("android_descriptor"), " | ".join(engine_cells(res, v))))
        L.append("| (a) IPv6 direct, same run | | | %s | | | | |" % " | ".join(direct_cells(res)))
        L.append("")
        descs = {name: v.get("tun") for name, v in an.items()}
        L.append("TUN as measured: " + "; ".join(
            "%s: %s" % (n, ", ".join("%s %s" % kv for kv in sorted((d or {}).items())))
            for n, d in descs.items()))
        L.append("")
    cr = res.get("carry6")
    if cr:
        L.append("## IPv6 through the engine (`clat run --carry-ipv6`) against IPv6 direct")
        L.append("")
        L.append("`clat run --carry-ipv6 --bind-device %s` at its default TUN MTU: phone's IPv6 "
                 "to [%s] goes into the TUN (`ip -6 route get`: `%s`) and the engine carries it "
                 "to the same server socket as (a), through its own sockets on the uplink. "
                 "Cells as in the Android table: value (loss %%) and ratio to (a) in this run; "
                 "CPU s/GB of the clat process." % (PHONE_UPLINK, V6, cr.get("route")))
        L.append("")
        L.append("| path | TUN MTU | TCP up | TCP down | UDP 64 B up | UDP 64 B down "
                 "| UDP 1400 B up | UDP 1400 B down | CPU s/GB TCP up | CPU s/GB TCP down "
                 "| CPU s/GB UDP 1400 up | CPU s/GB UDP 1400 down |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        L.append("| IPv6 through the engine | %s | %s |" % (cr.get("mtu"),
                                                           " | ".join(engine_cells(res, cr))))
        L.append("| (a) IPv6 direct, same run | | %s | | | | |" % " | ".join(direct_cells(res)))
        L.append("")
    pr = res.get("profile")
    if pr:
        L.append("## Profile of `clat run` (perf, cpu-clock)")
        L.append("")
        for name, v in pr.items():
            if not v:
                continue
            L.append("### %s: %s syscalls per TUN packet, %.2f CPU s, counters %s" % (
                name, fnum(v["syscalls_per_tun_packet"]), v["cpu_s"], v["counters"]))
            L.append("")
            L.append("```")
            L.extend(v["top"])
            L.append("```")
            L.append("")
    L.append("## Targets")
    L.append("")
    L.append("| target | measured | |")
    L.append("| --- | --- | --- |")
    for name, val, ok in targets(res):
        L.append("| %s | %s | %s |" % (name, val, "n/a" if ok is None else ("met" if ok else "**missed**")))
    L.append("")
    if errors:
        L.append("## Not measured")
        L.append("")
        for e in errors:
            L.append("- " + e.replace("\n", " ")[:300])
        L.append("")
    return "\n".join(L)


def engine_cells(res, v):
    """The cells of an engine_row `v`: TCP up and down, UDP 64 and 1400
    bytes each way (each with its ratio to (a)), CPU s/GB of TCP up and
    down and of UDP 1400 up and down."""
    def udp_cell(k):
        u = v.get(k)
        if not u:
            return "n/a"
        return "%s (%s%%) %s" % (fnum(u["pps"]), fnum(u["loss"], digits=1),
                                 ratio(u["pps"], get(res, "a", k, "pps")))
    return ["%s %s" % (fnum(v.get("tcp_up")), ratio(v.get("tcp_up"), get(res, "a", "tcp_up_1"))),
            "%s %s" % (fnum(v.get("tcp_down")), ratio(v.get("tcp_down"), get(res, "a", "tcp_down_1"))),
            udp_cell("udp64_up"), udp_cell("udp64_down"),
            udp_cell("udp1400_up"), udp_cell("udp1400_down"),
            fnum(v.get("tcp_up_cpu_per_gb"), digits=3), fnum(v.get("tcp_down_cpu_per_gb"), digits=3),
            fnum((v.get("udp1400_up") or {}).get("cpu_per_gb"), digits=3),
            fnum((v.get("udp1400_down") or {}).get("cpu_per_gb"), digits=3)]


def direct_cells(res):
    """(a)'s TCP and UDP cells for the same columns."""
    return [fnum(get(res, "a", "tcp_up_1")), fnum(get(res, "a", "tcp_down_1")),
            fnum(get(res, "a", "udp64_up", "pps")), fnum(get(res, "a", "udp64_down", "pps")),
            fnum(get(res, "a", "udp1400_up", "pps")), fnum(get(res, "a", "udp1400_down", "pps"))]


def targets(res):
    """Issue 16's targets (the second performance round), each as measured
    in this run: (name, measured, met or None when not measured)."""
    out = []

    def at_least(name, x, y, k):
        out.append((name, ratio(x, y), None if x is None or y is None or y == 0 else x >= k * y))

    for d in ("up", "down"):
        k = "tcp_%s_1" % d
        at_least("(b) >= 0.75 x (a), TCP 1 stream %s" % d, get(res, "b", k), get(res, "a", k), 0.75)
    an = res.get("android", {})
    app = an.get("mtu %d" % ANDROID_APP_MTU, {})
    for d in ("up", "down"):
        at_least("Android configuration at the app's default MTU %d: TCP 1 stream %s >= 0.5 x (a)"
                 % (ANDROID_APP_MTU, d), app.get("tcp_" + d), get(res, "a", "tcp_%s_1" % d), 0.5)
    for name in ("mtu %d" % ANDROID_APP_MTU, "clat run default"):
        for d in ("up", "down"):
            v = an.get(name, {}).get("tcp_%s_cpu_per_gb" % d)
            out.append(("<= 0.4 CPU s per GB, %s, TCP %s" % (name, d), fnum(v, " s/GB", 3),
                        None if v is None else v <= 0.4))
    for size in (64, 1400):
        for d in ("up", "down"):
            k = "udp%d_%s" % (size, d)
            at_least("UDP %d B %s >= 0.6 x (a), pkt/s received" % (size, d),
                     get(res, "b", k, "pps"), get(res, "a", k, "pps"), 0.6)
    at_least("new TCP connections/s >= 0.5 x (a)", get(res, "b", "cps", "rate"),
             get(res, "a", "cps", "rate"), 0.5)
    for kind, name in (("tcplat", "TCP"), ("udplat", "UDP")):
        a, b = get(res, "a", kind, "p99"), get(res, "b", kind, "p99")
        add = None if a is None or b is None else b - a
        out.append(("added RTT p99 <= 60 us (%s)" % name, fnum(add, " us", 1),
                    None if add is None else add <= 60))
    m = res.get("mem", {})
    for k, v in sorted(m.items()):
        if isinstance(v, dict) and "bytes_per_flow" in v and int(k.split("_")[1]) >= 1000:
            n = int(k.split("_")[1])
            # A row whose flows the engine did not all hold (refused,
            # expired meanwhile) divides by fewer flows than it made: no
            # verdict on it.
            whole = v.get("flows") == n and not v.get("expired") and not v.get("refused")
            out.append(("<= 512 B engine memory per idle flow (%s %s%s)" % (
                n, k[:3].upper(), " after 64 KiB echo" if k.startswith("tcpburst") else ""),
                        fnum(v["bytes_per_flow"], " B", 0),
                        v["bytes_per_flow"] <= 512 if whole else None))
    w = res.get("wakeups")
    lp = w and w.get("loop_per_s")
    out.append(("no idle wake-ups (engine loop)", fnum(lp, "/s"), None if lp is None else lp == 0))
    # Every figure at least as good as Tayga's as a CLAT in the same run.
    worse = []
    compared = 0
    for key, sub, higher in ([("tcp_%s_%d" % (d, n), None, True) for n in (1, 8) for d in ("up", "down")]
                             + [("udp%d_%s" % (z, d), "pps", True) for z in (64, 1400)
                                for d in ("up", "down")]
                             + [("cps", "rate", True)]
                             + [(k, q, False) for k in ("tcplat", "udplat") for q in ("p50", "p99")]):
        b, c = get(res, "b", key, sub), get(res, "c", key, sub)
        if b is None or c is None:
            continue
        compared += 1
        if (b < c) if higher else (b > c):
            worse.append("%s%s %s vs %s" % (key, " " + sub if sub else "", fnum(b), fnum(c)))
    cb, cc = get(res, "b", "cpu_per_gb"), get(res, "c", "cpu_per_gb")
    for d in ("up", "down"):
        if cb and cc and cb.get(d) is not None and cc.get(d) is not None:
            compared += 1
            if cb[d] > cc[d]:
                worse.append("cpu/GB %s %.3f vs %.3f" % (d, cb[d], cc[d]))
    out.append(("every figure of (b) at least as good as (c) Tayga's",
                "; ".join(worse) or ("%d figures compared" % compared if compared else "n/a"),
                None if not compared else not worse))
    return out


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "nproc": os.cpu_count(), "kernel": platform.release()}


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clat", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", required=True, help="markdown file to write")
    ap.add_argument("--command", default="tests/bench/run.sh")
    ap.add_argument("--git", default="?")
    ap.add_argument("--only", default="", help="comma list: paths,mem,wake,android,carry6,cap (default "
                    "all; mtu = android; memtcp, memudp: one half of mem), "
                    "conn (round trips and new connections of (a) and (b) only), profile (perf; "
                    "only when asked)")
    a = ap.parse_args()
    q = a.quick
    cfg = {"quick": q, "secs": 2 if q else 10, "lat_n": 2000 if q else 20000,
           "cps_secs": 2 if q else 10, "cps_threads": 8, "idle_secs": 5 if q else 30,
           "mem_flows": 10000, "cpu_bytes": (256 << 20) if q else (2 << 30),
           "android_mtus": ANDROID_MTUS}
    only = set(filter(None, a.only.split(","))) or {"paths", "mem", "wake", "android", "carry6",
                                                     "cap"}
    if "mtu" in only:  # the earlier name of the part, which now has more
        only = (only - {"mtu"}) | {"android"}
    meta = machine()
    meta.update(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                load_start=loadavg(), command=shown_command(a.command), clat=shown(a.clat), git=a.git)
    res = {}
    raise_nofile()
    if "paths" in only:
        log("(a) IPv6 direct to %s" % V6)
        path_suite("a", V6, cfg, res)
        try:
            c = Clat(a.clat)
        except Exception as e:  # noqa: BLE001
            errors.append("(b) our CLAT: %s" % e)
            c = None
        if c:
            try:
                res.setdefault("b", {})["mtu"] = c.mtu
                path_suite("b", V4, cfg, res, cpu_pid=c.pid, clat=c)
            finally:
                c.stop()
        try:
            tpid = tayga_clat_up()
        except Exception as e:  # noqa: BLE001
            errors.append("(c) Tayga CLAT: %s" % e)
            tpid = None
        if tpid:
            try:
                path_suite("c", V4, cfg, res, cpu_pid=tpid)
            finally:
                tayga_clat_down()
    if "conn" in only and "paths" not in only:
        log("(a) IPv6 direct to %s: round trips and new connections" % V6)
        path_suite("a", V6, cfg, res, conn_only=True)
        c = Clat(a.clat)
        try:
            res.setdefault("b", {})["mtu"] = c.mtu
            path_suite("b", V4, cfg, res, clat=c, conn_only=True)
        finally:
            c.stop()
    if "mem" in only:
        only -= {"memtcp", "memudp"}
    for part, fn in (("mem", memory_suite), ("memtcp", memory_tcp_suite),
                     ("memudp", memory_udp_suite), ("wake", wakeup_suite), ("android", android_suite),
                     ("carry6", carry6_suite), ("cap", cap_suite)):
        if part in only:
            measure(part, fn, a.clat, cfg, res)
    if "profile" in only:
        measure("profile", profile_suite, a.clat, cfg, res,
                os.path.splitext(os.path.abspath(a.out))[0] + "-profile")
    meta["load_end"] = loadavg()
    text = report(res, cfg, meta)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text + "\n")
    with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
        json.dump({"meta": meta, "cfg": cfg, "results": res, "errors": errors}, f, indent=1,
                  default=str)
    log("wrote %s" % a.out)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
