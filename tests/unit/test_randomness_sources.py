"""No code draws randomness from numpy's or `random`'s generators; benchmark data is a keyed XOF."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mpcnet.bench.benchdata import BenchData

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = re.compile(r"np\.random\.|numpy\.random|default_rng|^\s*import random\b|^\s*from random import", re.M)


def test_library_and_roles_use_no_insecure_rng() -> None:
    offenders = [str(p.relative_to(ROOT)) for d in ("mpcnet", "nodes") for p in (ROOT / d).rglob("*.py")
                 if "/v1/" not in str(p) and FORBIDDEN.search(p.read_text())]
    assert offenders == []


def test_bench_data_is_deterministic_and_in_range() -> None:
    a, b = BenchData(7), BenchData(7)
    x = a.integers("x", -1000, 1000, 10_000)
    np.testing.assert_array_equal(x, b.integers("x", -1000, 1000, 10_000))
    assert x.min() >= -1000 and x.max() < 1000 and len(set(x.tolist())) > 1500
    assert not np.array_equal(x, a.integers("y", -1000, 1000, 10_000))
    u = a.uniform("u", -1.0, 1.0, 10_000)
    assert u.min() >= -1.0 and u.max() < 1.0 and abs(float(u.mean())) < 0.05
    s = a.sample("s", list(range(100)), 10)
    assert len(set(s)) == 10 and s == b.sample("s", list(range(100)), 10)
