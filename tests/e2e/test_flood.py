"""One app cannot deny TCP to the others (issue 12 item 7, DESIGN.md
"Fidelity"): 10 s of SYNs from every source port towards a destination that
never answers fill the flow table (or, with a low RLIMIT_NOFILE, the
engine's descriptors: each pending upstream connect holds one) with flows
that never complete; a normal connection and a download made 1 s later must
succeed all the same (the oldest incomplete flows are evicted, as
conntrack's early drop does), the evictions are counted and the engine's
memory stays bounded.

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

from labutil import (INET, PHONE, PORT_ECHO, PORT_HTTP, SERVER, ns, ns_popen,
                     ns_python, served_sha256, status_int, vm_rss_kb)

HERE = Path(__file__).resolve().parent
INJECT = str(HERE / "hostile_inject.py")
PORT_SILENT = 7097
MAX_FLOWS = 4000


def silent_port_flood(clat, max_tcp: int, fd_limit: int = 0) -> dict:
    """10 s of SYNs from every source port to SERVER:PORT_SILENT (dropped
    in inet), then, 1 s later, a connection and a 1 MB download that must
    succeed. With ``fd_limit`` the engine's RLIMIT_NOFILE is that low during
    the flood and the download; `clat status` (which needs a descriptor of
    the same process) is read only after it is raised again. Returns the
    last status."""
    table = f"clattest_flood_{os.getpid()}"
    ns(INET, "nft", "add", "table", "inet", table)
    try:
        ns(INET, "nft", f"add chain inet {table} input {{ type filter hook input priority 0; }}")
        ns(INET, "nft", f"add rule inet {table} input tcp dport {PORT_SILENT} drop")
        rss0 = vm_rss_kb(clat.pid)
        if fd_limit:
            prlimit(clat.pid, fd_limit)
        flood = ns_popen(PHONE, sys.executable, INJECT, "synflood", "--dst", SERVER,
                         "--port", str(PORT_SILENT), "--seconds", "10",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak_tcp = peak_rss = 0
        while flood.poll() is None:
            if not fd_limit:
                peak_tcp = max(peak_tcp, status_int(clat.status(), "flows_tcp"))
            peak_rss = max(peak_rss, vm_rss_kb(clat.pid))
            time.sleep(0.5)
        fout, ferr = flood.communicate(timeout=30)
        sent = json.loads(fout)["sent"]
        assert sent > 20000, f"flood too slow to mean anything: {fout} {ferr}"
        time.sleep(1)
        if fd_limit:
            # Every descriptor the limit allows is taken.
            assert len(os.listdir(f"/proc/{clat.pid}/fd")) >= fd_limit - 5
        else:
            # The table is full of flows that never completed.
            st = clat.status()
            assert status_int(st, "flows_tcp") >= max_tcp - 10, st
            assert peak_tcp <= max_tcp, peak_tcp
        # A new UDP mapping, 1 s after the flood: the table (or the
        # descriptors) full of TCP flows that never completed must give one
        # up for it too.
        ns_python(PHONE, f"""
import os, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
m = os.urandom(32); s.sendto(m, ("{SERVER}", {PORT_ECHO}))
assert s.recvfrom(100)[0] == m
""", timeout=15)
        # A normal connection and a download, 1 s after the flood.
        p = ns(PHONE, "curl", "-sS", "--fail", "-m", "10", "-o", "/dev/null", "-w",
               "%{http_code}", f"http://{SERVER}/index.html", check=False)
        assert p.stdout == "200", (p.stdout, p.stderr, clat.status())
        out = ns(PHONE, "sh", "-c", f"curl -sS --fail -m 30 http://{SERVER}/1M | sha256sum",
                 timeout=40).stdout
        assert out.split()[0] == served_sha256("1M"), out
        if fd_limit:
            prlimit(clat.pid, 20000)
        st = clat.status()
        evicted = status_int(st, "flows_evicted")
        assert evicted > 10000, (evicted, sent, st)
        assert peak_rss - rss0 < 64 * 1024, f"VmRSS {rss0} -> {peak_rss} kB"
        assert clat.running(), clat.log()
        print(f"flood: {sent} SYNs sent, {status_int(st, 'tun_rx_packets')} packets read by "
              f"the engine, {status_int(st, 'tcp_syns_absorbed')} SYNs absorbed, peak "
              f"flows_tcp {'not read' if fd_limit else peak_tcp}, evicted {evicted}, VmRSS {rss0} -> {peak_rss} kB")
        return st
    finally:
        ns(INET, "nft", "delete", "table", "inet", table, check=False)


def prlimit(pid: int, nofile: int) -> None:
    """Sets the soft RLIMIT_NOFILE of ``pid`` (the hard one stays, so it can
    be raised again)."""
    subprocess.run(["prlimit", "--pid", str(pid), f"--nofile={nofile}:"], check=True)


def test_syn_flood_to_a_silent_host_does_not_starve_new_connections(own_clat):
    clat = own_clat("--max-flows", str(MAX_FLOWS))
    silent_port_flood(clat, MAX_FLOWS)


def test_syn_flood_out_of_descriptors_does_not_starve_new_connections(own_clat):
    """The same with the engine's descriptors, not its table, running out
    first (RLIMIT_NOFILE 300 against --max-flows 4000: each pending upstream
    connect holds one): a flow whose connect is pending gives its descriptor
    up for the new one, and for accept()."""
    clat = own_clat("--max-flows", str(MAX_FLOWS))
    st = silent_port_flood(clat, MAX_FLOWS, fd_limit=300)
    assert status_int(st, "flows_tcp") < 300, st
