"""Known-answer transcripts of whole rounds: generate with
``python -m mpcnet.secagg.vectors --out tests/vectors/secagg``.

Each scenario runs :func:`~mpcnet.secagg.driver.run_round` with a fixed
seed and writes ``<name>.json``: the parameters, inputs and drops, then every
message in delivery order (stage, sender, receiver -- 0 is the server --,
type and the canonical bytes of :mod:`~mpcnet.secagg.encoding` in hex), then
the outcome: ``{"sum": [...]}`` or ``{"abort": {"stage", "survivors",
"threshold"}}``.  The unit tests regenerate every file and compare it byte
for byte; regenerate on purpose only when the protocol changes.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mpcnet.secagg.driver import TranscriptEntry, run_round, signing_keys_for, verify_keys_for
from mpcnet.secagg.errors import InsufficientSurvivors
from mpcnet.secagg.graph import GraphKind
from mpcnet.secagg.params import SecAggParams
from mpcnet.secagg.stage import Stage

SEED = bytes(range(32))
GRAPH_SEED = bytes(range(100, 132))


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    n: int
    threshold: int
    drops: dict[Stage, tuple[int, ...]] = field(default_factory=dict)
    length: int = 4
    bits: int = 32
    graph_kind: GraphKind = GraphKind.COMPLETE
    degree: int = 0
    active: bool = False


SCENARIOS = (
    Scenario("a_no_dropout", "SecAgg, n=5, t=3, nobody drops", 5, 3),
    Scenario("b_dropout_after_share_keys", "client 2 drops after ShareKeys (no masked input)", 5, 3,
             {Stage.MASKED_INPUT_COLLECTION: (2,)}),
    Scenario("c_dropout_after_masked_input", "clients 1 and 4 drop after MaskedInputCollection", 5, 3,
             {Stage.UNMASKING: (1, 4)}),
    Scenario("d_abort_below_threshold", "2 drop before ShareKeys, 1 more before masked input: abort", 5, 3,
             {Stage.SHARE_KEYS: (1, 2), Stage.MASKED_INPUT_COLLECTION: (3,)}),
    # active mode runs on the complete graph with t > n/2 only (SecAggParams); SecAgg+ is in the network tests
    Scenario("e_secagg_active", "SecAgg (n=8, t=5), active mode, drops at two stages", 8, 5,
             {Stage.MASKED_INPUT_COLLECTION: (3,), Stage.UNMASKING: (6,)}, active=True),
)


def scenario_inputs(sc: Scenario) -> dict[int, np.ndarray[Any, np.dtype[np.uint64]]]:
    mod = 1 << sc.bits
    return {cid: np.array([(cid * 1000003 + j * 7919) % mod for j in range(sc.length)], dtype=np.uint64)
            for cid in range(1, sc.n + 1)}


def build(sc: Scenario) -> dict[str, Any]:
    ids = tuple(range(1, sc.n + 1))
    signing = signing_keys_for(ids, SEED) if sc.active else None
    params = SecAggParams(
        round_id=f"vectors/{sc.name}", client_ids=ids, threshold=sc.threshold, vector_length=sc.length,
        bits=sc.bits, graph_kind=sc.graph_kind, degree=sc.degree,
        graph_seed=GRAPH_SEED if sc.graph_kind is GraphKind.REGULAR else bytes(32), active=sc.active,
        verify_keys=verify_keys_for(signing) if signing is not None else ())
    inputs = scenario_inputs(sc)
    transcript: list[TranscriptEntry] = []
    outcome: dict[str, Any]
    try:
        total = run_round(inputs, params, {s: set(v) for s, v in sc.drops.items()}, SEED,
                          signing_keys=signing, transcript=transcript)
        outcome = {"sum": [int(v) for v in total]}
    except InsufficientSurvivors as exc:
        outcome = {"abort": {"stage": exc.stage.value, "survivors": exc.survivors, "threshold": exc.threshold}}
    return {
        "name": sc.name,
        "description": sc.description,
        "seed": SEED.hex(),
        "params": {
            "round_id": params.round_id, "client_ids": list(ids), "threshold": params.threshold,
            "vector_length": params.vector_length, "bits": params.bits, "graph_kind": params.graph_kind.value,
            "degree": params.effective_degree, "graph_seed": params.graph_seed.hex(), "active": params.active,
            "verify_keys": [k.hex() for k in params.verify_keys],
        },
        "inputs": {str(cid): [int(v) for v in vec] for cid, vec in inputs.items()},
        "drops": {s.value: list(v) for s, v in sc.drops.items()},
        "messages": [{"stage": e.stage.value, "from": e.sender, "to": e.receiver, "type": e.type,
                      "hex": e.data.hex()} for e in transcript],
        "outcome": outcome,
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, sort_keys=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="directory for the JSON files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for sc in SCENARIOS:
        path = args.out / f"{sc.name}.json"
        path.write_text(render(build(sc)))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
