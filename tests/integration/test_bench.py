"""`mpcnet bench` works end to end at a small size, MPyC side included.

Only correctness and the shape of the report are asserted: timings belong to
benchmarks, not tests.
"""

from __future__ import annotations

import json
import os
import sys
import subprocess

import pytest

from mpcnet.cluster import REPO_ROOT

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("workload", ["mul", "dot"])
def test_bench_small_with_mpyc(workload: str, tmp_path) -> None:
    out = subprocess.run([sys.executable, "-m", "mpcnet.cli", "bench", workload, "--size", "2000", "--repeats", "1",
                          "--out", str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, COLUMNS="120"))
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads((tmp_path / f"{workload}-2000-latest.json").read_text())
    assert data["mpyc"] is not None, data["mpyc_error"]
    assert set(data["ratios_mpyc_over_mpcnet"]) == {"compute_online", "compute_incl_preprocessing", "end_to_end"}
    assert all(v > 0 for v in data["ratios_mpyc_over_mpcnet"].values())
    assert data["machine"]["cores"] >= 1 and data["mpcnet"]["peak_rss_mb_per_node"] > 0
    assert "MPyC / mpcnet" in out.stdout
