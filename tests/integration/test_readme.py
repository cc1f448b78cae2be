"""The README's SDK example runs and prints what it says."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from mpcnet.cluster import REPO_ROOT

pytestmark = pytest.mark.integration


def test_readme_sdk_example_runs() -> None:
    text = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    example = next(b for b in blocks if "mpcnet.connect" in b)
    out = subprocess.run([sys.executable, "-c", example], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "[ 6.  -2.  -1.5]"
    assert lines[1] == "2.5"
