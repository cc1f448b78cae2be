"""The SecAgg vectors `mpcnet conformance` ships are the test vectors, byte for byte."""

from __future__ import annotations

from mpcnet.cluster import REPO_ROOT
from mpcnet.conformance import REPLAYABLE, VECTORS


def test_shipped_vectors_equal_the_test_vectors() -> None:
    for name in REPLAYABLE:
        shipped = (VECTORS / f"{name}.json").read_bytes()
        assert shipped == (REPO_ROOT / "tests" / "vectors" / "secagg" / f"{name}.json").read_bytes(), name
    assert sorted(p.stem for p in VECTORS.glob("*.json")) == sorted(REPLAYABLE)
