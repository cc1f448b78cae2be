"""The README's SDK example runs and prints what it says."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from mpcnet.cluster import REPO_ROOT

pytestmark = pytest.mark.integration


def _run_example(marker: str, timeout_s: float = 120) -> list[str]:
    """The output lines of the README's python block that contains ``marker``, run as it stands."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), re.S)
    example = next(b for b in blocks if marker in b)
    out = subprocess.run([sys.executable, "-c", example], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=timeout_s)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_readme_sdk_example_runs() -> None:
    lines = _run_example("mpcnet.connect")
    assert lines[0] == "[ 6.  -2.  -1.5]"
    assert lines[1] == "2.5"


def test_readme_dp_statistics_example_runs() -> None:
    lines = _run_example("dp_mean")
    mean_age, smokers = lines[0].split()
    # noise scales 1.2 (mean: 120 / 200 / 0.5) and 2 (count): 20 and 40 are ~16-20 scales away
    assert abs(float(mean_age) - 49.625) < 20 and abs(int(smokers) - 75) < 40
    assert lines[1].startswith("mean_age 0.5 0.6 {'party:alice': ")
    assert lines[2] == "smokers 0.5 1.0 {'party:alice': 9.0}"


def test_readme_fedavg_sdk_example_runs() -> None:
    accuracy, receipt = _run_example("run_fedavg", 240)
    curve = [float(a) for a in accuracy.split(" -> ")]
    # 5 rounds at epsilon 8 with 10 clients: 0.90-0.98 in 6 runs on 2026-12-03; the majority class is 0.63
    assert len(curve) == 6 and curve[-1] > 0.8
    assert receipt == "gaussian (central) 8.0"
