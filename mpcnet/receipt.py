"""The privacy receipt: who saw what, for a released MPC result."""

from __future__ import annotations

from typing import Any, Mapping

from mpcnet.core.program import IrCode, Plan, SecretType


def job_receipt(job_id: str, plan: Plan, inputs: Mapping[str, tuple[SecretType, str]], n_nodes: int) -> dict[str, Any]:
    beaver = sum(1 for i in plan.instrs if i.code is IrCode.BEAVER)
    trunc = sum(1 for i in plan.instrs if i.code is IrCode.TRUNC)
    return {
        "job_id": job_id,
        "layers": ["additive secret sharing over Z_2^64 among %d compute nodes" % n_nodes],
        "trust_assumptions": "semi-honest, non-colluding compute nodes (any %d of %d learn nothing); "
                             "trusted dealer (sees triples, never inputs)" % (n_nodes - 1, n_nodes),
        "inputs": [{"name": k, "owner": o, "seen_in_clear_by": [o],
                    "each_node_holds": "one uniformly random additive share",
                    "public": f"shape {list(t.shape)}, {'integer' if t.frac_bits == 0 else 'fixed point'}, "
                              f"declared bound |x| <= {t.bound:g}"} for k, (t, o) in inputs.items()],
        "opened_to_nodes": (
            [f"{beaver} Beaver mask pair(s) d=x-a, e=y-b (uniformly random)"] if beaver else []
        ) + ([f"{trunc} truncation mask(s) x+r (uniformly random)"] if trunc else [])
        + list(plan.opened_to_nodes),
        "outputs": [{"name": k, "revealed_to": list(v)} for k, v in plan.outputs.items()],
        "coordinator_saw": "program, input names, shapes and owners, timings; no values",
        "dealer_saw": "material shapes and its own random triples; no inputs or outputs",
        "differential_privacy": "none (exact result)",
        "multiplication_layers": plan.layers,
    }
