"""One app cannot deny TCP to the others (issue 12 item 7, DESIGN.md
"Fidelity"): 10 s of SYNs from every source port towards a destination that
never answers fill the flow table with flows that never complete; a normal
connection and a download made 1 s later must succeed all the same (the
oldest incomplete flows are evicted, as conntrack's early drop does), the
evictions are counted and the engine's memory stays bounded.

The destination is made silent by an nft rule in a table of the test's own
in ``inet``, deleted afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from labutil import INET, LAB_RUN, PHONE, PORT_HTTP, SERVER, ns, ns_popen, status_int

HERE = Path(__file__).resolve().parent
INJECT = str(HERE / "hostile_inject.py")
PORT_SILENT = 7097
MAX_FLOWS = 4000


def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise KeyError("VmRSS")


def served_sha256(name: str) -> str:
    for line in (LAB_RUN / "www" / "SHA256SUMS").read_text().splitlines():
        digest, fname = line.split()
        if fname == name:
            return digest
    raise KeyError(name)


def test_syn_flood_to_a_silent_host_does_not_starve_new_connections(own_clat):
    clat = own_clat("--max-flows", str(MAX_FLOWS))
    table = f"clattest_flood_{os.getpid()}"
    ns(INET, "nft", "add", "table", "inet", table)
    try:
        ns(INET, "nft", f"add chain inet {table} input {{ type filter hook input priority 0; }}")
        ns(INET, "nft", f"add rule inet {table} input tcp dport {PORT_SILENT} drop")
        rss0 = vm_rss_kb(clat.pid)
        flood = ns_popen(PHONE, sys.executable, INJECT, "synflood", "--dst", SERVER,
                         "--port", str(PORT_SILENT), "--seconds", "10",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak_tcp = peak_rss = 0
        while flood.poll() is None:
            st = clat.status()
            peak_tcp = max(peak_tcp, status_int(st, "flows_tcp"))
            peak_rss = max(peak_rss, vm_rss_kb(clat.pid))
            time.sleep(0.5)
        fout, ferr = flood.communicate(timeout=30)
        sent = json.loads(fout)["sent"]
        assert sent > 20000, f"flood too slow to mean anything: {fout} {ferr}"
        time.sleep(1)
        st = clat.status()
        # The table is full of flows that never completed.
        assert status_int(st, "flows_tcp") >= MAX_FLOWS - 10, st
        assert peak_tcp <= MAX_FLOWS, peak_tcp
        # A normal connection and a download, 1 s after the flood.
        p = ns(PHONE, "curl", "-sS", "--fail", "-m", "10", "-o", "/dev/null", "-w",
               "%{http_code}", f"http://{SERVER}/index.html", check=False)
        assert p.stdout == "200", (p.stdout, p.stderr, clat.status())
        out = ns(PHONE, "sh", "-c", f"curl -sS --fail -m 30 http://{SERVER}/1M | sha256sum",
                 timeout=40).stdout
        assert out.split()[0] == served_sha256("1M"), out
        st = clat.status()
        evicted = status_int(st, "flows_evicted")
        assert evicted > 10000, (evicted, sent, st)
        assert peak_rss - rss0 < 64 * 1024, f"VmRSS {rss0} -> {peak_rss} kB"
        assert clat.running(), clat.log()
        print(f"flood: {sent} SYNs sent, {status_int(st, 'tun_rx_packets')} packets read by "
              f"the engine, {status_int(st, 'tcp_syns_absorbed')} SYNs absorbed, peak "
              f"flows_tcp {peak_tcp}, evicted {evicted}, VmRSS {rss0} -> {peak_rss} kB")
    finally:
        ns(INET, "nft", "delete", "table", "inet", table, check=False)
