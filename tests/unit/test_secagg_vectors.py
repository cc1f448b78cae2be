"""Known-answer transcripts in tests/vectors/secagg: regenerate and compare byte for byte.

To regenerate on purpose: python -m mpcnet.secagg.vectors --out tests/vectors/secagg
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mpcnet.secagg.encoding import decode, encode
from mpcnet.secagg.vectors import SCENARIOS, Scenario, build, render, scenario_inputs

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "secagg"


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s.name)
def test_vector_file_replays_exactly(sc: Scenario) -> None:
    stored = (VECTORS / f"{sc.name}.json").read_text()
    assert render(build(sc)) == stored


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s.name)
def test_vector_file_is_self_consistent(sc: Scenario) -> None:
    doc = json.loads((VECTORS / f"{sc.name}.json").read_text())
    for m in doc["messages"]:
        data = bytes.fromhex(m["hex"])
        assert encode(decode(data)) == data
        size = int.from_bytes(data[:4], "big")
        assert json.loads(data[4:4 + size])["type"] == m["type"]
    if "sum" in doc["outcome"]:
        dropped_before_input = {c for s, ids in doc["drops"].items() if s in (
            "advertise_keys", "share_keys", "masked_input_collection") for c in ids}
        inputs = scenario_inputs(sc)
        want = sum((inputs[c].astype(object) for c in inputs if c not in dropped_before_input),
                   np.zeros(sc.length, dtype=object))
        assert doc["outcome"]["sum"] == [int(v) % (1 << sc.bits) for v in want]
        assert doc["messages"][-1]["type"] == "secagg.UnmaskingResponse"
    else:
        assert doc["outcome"]["abort"]["survivors"] < doc["outcome"]["abort"]["threshold"]
        assert not any(m["type"].startswith("secagg.Unmasking") for m in doc["messages"])


def test_expected_scenarios_present() -> None:
    names = {p.stem for p in VECTORS.glob("*.json")}
    assert names == {sc.name for sc in SCENARIOS}
    assert {"a_no_dropout", "b_dropout_after_share_keys", "c_dropout_after_masked_input",
            "d_abort_below_threshold"} <= names
