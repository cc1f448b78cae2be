"""Conversions between protobuf messages and core types (transport boundary)."""

from __future__ import annotations

from mpcnet.core.program import NAME_RE, Op, OpCode, Program, ProgramError, SecretType
from typing import Mapping

from mpcnet.errors import InvalidInput, PermissionDenied
from mpcnet.v1 import mpc_pb2 as pb


def program_to_proto(program: Program) -> pb.Program:
    ops = []
    for op in program.ops:
        msg = pb.Operation(code=op.code.value, out=op.out, args=op.args, counts=op.counts)
        if op.public is not None:
            msg.public_value = op.public
        if op.sensitivity is not None:
            msg.sensitivity = op.sensitivity
        ops.append(msg)
    outs = [pb.OutputSpec(name=k, readers=v) for k, v in program.outputs.items()]
    return pb.Program(ops=ops, outputs=outs)


def program_from_proto(msg: pb.Program) -> Program:
    ops = []
    for o in msg.ops:
        try:
            code = OpCode(o.code)
        except ValueError:
            raise InvalidInput(f"unknown operation {o.code!r}; known: {[c.value for c in OpCode]}") from None
        ops.append(Op(code, o.out, tuple(o.args), o.public_value if o.HasField("public_value") else None,
                      tuple(o.counts), o.sensitivity if o.HasField("sensitivity") else None))
    outputs: dict[str, tuple[str, ...]] = {}
    for out in msg.outputs:
        if out.name in outputs:
            raise InvalidInput(f"output '{out.name}' listed twice")
        outputs[out.name] = tuple(out.readers)
    return Program(ops, outputs)


def secret_type(spec: pb.SecretSpec, frac_bits: int, max_elements: int) -> SecretType:
    """Validate a declared secret's name, shape and type."""
    if not NAME_RE.match(spec.name):
        raise InvalidInput(f"invalid secret name {spec.name!r}: use letters, digits, '_', '.', '-' (max 64)")
    shape = tuple(int(s) for s in spec.shape)
    if len(shape) > 2 or any(s <= 0 for s in shape):
        raise InvalidInput(f"secret '{spec.name}': shape {shape} must have 0-2 positive dimensions")
    frac = int(spec.frac_bits)
    limit = 2.0 ** (62 - frac)
    bound = float(spec.bound) or limit
    if not (0 < bound <= limit) or bound != bound:
        raise InvalidInput(f"secret '{spec.name}': bound must be in (0, 2^{62 - frac}]")
    t = SecretType(shape, frac, bound, bool(spec.nonnegative), bool(spec.dp_only))
    if t.size > max_elements:
        raise InvalidInput(f"secret '{spec.name}': {t.size} elements exceed the cluster limit of {max_elements}")
    if t.frac_bits not in (0, frac_bits):
        raise InvalidInput(f"secret '{spec.name}': frac_bits must be 0 (integer) or {frac_bits} (fixed point)")
    return t


def check_output_readers(outputs: Mapping[str, tuple[str, ...]], owners: Mapping[str, str]) -> None:
    """An input may be output as it is only to its own owner: a program cannot reveal
    another party's raw input (computed outputs go to whoever the program names)."""
    for name, readers in outputs.items():
        owner = owners.get(name)
        if owner is not None and any(r != owner for r in readers):
            raise PermissionDenied(f"output '{name}' is the raw input of '{owner}' and can be revealed only to "
                                   "its owner")


__all__ = ["program_to_proto", "program_from_proto", "secret_type", "check_output_readers", "ProgramError"]
