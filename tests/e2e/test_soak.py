"""A 60-second version of the soak (tests/soak/soak.py): mixed TCP (hash
checked downloads and uploads, connection churn), UDP echo, ICMP echo and DNS
through one CLAT with short timeouts; afterwards the flow gauges drain to 0,
the file descriptors return to the baseline and memory stays bounded.
The 10-minute run is `sudo python3 tests/soak/soak.py`."""

import os
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[1] / "soak" / "soak.py"


def test_soak_60s(no_clat):
    p = subprocess.run([sys.executable, str(SOAK), "--seconds", "60", "--keep-lab"],
                       capture_output=True, text=True, timeout=400,
                       env={**os.environ, "KEEP_LAB": "1"})
    print(p.stdout)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SOAK OK" in p.stdout
