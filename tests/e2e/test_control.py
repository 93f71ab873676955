"""One control socket per `clat run` instance (issue 12 item 8).

`clat run --tun clat0` in two network namespaces used to share
/run/clat/clat0.sock: the second took it over, `clat status` reported the
wrong instance, and whichever exited first deleted the other's socket.  Now
the default is the abstract socket @clat/<tun>, which Linux scopes to the
network namespace, and a path given with --control is guarded by an flock.

These tests make two namespaces of their own (no lab needed), so the
default socket names they use belong to them alone.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest

from labutil import ClatProcess, LAB_RUN, clat_binary, ns


def _ns_names():
    tag = uuid.uuid4().hex[:6]
    return f"clatctl-a-{tag}", f"clatctl-b-{tag}"


@pytest.fixture
def two_netns():
    names = _ns_names()
    for n in names:
        subprocess.run(["ip", "netns", "add", n], check=True)
        ns(n, "ip", "link", "set", "lo", "up")
    started = []
    yield names, started
    for p in started:
        p.stop()
    for n in names:
        subprocess.run(["ip", "netns", "del", n], check=False)


def status(netns, *extra, check=True):
    p = ns(netns, str(clat_binary()), "status", *extra, check=False, timeout=10)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def field(text, key):
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k == key:
            return v
    raise KeyError(key)


def test_same_tun_name_in_two_namespaces(two_netns):
    (a, b), started = two_netns
    ca = ClatProcess("--mtu", "1400", netns=a)
    started.append(ca)
    ca.start()
    cb = ClatProcess("--mtu", "1500", netns=b)
    started.append(cb)
    cb.start()
    # Each namespace's `clat status` finds its own instance.
    assert field(status(a).stdout, "mtu") == "1400"
    assert field(status(b).stdout, "mtu") == "1500"
    # A second instance in the same namespace (another TUN, same socket
    # name) is refused and leaves the first one's socket alone.
    p = ns(a, str(clat_binary()), "run", "--tun", "clat9", "--pref64", "2001:db8:64::/96",
           "--dns", "2001:db8:1::53", "--control", "@clat/clat0", check=False, timeout=15)
    assert p.returncode == 1, p.stderr
    assert "control socket @clat/clat0 is in use" in p.stderr, p.stderr
    assert field(status(a).stdout, "mtu") == "1400"
    # An abstract socket has no file permissions: only root (and clat's own
    # user) are answered, as with the root-owned socket file before.
    p = ns(a, "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
           str(clat_binary()), "status", check=False, timeout=10)
    assert p.returncode == 1 and "may not ask" in p.stderr and p.stdout == "", p
    # The first to exit takes only its own socket with it.
    assert ca.stop() == 0
    assert status(a, check=False).returncode != 0
    assert field(status(b).stdout, "mtu") == "1500"


def test_a_path_socket_is_never_taken_over_or_deleted_by_another(two_netns):
    (a, b), started = two_netns
    d = LAB_RUN / f"ctl-{os.getpid()}-{int(time.time())}"
    d.mkdir(parents=True, exist_ok=True)
    path = str(d / "clat.sock")
    ca = ClatProcess("--mtu", "1400", netns=a, control=path)
    started.append(ca)
    ca.start()
    cb = ClatProcess("--mtu", "1500", netns=b, control=path)
    p = ns(b, str(cb.binary), *cb.args, check=False, timeout=15)
    assert p.returncode == 1, p.stderr
    assert f"control socket {path} belongs to another running `clat run`" in p.stderr, p.stderr
    assert os.path.exists(path)
    # From either namespace the path reaches the one instance that owns it.
    assert field(status(b, "--control", path).stdout, "mtu") == "1400"
    ca.stop()
    assert not os.path.exists(path)
