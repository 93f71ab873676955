#!/usr/bin/env python3
"""Soak: N minutes of mixed traffic through one `clat run` in the lab, then
check that the engine gives everything back.

    sudo python3 tests/soak/soak.py [--minutes 10 | --seconds 60] [--keep-lab]

Load (tests/soak/soak_worker.py, each in phone, concurrently): hash-checked
HTTP downloads and sink uploads, TCP echo connection churn, UDP echo to two
servers with fresh source ports every round, ICMP echo through ping sockets,
DNS queries through the CLAT's relay.  The CLAT runs with short timeouts
(UDP/ICMP 3 s, transitory TCP 5 s) so that the flow table must drain soon
after the load stops.

Pass criteria (exit 1 otherwise, with the reason):
- every transfer, echo, ping and answer matched byte for byte; no TCP
  failure at all; UDP/ICMP/DNS exchanges lost (timed out) at most 2%
  (datagrams may be lost when the TUN's 500-packet queue overflows under
  the TCP load: the kernel's clat0 tx_dropped is printed next to it), never
  corrupted;
- afterwards the flows_tcp/udp/icmp gauges are 0, the CLAT's open file
  descriptors are back to the baseline, and VmRSS is at most the baseline
  plus 16 MiB (the allocator may keep some freed memory);
- the engine never stopped.

Needs root and the lab (brought up unless it is already healthy; torn down
at the end unless --keep-lab or KEEP_LAB=1).  CLAT_BIN selects the binary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

import labutil  # noqa: E402
from labutil import PHONE, ClatProcess, ns_popen, status_int, wait_until  # noqa: E402

WORKER = str(HERE / "soak_worker.py")
# kind -> number of concurrent workers
MIX = {"download": 2, "upload": 1, "churn": 2, "udp": 2, "icmp": 1, "dns": 1}
TCP_KINDS = ("download", "upload", "churn")
RSS_SLACK_KB = 16 * 1024
CLAT_ARGS = ("--udp-timeout", "3s", "--icmp-timeout", "3s", "--tcp-trans-timeout", "5s",
             "--dns-timeout", "2s")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def tun_dropped() -> int:
    p = labutil.ns(PHONE, "cat", f"/sys/class/net/{labutil.TUN}/statistics/tx_dropped",
                   check=False)
    return int(p.stdout) if p.returncode == 0 else -1


def nat64_dropped() -> int:
    """Tayga's TUN queue overflows under the TCP load: datagrams lost there
    are the lab's NAT64, not the CLAT (printed next to the UDP/ICMP losses)."""
    p = labutil.ns(labutil.PLAT, "cat", "/sys/class/net/nat64/statistics/tx_dropped",
                   check=False)
    return int(p.stdout) if p.returncode == 0 else -1


def flows(st) -> tuple[int, int, int]:
    return tuple(status_int(st, k) for k in ("flows_tcp", "flows_udp", "flows_icmp"))


def sha_1m() -> str:
    for line in (labutil.LAB_RUN / "www" / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        if name == "1M":
            return digest
    raise KeyError("1M")


def run_workers(seconds: float, sha: str, clat: ClatProcess, sample_every: float = 5.0):
    procs = []
    for kind, n in MIX.items():
        for _ in range(n):
            procs.append(ns_popen(PHONE, sys.executable, WORKER, kind, str(seconds), sha,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    samples = []
    t0 = time.monotonic()
    while any(p.poll() is None for p in procs):
        st = clat.status()
        samples.append({"t": round(time.monotonic() - t0, 1), "rss_kb": rss_kb(clat.pid),
                        "fds": fds(clat.pid), "flows": flows(st)})
        if not clat.running():
            break
        time.sleep(sample_every)
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=seconds + 120)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        try:
            results.append(json.loads(out.strip().splitlines()[-1]))
        except (IndexError, json.JSONDecodeError):
            results.append({"kind": "?", "ok": 0, "fail": 1, "bytes": 0, "rounds": 0,
                            "errors": {f"worker died rc={p.returncode}": 1,
                                       err.strip()[-200:]: 1}})
    return results, samples


def settle(clat: ClatProcess, timeout: float = 40.0):
    """Waits until no flow is live (closed TCP flows linger 10 s, mappings 3 s)."""
    wait_until(lambda: flows(clat.status()) == (0, 0, 0), timeout=timeout, interval=0.5,
               what="flow table empty")


def soak(seconds: float) -> int:
    sha = sha_1m()
    clat = ClatProcess(*CLAT_ARGS).start()
    failures = []
    try:
        # Warm-up: every kind once, so that lazily created things (DNS relay
        # sockets, allocator arenas) are part of the baseline.
        run_workers(3, sha, clat, sample_every=1)
        settle(clat)
        base_fds, base_rss = fds(clat.pid), rss_kb(clat.pid)
        st0 = clat.status()
        print(f"baseline: fds {base_fds}, VmRSS {base_rss} kB; load for {seconds:.0f}s: "
              + ", ".join(f"{n}x {k}" for k, n in MIX.items()), flush=True)
        t = time.monotonic()
        qd0, nd0 = tun_dropped(), nat64_dropped()
        results, samples = run_workers(seconds, sha, clat)
        print(f"  queue drops during load: CLAT TUN (phone clat0 tx_dropped) "
              f"{tun_dropped() - qd0}, lab NAT64 (plat nat64 tx_dropped) {nat64_dropped() - nd0}")
        took = time.monotonic() - t
        if not clat.running():
            failures.append(f"clat stopped during the soak:\n{clat.log()}")
            return report(failures, results, samples, {}, base_fds, base_rss, None, None, took)
        peak = {"fds": max(s["fds"] for s in samples), "rss_kb": max(s["rss_kb"] for s in samples),
                "flows": max(sum(s["flows"]) for s in samples)}
        t_settle = time.monotonic()
        try:
            settle(clat)
        except TimeoutError as e:
            failures.append(f"flows did not drain: {e}")
        settle_s = time.monotonic() - t_settle
        st1 = clat.status()
        end_fds, end_rss = fds(clat.pid), rss_kb(clat.pid)
        if end_fds != base_fds:
            failures.append(f"fd leak: {base_fds} -> {end_fds}")
        if end_rss > base_rss + RSS_SLACK_KB:
            failures.append(f"memory not returned: VmRSS {base_rss} -> {end_rss} kB")
        for r in results:
            if r["kind"] in TCP_KINDS or r["kind"] == "?":
                if r["fail"]:
                    failures.append(f"{r['kind']}: {r['fail']} failures {r['errors']}")
            elif any(not e.endswith("timeout") for e in r["errors"]):
                # Only losses (timeouts) have an allowance; corruption or a wrong source has none.
                failures.append(f"{r['kind']}: {r['errors']}")
            elif r["fail"] > max(1, (r["ok"] + r["fail"]) // 50):
                failures.append(f"{r['kind']}: {r['fail']} of {r['ok'] + r['fail']} failed "
                                f"{r['errors']}")
            if r["ok"] == 0:
                failures.append(f"{r['kind']}: nothing succeeded")
        delta = {k: status_int(st1, k) - status_int(st0, k) for k in st1
                 if k not in ("flows_tcp", "flows_udp", "flows_icmp")
                 and st1[k].isdigit() and k in st0 and st0[k].isdigit()}
        return report(failures, results, samples, delta, base_fds, base_rss,
                      (end_fds, end_rss, settle_s), peak, took)
    finally:
        clat.stop()


def report(failures, results, samples, delta, base_fds, base_rss, end, peak, took) -> int:
    by_kind: dict[str, dict] = {}
    for r in results:
        k = by_kind.setdefault(r["kind"], {"ok": 0, "fail": 0, "bytes": 0, "errors": {}})
        k["ok"] += r["ok"]
        k["fail"] += r["fail"]
        k["bytes"] += r["bytes"]
        for e, n in r["errors"].items():
            k["errors"][e] = k["errors"].get(e, 0) + n
    print(f"soak: {took:.0f}s of load")
    for kind, k in by_kind.items():
        print(f"  {kind:9s} ok {k['ok']:7d}  failed {k['fail']:4d}  "
              f"checked {k['bytes'] / 1e6:9.1f} MB  {k['errors'] or ''}")
    total = sum(k["bytes"] for k in by_kind.values())
    print(f"  total bytes verified by hash or comparison: {total / 1e6:.1f} MB")
    if peak:
        print(f"  peak during load: fds {peak['fds']}, VmRSS {peak['rss_kb']} kB, "
              f"live flows {peak['flows']}")
    if end:
        print(f"  baseline -> after settle ({end[2]:.1f}s): fds {base_fds} -> {end[0]}, "
              f"VmRSS {base_rss} -> {end[1]} kB, flows 0/0/0")
    if delta:
        keys = ("tun_rx_packets", "tun_tx_packets", "up_rx_bytes", "up_tx_bytes",
                "flows_tcp_total", "flows_udp_total", "flows_icmp_total", "flows_expired",
                "dns_queries", "dns_answers", "loop_wakeups")
        print("  counters: " + ", ".join(f"{k} {delta.get(k, 0)}" for k in keys))
        drops = {k: v for k, v in delta.items() if k.startswith("drop_") and v}
        print(f"  drops: {drops or 'none'}")
    if failures:
        print("SOAK FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("SOAK OK")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--minutes", type=float, default=10.0)
    g.add_argument("--seconds", type=float)
    ap.add_argument("--keep-lab", action="store_true")
    a = ap.parse_args()
    seconds = a.seconds if a.seconds is not None else a.minutes * 60
    if os.geteuid() != 0:
        print("soak: needs root (the lab's namespaces)", file=sys.stderr)
        return 2
    keep = a.keep_lab or os.environ.get("KEEP_LAB") == "1"
    if not (keep and labutil.lab("status", check=False).returncode == 0):
        labutil.lab("up")
    try:
        return soak(seconds)
    finally:
        if not keep:
            labutil.lab("down", check=False)


if __name__ == "__main__":
    sys.exit(main())
