"""`mpcnet bench secagg` works end to end at a small size, mpcnet side only.

The Flower side needs flwr 1.42 in its own venv (`make flower-venv`: flwr pins
protobuf < 7) and belongs to the benchmark run, not to the test suite; this
test always passes --no-flower, so it runs the same everywhere.

Only correctness and the shape of the report are asserted: timings belong to benchmarks, not tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpcnet.cluster import REPO_ROOT

pytestmark = pytest.mark.integration


def test_bench_secagg_small(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "mpcnet.cli", "bench", "secagg", "--clients", "8", "--dim", "50", "--dropout",
           "0.15", "--graph", "sparse", "--client-procs", "3", "--stage-deadline", "120", "--out", str(tmp_path)]
    cmd.append("--no-flower")
    out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, COLUMNS="140"))
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads((tmp_path / "secagg-sparse-n8-d50-latest.json").read_text())
    ours = data["mpcnet"]
    assert ours["exact_sum"] and ours["dropped"] == 1 and ours["included"] == 7
    assert ours["bytes_per_client"] > 50 * 4 and ours["expansion"] > 1
    assert ours["round_s"] > 0 and ours["dropout_close_lag_s"] < ours["stage_deadline_s"]
    assert ours["bytes_per_client_excl_result"] == ours["bytes_per_client"] - ours["result_bytes_per_client"]
    assert data["machine"]["cores"] >= 1
