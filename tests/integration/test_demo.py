"""`make demo`'s program: exit 0, every check passes, no process left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mpcnet.cluster import REPO_ROOT

pytestmark = pytest.mark.integration


def processes_mentioning(text: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if text.encode() in (d / "environ").read_bytes():
                found.append(int(d.name))
        except OSError:
            continue
    return found


def test_demo_passes_and_leaves_no_orphans() -> None:
    out = subprocess.run([sys.executable, "-m", "mpcnet.cli", "demo"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, COLUMNS="160"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "all checks passed" in out.stdout
    assert "1.857" in out.stdout and "2.2857" in out.stdout
    assert "who saw what" in out.stdout and "still running: none" in out.stdout
    # The SecAgg round: clients 6 and 8 SIGKILLed, the others' sum exact.
    assert "sum over clients [1, 2, 3, 4, 5, 7]: exact" in out.stdout
    assert "[0, -9, -9]" in out.stdout
    workdir = re.search(r"workdir (\S+)\)", out.stdout).group(1)
    assert processes_mentioning(workdir) == []
