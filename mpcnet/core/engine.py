"""One node's execution of a compiled :class:`~mpcnet.core.program.Plan`.

Pure: the engine never talks to the network.  The caller drives it layer by
layer::

    run = JobExecution(plan, party_index, n_parties, inputs, material)
    for layer in range(1, plan.layers + 1):
        mine = run.masked_shares(layer)          # this node's share of what the layer opens
        opened = <sum of every node's `mine`>    # one batched exchange
        run.absorb_opening(layer, opened)
    outputs = run.outputs()

Every opening instruction of a layer contributes a slice of one flat uint64
vector, so a layer is exactly one exchange however many multiplications,
truncations and elements it holds.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from mpcnet.core import beaver, truncation
from mpcnet.core.beaver import TripleShare
from mpcnet.core.preprocessing import Material
from mpcnet.core.program import Instr, IrCode, Plan
from mpcnet.core.ring import RingArray
from mpcnet.core.ring import wrapping as _wrapping
from mpcnet.core.truncation import TruncationPairShare
from mpcnet.fl.sampling import Draws


class ExecutionError(RuntimeError):
    """The plan cannot proceed (bad inputs, material, layer order or public value)."""


class JobExecution:
    def __init__(
        self,
        plan: Plan,
        party_index: int,
        n_parties: int,
        inputs: Mapping[str, RingArray],
        material: Sequence[Material],
        noise: Draws | None = None,
    ) -> None:
        """``noise``: where this node draws its shares of DP noise (plans with dp_* releases only); nodes pass
        OS entropy (``Draws.secure()``), tests a seeded stream."""
        if plan.releases and noise is None:
            raise ExecutionError("the plan releases differentially private statistics: a noise source is needed")
        if not 0 <= party_index < n_parties:
            raise ExecutionError(f"party index {party_index} outside 0..{n_parties - 1}")
        if len(material) != len(plan.material):
            raise ExecutionError(f"plan needs {len(plan.material)} material items, got {len(material)}")
        for name, t in plan.inputs.items():
            if name not in inputs:
                raise ExecutionError(f"input '{name}' is missing")
            if inputs[name].shape != t.shape or inputs[name].dtype != np.uint64:
                raise ExecutionError(f"input '{name}' has shape {inputs[name].shape}, plan expects {t.shape}")
        self.plan = plan
        self.party = party_index
        self.n = n_parties
        self.values: dict[str, RingArray] = {k: np.asarray(v) for k, v in inputs.items() if k in plan.inputs}
        self.public: dict[str, RingArray] = {}
        self.material = list(material)
        self.noise = noise
        self.done: set[int] = set()
        self.next_layer = 1
        self.opening: list[tuple[int, Instr, int, int]] = []  # (instruction index, instr, offset, size)
        self.prepared_layer = 0

    # -- local instructions -------------------------------------------------
    def _run_local(self, upto_layer: int) -> None:
        for idx, ins in enumerate(self.plan.instrs):
            if idx in self.done or ins.code.opens or ins.layer > upto_layer:
                continue
            self.values[ins.out] = np.asarray(self._local(ins), dtype=np.uint64)
            self.done.add(idx)

    @_wrapping()

    def _local(self, ins: Instr) -> RingArray:
        v = self.values
        if ins.code is IrCode.ADD:
            return v[ins.args[0]] + v[ins.args[1]]
        if ins.code is IrCode.SUB:
            return v[ins.args[0]] - v[ins.args[1]]
        if ins.code is IrCode.SCALE:
            return v[ins.args[0]] * np.uint64(ins.value % (1 << 64))
        if ins.code is IrCode.SUM:
            return np.asarray(np.sum(v[ins.args[0]], dtype=np.uint64), dtype=np.uint64)
        if ins.code is IrCode.RECIP_SCALE:
            d = int(self.public[ins.args[1]].view(np.int64))
            if d <= 0:
                raise ExecutionError(f"'{ins.out}': division by a non-positive public count")
            k = round((1 << ins.value) / d)
            return v[ins.args[0]] * np.uint64(k)
        if ins.code is IrCode.NOISE:
            from mpcnet.dp.noise import discrete_laplace_share
            assert self.noise is not None
            rel = self.plan.releases[ins.value]
            share = discrete_laplace_share(rel.parameter, self.n, max(1, int(np.prod(ins.shape, dtype=np.int64))),
                                           self.noise)
            return v[ins.args[0]] + share.astype(np.int64).view(np.uint64).reshape(ins.shape)
        raise ExecutionError(f"not a local instruction: {ins.code}")

    def _material(self, ins: Instr) -> Material:
        return self.material[ins.material]

    # -- openings -------------------------------------------------------------
    @_wrapping()
    def masked_shares(self, layer: int) -> RingArray:
        """This node's share of everything layer ``layer`` opens, as one flat vector."""
        if layer != self.next_layer or self.opening:
            raise ExecutionError(f"layer {layer} requested out of order (next is {self.next_layer})")
        self._run_local(layer - 1)
        parts: list[RingArray] = []
        self.opening = []
        offset = 0
        for idx, ins in enumerate(self.plan.instrs):
            if not ins.code.opens or ins.layer != layer:
                continue
            if ins.code is IrCode.BEAVER:
                m = self._material(ins)
                assert isinstance(m, TripleShare)
                d, e = beaver.masked_operands(self.values[ins.args[0]], self.values[ins.args[1]], m)
                chunk = [d.ravel(), e.ravel()]
            elif ins.code is IrCode.TRUNC:
                m = self._material(ins)
                assert isinstance(m, TruncationPairShare)
                chunk = [truncation.masked_value(self.values[ins.args[0]], m, self.party).ravel()]
            else:
                chunk = [self.values[ins.args[0]].ravel()]
            size = sum(c.size for c in chunk)
            self.opening.append((idx, ins, offset, size))
            parts.extend(chunk)
            offset += size
        self.prepared_layer = layer
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)

    @_wrapping()

    def absorb_opening(self, layer: int, opened: RingArray) -> None:
        """Finish layer ``layer`` from the opened (summed) vector."""
        if layer != self.next_layer or self.prepared_layer != layer:
            raise ExecutionError(f"opening for layer {layer} arrived out of order (masked_shares first)")
        expected = sum(size for _, _, _, size in self.opening)
        if opened.dtype != np.uint64:
            raise ExecutionError(f"layer {layer} opening has dtype {opened.dtype}, expected uint64")
        if opened.size != expected:
            raise ExecutionError(f"layer {layer} opened {opened.size} elements, expected {expected}")
        for idx, ins, offset, size in self.opening:
            part = opened[offset:offset + size]
            if ins.code is IrCode.BEAVER:
                m = self._material(ins)
                assert isinstance(m, TripleShare)
                na = m.a.size
                d = part[:na].reshape(m.a.shape)
                e = part[na:].reshape(m.b.shape)
                self.values[ins.out] = beaver.combine(d, e, m, self.party)
            elif ins.code is IrCode.TRUNC:
                m = self._material(ins)
                assert isinstance(m, TruncationPairShare)
                self.values[ins.out] = truncation.finish(part.reshape(m.r.shape), m, self.party)
            else:
                self.public[ins.out] = part.reshape(ins.shape).copy()
            self.done.add(idx)
        self.opening = []
        self.next_layer += 1

    def outputs(self) -> dict[str, RingArray]:
        """This node's shares of every output (after the last layer)."""
        if self.next_layer != self.plan.layers + 1:
            raise ExecutionError("outputs requested before every layer was opened")
        self._run_local(self.plan.layers)
        return {name: self.values[name] for name in self.plan.outputs}


def run_in_process(
    plan: Plan,
    input_shares: Sequence[Mapping[str, RingArray]],
    material: Sequence[Sequence[Material]],
    noise: Sequence[Draws] | None = None,
) -> list[dict[str, RingArray]]:
    """Run all parties in lockstep in one process (tests, conformance)."""
    n = len(input_shares)
    runs = [JobExecution(plan, i, n, input_shares[i], material[i], None if noise is None else noise[i])
            for i in range(n)]
    for layer in range(1, plan.layers + 1):
        mine = [r.masked_shares(layer) for r in runs]
        opened = mine[0].copy()
        for m in mine[1:]:
            opened += m
        for r in runs:
            r.absorb_opening(layer, opened)
    return [r.outputs() for r in runs]
