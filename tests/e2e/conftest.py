"""pytest fixtures for the lab end-to-end tests.

- ``lab`` (session): brings the namespaces up once with tests/lab/lab.sh up and
  tears them down at the end, unless KEEP_LAB=1 (handy while debugging).
- ``clat`` (session): one ``clat run`` in phone shared by the tests that need
  only the default configuration.  Tests that need special options (short
  timeouts, SIGTERM) start their own ClatProcess on another TUN name or after
  this one is stopped.

Everything here needs root (namespaces, TUN); without root the run stops with a
usage error (exit status 4) instead of skipping every test and passing.
"""

from __future__ import annotations

import os
import shutil

import pytest

import labutil


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0 and items:
        raise pytest.UsageError("the lab tests need root (network namespaces, TUN): run them as root")


@pytest.fixture(scope="session")
def lab():
    """The three lab namespaces with all their servers running."""
    if shutil.which("ip") is None:
        pytest.fail("iproute2 (`ip`) is missing: run tests/lab/install-deps.sh")
    # With KEEP_LAB=1 a lab that is already up and healthy is reused, which
    # makes the edit-run loop fast while debugging; otherwise always rebuild.
    if not (os.environ.get("KEEP_LAB") == "1" and labutil.lab("status", check=False).returncode == 0):
        labutil.lab("up")
    yield labutil
    if os.environ.get("KEEP_LAB") != "1":
        labutil.lab("down", check=False)


_shared = {}


@pytest.fixture(scope="session")
def clat_session(lab):
    proc = labutil.ClatProcess()
    proc.start()
    _shared["clat"] = proc
    yield proc
    proc.stop()
    _shared.pop("clat", None)


@pytest.fixture
def no_clat(lab):
    """The lab as it is without a CLAT: stops the shared one if it runs (the
    next test that asks for ``clat`` gets it back)."""
    proc = _shared.get("clat")
    if proc is not None:
        proc.stop()
    return lab


@pytest.fixture
def clat(clat_session):
    """The shared running CLAT, started again when a test stopped it on purpose
    (``no_clat``, ``own_clat``). A CLAT that exited on its own is never
    restarted silently: it fails the test during which it died (teardown), or
    the next test that asks for it when it died in between."""
    if clat_session.proc is not None and not clat_session.running() and not clat_session.stopped:
        pytest.fail(f"the shared clat exited on its own ({clat_session.proc.returncode}) "
                    f"since the last test that used it:\n{clat_session.log()}")
    if not clat_session.running() or not clat_session.ready():
        clat_session.stop()
        clat_session.__init__()
        clat_session.start()
    yield clat_session
    if not clat_session.running() and not clat_session.stopped:
        pytest.fail(f"the shared clat exited on its own ({clat_session.proc.returncode}) "
                    f"during this test:\n{clat_session.log()}")


@pytest.fixture
def own_clat(lab, clat_session):
    """For tests that run a CLAT with special options: the shared one is
    stopped first (two CLATs would fight over the IPv4 default route) and
    comes back for the next test that asks for ``clat``.

    Returns a factory: ``own_clat("--udp-timeout", "2s")`` -> started ClatProcess,
    stopped again at teardown.
    """
    clat_session.stop()
    started = []

    def start(*extra, **kw):
        p = labutil.ClatProcess(*extra, **kw)
        started.append(p)
        return p.start()

    yield start
    for p in started:
        p.stop()




@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, attach the tail of the CLAT's log to the report: the
    engine's own account is usually the fastest way to the cause."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for name in ("clat_session", "clat"):
            proc = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if isinstance(proc, labutil.ClatProcess):
                rep.sections.append((f"clat log ({proc.log_path})", proc.log()[-4000:]))
                break
