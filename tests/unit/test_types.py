"""Static types: the pure core is `mypy --strict` clean; the rest type-checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_core_is_mypy_strict_clean() -> None:
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "mpcnet/core"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout


def test_library_and_roles_type_check() -> None:
    out = subprocess.run([sys.executable, "-m", "mypy", "mpcnet", "nodes"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout
