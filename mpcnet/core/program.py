"""Job programs over named secrets, their type checking and compilation.

A :class:`Program` is what a user writes: a short list of operations over
named secrets (add, sub, mul_public, mul, dot, matmul, sum, mean,
weighted_average) and the outputs with the parties allowed to read them.

:func:`compile_program` turns it, given the shapes and scales of the inputs,
into a :class:`Plan`: a list of primitive instructions, each either *local*
(no communication) or an *opening* (Beaver masks, truncation masks, a value
the program opens to the nodes).  Every opening instruction gets a *layer*:
1 + the deepest layer among its inputs.  All openings of one layer travel in
one batched exchange, so the number of network rounds is the multiplicative
depth, not the number of elements or operations.

Compilation is pure and deterministic: the coordinator compiles to plan the
dealer material; every node compiles the same program itself and checks the
plan digest the coordinator sent, so all parties run the identical plan.

Scales: integer secrets have scale 0, fixed-point secrets scale f.  A product
of scales s1 + s2 > f is truncated back to f with a dealer truncation pair.
Division by a public count D (mean, weighted average) multiplies by
K = round(2^T / D) and truncates by T (+ the input scale - f).  T is chosen
from the declared bounds as large as the 2^62 truncation domain allows; the
compiler refuses a division whose K would have fewer than 16 significant bits
(relative error above 2^-16).  A mean over many elements first truncates the
sum by up to log2(D) bits to make room, which costs at most one unit in the
last place of the result.

Bounds: when inputs carry declared magnitude bounds, every intermediate value
gets a bound (sums add, products multiply, a dot product multiplies by its
length), and the compiler raises :class:`ProgramError` if any value could
reach 2^63 (wrap-around) or any truncation input could reach 2^62.  A program
that compiles is therefore exact up to the documented rounding.

Differential privacy: ``dp_sum``, ``dp_mean`` and ``dp_count`` release a sum
(or the sum divided by the public row count) with discrete Laplace noise that
the nodes add *inside* the shared domain, one share each (NB(1/N) - NB(1/N),
mpcnet/dp/noise.py), so no node short of all N knows the noise.  The privacy
unit is one row of the input (one individual); the row count is public, so
neighbouring inputs differ by *replacing* a row: a sum of values in [-B, B]
moves by at most 2B per element of the row (B when declared non-negative),
a count of 0/1 flags by 1.  Only inputs their owner declared ``dp_only``
can be released this way, and then *only* this way: such an input may be the
argument of a DP release and of no other operation (not even one whose result
is never output: weighted_average opens its total count to the nodes), and no
output may be the input itself.  The
sum is truncated to a grid where that sensitivity is at most 257 units (so
the noise stays exactly representable) and DLap(epsilon / sensitivity) is
added there: pure epsilon-DP.  A mean divides the *noisy* sum (post-processing,
no extra cost).  Bounds come from the inputs' declared bounds (the SDK
refuses a DP-only input without an explicit bound); a program may declare a
larger sensitivity, never a smaller one.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Mapping, Sequence

import numpy as np

from mpcnet.core.beaver import ProductKind
from mpcnet.core.fixedpoint import DEFAULT_FRAC_BITS
from mpcnet.core.preprocessing import MaterialItem, MaterialKind
from mpcnet.dp.noise import MAX_LAMBDA, discrete_laplace_refusal

Shape = tuple[int, ...]
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
DEFAULT_DIVISION_BITS = 32
MAX_PUBLIC_INT = 2**31


class ProgramError(ValueError):
    """A program that cannot run: unknown name, shape or scale mismatch, ..."""


class OpCode(str, Enum):
    ADD = "add"
    SUB = "sub"
    MUL_PUBLIC = "mul_public"
    MUL = "mul"
    DOT = "dot"
    MATMUL = "matmul"
    SUM = "sum"
    MEAN = "mean"
    WEIGHTED_AVERAGE = "weighted_average"
    # released statistics with distributed discrete-Laplace noise (see "Differential privacy" above)
    DP_SUM = "dp_sum"
    DP_MEAN = "dp_mean"
    DP_COUNT = "dp_count"


_DP_RELEASES = frozenset({OpCode.DP_SUM, OpCode.DP_MEAN, OpCode.DP_COUNT})


@dataclass(frozen=True, slots=True)
class Op:
    code: OpCode
    out: str
    args: tuple[str, ...]
    public: float | None = None  # mul_public: the factor; dp_*: epsilon
    counts: tuple[str, ...] = ()
    sensitivity: float | None = None  # dp_*: declared replace-one sensitivity (real units); None = from bounds


@dataclass(frozen=True, slots=True)
class SecretType:
    """Shape, scale and public magnitude bound of a secret.

    ``bound`` is a declared public bound on |value| (real units).  When every
    input has one, the compiler proves that no intermediate value can wrap
    around or leave the truncation domain, and refuses the program otherwise.
    ``None`` (core-level use only) means the caller takes responsibility.
    """

    shape: Shape
    frac_bits: int  # 0 for integers
    bound: float | None = None
    nonnegative: bool = False  # declared: values in [0, bound]
    dp_only: bool = False  # the owner allows only DP releases of this input (and post-processing of them)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


@dataclass
class Program:
    """A job program; the builder methods return ``self`` so calls chain."""

    ops: list[Op] = field(default_factory=list)
    outputs: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def _add(self, op: Op) -> "Program":
        self.ops.append(op)
        return self

    def add(self, out: str, a: str, b: str) -> "Program":
        return self._add(Op(OpCode.ADD, out, (a, b)))

    def sub(self, out: str, a: str, b: str) -> "Program":
        return self._add(Op(OpCode.SUB, out, (a, b)))

    def mul_public(self, out: str, a: str, value: float) -> "Program":
        return self._add(Op(OpCode.MUL_PUBLIC, out, (a,), public=float(value)))

    def mul(self, out: str, a: str, b: str) -> "Program":
        return self._add(Op(OpCode.MUL, out, (a, b)))

    def dot(self, out: str, a: str, b: str) -> "Program":
        return self._add(Op(OpCode.DOT, out, (a, b)))

    def matmul(self, out: str, a: str, b: str) -> "Program":
        return self._add(Op(OpCode.MATMUL, out, (a, b)))

    def sum(self, out: str, a: str) -> "Program":
        return self._add(Op(OpCode.SUM, out, (a,)))

    def mean(self, out: str, a: str) -> "Program":
        return self._add(Op(OpCode.MEAN, out, (a,)))

    def weighted_average(self, out: str, values: Sequence[str], counts: Sequence[str]) -> "Program":
        return self._add(Op(OpCode.WEIGHTED_AVERAGE, out, tuple(values), counts=tuple(counts)))

    def dp_sum(self, out: str, a: str, epsilon: float, sensitivity: float | None = None) -> "Program":
        """sum(a) + discrete Laplace noise for epsilon-DP (sensitivity from a's declared bound unless given)."""
        return self._add(Op(OpCode.DP_SUM, out, (a,), public=float(epsilon), sensitivity=sensitivity))

    def dp_mean(self, out: str, a: str, epsilon: float, sensitivity: float | None = None) -> "Program":
        """(sum(a) + discrete Laplace noise) / rows(a): the noisy sum divided by the public row count."""
        return self._add(Op(OpCode.DP_MEAN, out, (a,), public=float(epsilon), sensitivity=sensitivity))

    def dp_count(self, out: str, flags: str, epsilon: float) -> "Program":
        """The number of 1s in a 0/1 integer vector, with discrete Laplace noise (sensitivity 1)."""
        return self._add(Op(OpCode.DP_COUNT, out, (flags,), public=float(epsilon)))

    def output(self, name: str, to: Iterable[str]) -> "Program":
        self.outputs[name] = tuple(to)
        return self

    def to_json(self) -> dict[str, object]:
        return {
            "ops": [
                {"code": op.code.value, "out": op.out, "args": list(op.args), "public": op.public,
                 "counts": list(op.counts), **({} if op.sensitivity is None else {"sensitivity": op.sensitivity})}
                for op in self.ops
            ],
            "outputs": {k: list(v) for k, v in sorted(self.outputs.items())},
        }


class IrCode(str, Enum):
    ADD = "add"
    SUB = "sub"
    SCALE = "scale"  # multiply by a public integer (value)
    SUM = "sum"
    RECIP_SCALE = "recip_scale"  # multiply by round(2^value / public D), D = args[1]
    BEAVER = "beaver"  # opening: d, e
    TRUNC = "trunc"  # opening: c
    OPEN = "open"  # opening: the value itself, made public to the nodes
    NOISE = "noise"  # local: add this node's share of discrete Laplace noise (value: index into Plan.releases)

    @property
    def opens(self) -> bool:
        return self in (IrCode.BEAVER, IrCode.TRUNC, IrCode.OPEN)


@dataclass(frozen=True, slots=True)
class Instr:
    code: IrCode
    out: str
    args: tuple[str, ...]
    shape: Shape
    layer: int
    value: int = 0  # SCALE: the public factor; RECIP_SCALE: T; TRUNC: the shift
    product: ProductKind = ProductKind.ELEMENTWISE
    material: int = -1  # index into Plan.material, or -1

    def open_size(self, shapes: Mapping[str, Shape]) -> int:
        """Ring elements this instruction opens."""
        if self.code is IrCode.BEAVER:
            return sum(_size(shapes[a]) for a in self.args)
        return _size(shapes[self.args[0]]) if self.code.opens else 0


def _size(shape: Shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


@dataclass(frozen=True, slots=True)
class DpRelease:
    """One differentially private statistic: what the nodes add and what it costs.

    The statistic (integer ring units at ``frac_bits``) is first truncated by ``grid_bits`` so that its
    replace-one sensitivity on that grid, ``grid_sensitivity``, is a small integer; every node adds its share
    of DLap(``parameter``) there, and the sum is scaled back.  Pure epsilon-DP with
    epsilon = parameter * grid_sensitivity (the coordinator checks it with dp-accounting before it charges)."""

    output: str
    kind: str  # sum | mean | count
    source: str  # the secret the statistic is computed from
    epsilon: float
    sensitivity: float  # replace-one, real units
    grid_bits: int
    grid_sensitivity: int
    parameter: float  # a of DLap(a), P(k) ~ exp(-a |k|), in grid units
    frac_bits: int
    depends_on: tuple[str, ...]  # the input secrets the statistic depends on
    divisor: int = 1  # mean: the public row count the noisy sum is divided by

    @property
    def noise_scale(self) -> float:
        """The Laplace scale b = 1 / a of the released value, in its real units (a mean's is the sum's / rows)."""
        return 2.0 ** (self.grid_bits - self.frac_bits) / self.parameter / self.divisor


@dataclass(frozen=True, slots=True)
class Plan:
    frac_bits: int
    inputs: dict[str, SecretType]
    instrs: tuple[Instr, ...]
    material: tuple[MaterialItem, ...]
    types: dict[str, SecretType]
    outputs: dict[str, tuple[str, ...]]
    opened_to_nodes: tuple[str, ...]
    digest: str
    releases: tuple[DpRelease, ...] = ()
    # outputs that depend on some input other than through DP noise (the rest are DP releases, or computed
    # from DP releases and public values only: post-processing, covered by the releases' epsilon)
    exact_outputs: tuple[str, ...] = ()

    @property
    def layers(self) -> int:
        return max((i.layer for i in self.instrs if i.code.opens), default=0)

    def layer_size(self, layer: int) -> int:
        shapes = {k: t.shape for k, t in self.types.items()}
        return sum(i.open_size(shapes) for i in self.instrs if i.code.opens and i.layer == layer)


class _Compiler:
    def __init__(self, inputs: Mapping[str, SecretType], frac_bits: int, division_bits: int) -> None:
        self.f = frac_bits
        self.T = division_bits
        self.inputs: dict[str, SecretType] = dict(inputs)
        self.types: dict[str, SecretType] = dict(inputs)
        self.layer: dict[str, int] = {k: 0 for k in inputs}
        self.public: set[str] = set()
        self.instrs: list[Instr] = []
        self.material: list[MaterialItem] = []
        self.opened: list[str] = []
        self.tmp = 0
        self.current = ""
        # Magnitude bound of every value in ring units (|ring integer|), or None if unknown.
        self.mag: dict[str, float | None] = {
            k: (None if t.bound is None else float(t.bound) * 2.0 ** t.frac_bits + 1.0) for k, t in inputs.items()
        }
        self.count_bound: dict[str, float | None] = {}
        self.deps: dict[str, frozenset[str]] = {k: frozenset([k]) for k in inputs}
        self.releases: list[DpRelease] = []

    def temp(self, hint: str) -> str:
        self.tmp += 1
        return f"%{hint}{self.tmp}"

    def need(self, name: str, op: Op) -> SecretType:
        # '%' names are the compiler's temporaries: a program cannot read them (e.g. a sum before its DP noise)
        if name not in self.types or name in self.public or name.startswith("%"):
            raise ProgramError(f"{op.code.value} '{op.out}': unknown secret '{name}'")
        return self.types[name]

    def _magnitude(self, code: IrCode, args: tuple[str, ...], value: int, product: ProductKind,
                   mag: float | None) -> float | None:
        ms = [self.mag.get(a) for a in args]
        if code in (IrCode.RECIP_SCALE, IrCode.NOISE):
            return mag
        if any(m is None for m in ms):
            return None
        m = [float(x) for x in ms if x is not None]
        if code in (IrCode.ADD, IrCode.SUB):
            return m[0] + m[1]
        if code is IrCode.SCALE:
            return m[0] * abs(value)
        if code is IrCode.SUM:
            return m[0] * self.types[args[0]].size
        if code is IrCode.BEAVER:
            inner = 1 if product is ProductKind.ELEMENTWISE else self.types[args[0]].shape[-1]
            return m[0] * m[1] * inner
        if code is IrCode.TRUNC:
            if m[0] >= 2.0**62:
                raise ProgramError(f"'{self.current}' may leave the fixed-point domain: a product or sum before "
                                   f"truncation could reach 2^{math.log2(m[0]):.1f} (limit 2^62); declare smaller "
                                   "input bounds")
            return m[0] / 2.0**value + 1.0
        return m[0]  # OPEN

    def emit(self, code: IrCode, out: str, args: tuple[str, ...], t: SecretType, *, value: int = 0,
             product: ProductKind = ProductKind.ELEMENTWISE, material: MaterialItem | None = None,
             mag: float | None = None) -> str:
        if code is IrCode.OPEN:  # a second line behind define()'s rule: nothing DP-only is ever opened in the clear
            raw = sorted(d for a in args for d in self.deps.get(a, frozenset()) if self.inputs[d].dp_only)
            if raw:
                raise ProgramError(f"'{self.current}' would open a value computed from DP-only "
                                   f"{', '.join(repr(r) for r in raw)} to the nodes without noise")
        bound = self._magnitude(code, args, value, product, mag)
        if bound is not None and bound >= 2.0**63:
            raise ProgramError(f"'{self.current}' may overflow: a value could reach 2^{math.log2(bound):.1f} "
                               "(64-bit ring limit 2^63); declare smaller input bounds")
        self.mag[out] = bound
        self.deps[out] = frozenset().union(*(self.deps.get(a, frozenset()) for a in args))
        dep = max((self.layer[a] for a in args), default=0)
        layer = dep + 1 if code.opens else dep
        idx = -1
        if material is not None:
            idx = len(self.material)
            self.material.append(material)
        self.instrs.append(Instr(code, out, args, t.shape, layer, value, product, idx))
        self.types[out] = t
        self.layer[out] = layer
        return out

    def rescale(self, name: str, target: int) -> str:
        t = self.types[name]
        if t.frac_bits == target:
            return name
        if t.frac_bits > target:
            return self.truncate(name, t.frac_bits - target)
        return self.emit(IrCode.SCALE, self.temp("scale"), (name,), SecretType(t.shape, target),
                         value=1 << (target - t.frac_bits))

    def truncate(self, name: str, shift: int, out: str | None = None) -> str:
        t = self.types[name]
        return self.emit(IrCode.TRUNC, out or self.temp("trunc"), (name,), SecretType(t.shape, t.frac_bits - shift),
                         value=shift, material=MaterialItem(MaterialKind.TRUNCATION, t.shape, shift=shift))

    def finish_product(self, name: str, out: str) -> str:
        t = self.types[name]
        if t.frac_bits > self.f:
            return self.truncate(name, t.frac_bits - self.f, out)
        return self.alias(name, out)

    def alias(self, name: str, out: str) -> str:
        return self.emit(IrCode.SCALE, out, (name,), self.types[name], value=1)

    def divide_public(self, name: str, denominator: str | int, out: str, max_denominator: float | None = None,
                      result_bound: float | None = None) -> str:
        """out = name / D for a public D (an int known now, or a value opened at run time).

        T (the bits of K = round(2^T / D)) is as large as the truncation domain allows
        given the bounds; K must keep >= 16 significant bits.
        """
        t = self.types[name]
        m = self.mag.get(name)
        T = self.T
        if isinstance(denominator, int):
            if m is not None:
                T = min(60, math.floor(math.log2(2.0**61 * denominator / m)))
                need = math.ceil(math.log2(denominator)) + 16  # K >= 2^16
                if T < need:
                    # Make room: truncate the sum by p <= log2(D) bits (<= 1 ulp of the result).
                    p = min(need - T, max(1, math.floor(math.log2(denominator))), t.frac_bits + 40)
                    name = self.truncate(name, p)
                    t = self.types[name]
                    m = self.mag[name]
                    assert m is not None
                    T = min(60, math.floor(math.log2(2.0**61 * denominator / m)))
                    if T < need - p:
                        raise ProgramError(f"'{self.current}': dividing by {denominator} cannot be done accurately "
                                           "with these bounds; declare smaller input bounds")
            k = round((1 << T) / denominator)
            if k == 0:
                raise ProgramError(f"'{self.current}': dividing by {denominator} underflows")
            scaled_t = SecretType(t.shape, t.frac_bits + T)
            scaled = self.emit(IrCode.SCALE, self.temp("div"), (name,), scaled_t, value=k)
        else:
            if m is not None and result_bound is not None and max_denominator is not None:
                T = min(60, math.floor(math.log2((2.0**61 - m / 2) / result_bound)))
                if 2.0**T / max_denominator < 2.0**16:
                    raise ProgramError(f"'{self.current}': with counts up to {max_denominator:g} in total and these "
                                       "value bounds the division would lose precision; declare smaller bounds")
                mag = result_bound * 2.0**T + m / 2
            else:
                mag = None
            scaled_t = SecretType(t.shape, t.frac_bits + T)
            scaled = self.emit(IrCode.RECIP_SCALE, self.temp("div"), (name, denominator), scaled_t, value=T, mag=mag)
        shift = scaled_t.frac_bits - self.f
        if shift < 1:
            raise ProgramError(f"'{self.current}': division needs a truncation of at least one bit")
        return self.truncate(scaled, shift, out)

    def define(self, op: Op) -> None:
        if not NAME_RE.match(op.out):
            raise ProgramError(f"invalid output name {op.out!r}: use letters, digits, '_', '.', '-' (max 64)")
        if op.out in self.types:
            raise ProgramError(f"{op.code.value}: name '{op.out}' is already defined")
        if op.code not in _DP_RELEASES:
            # A DP-only input feeds a DP release and nothing else.  Checking outputs alone is not enough: an
            # intermediate that is never output can still be opened to the nodes (weighted_average opens its
            # total count) or make the job fail on its value (a zero divisor) -- an exact leak at no epsilon.
            raw = sorted({a for a in (*op.args, *op.counts) if a in self.inputs and self.inputs[a].dp_only})
            if raw:
                raise ProgramError(f"{op.code.value} '{op.out}' reads {', '.join(repr(r) for r in raw)}, which its "
                                   "owner declared DP-only: such an input can only be the argument of dp_sum, dp_mean "
                                   "or dp_count")
        self.current = op.out
        getattr(self, "op_" + op.code.value)(op)

    def binary_same_shape(self, op: Op) -> tuple[str, str, SecretType]:
        if len(op.args) != 2:
            raise ProgramError(f"{op.code.value} '{op.out}' takes 2 arguments, got {len(op.args)}")
        ta, tb = self.need(op.args[0], op), self.need(op.args[1], op)
        if ta.shape != tb.shape:
            raise ProgramError(f"{op.code.value} '{op.out}': shapes {ta.shape} and {tb.shape} differ")
        s = max(ta.frac_bits, tb.frac_bits)
        return self.rescale(op.args[0], s), self.rescale(op.args[1], s), SecretType(ta.shape, s)

    def op_add(self, op: Op) -> None:
        a, b, t = self.binary_same_shape(op)
        self.emit(IrCode.ADD, op.out, (a, b), t)

    def op_sub(self, op: Op) -> None:
        a, b, t = self.binary_same_shape(op)
        self.emit(IrCode.SUB, op.out, (a, b), t)

    def op_mul_public(self, op: Op) -> None:
        if len(op.args) != 1 or op.public is None or not math.isfinite(op.public):
            raise ProgramError(f"mul_public '{op.out}' takes one secret and one finite public number")
        t = self.need(op.args[0], op)
        c = op.public
        if c == int(c) and abs(c) < MAX_PUBLIC_INT:
            self.emit(IrCode.SCALE, op.out, op.args, t, value=int(c))
            return
        k = round(c * (1 << self.f))
        if abs(k) >= MAX_PUBLIC_INT << self.f:
            raise ProgramError(f"mul_public '{op.out}': public value out of range")
        scaled = self.emit(IrCode.SCALE, self.temp("mulp"), op.args, SecretType(t.shape, t.frac_bits + self.f), value=k)
        self.finish_product(scaled, op.out)

    def _beaver(self, op: Op, kind: ProductKind, shape_out: Shape) -> None:
        a, b = op.args
        ta, tb = self.types[a], self.types[b]
        t = SecretType(shape_out, ta.frac_bits + tb.frac_bits)
        prod = self.emit(IrCode.BEAVER, self.temp("prod"), (a, b), t, product=kind,
                         material=MaterialItem(MaterialKind.TRIPLE, ta.shape, tb.shape, kind))
        self.finish_product(prod, op.out)

    def op_mul(self, op: Op) -> None:
        if len(op.args) != 2:
            raise ProgramError(f"mul '{op.out}' takes 2 arguments")
        ta, tb = self.need(op.args[0], op), self.need(op.args[1], op)
        if ta.shape != tb.shape and ta.shape != () and tb.shape != ():
            raise ProgramError(f"mul '{op.out}': shapes {ta.shape} and {tb.shape} differ (only scalars broadcast)")
        self._beaver(op, ProductKind.ELEMENTWISE, ta.shape if ta.shape != () else tb.shape)

    def op_dot(self, op: Op) -> None:
        if len(op.args) != 2:
            raise ProgramError(f"dot '{op.out}' takes 2 arguments")
        ta, tb = self.need(op.args[0], op), self.need(op.args[1], op)
        if len(ta.shape) != 1 or ta.shape != tb.shape:
            raise ProgramError(f"dot '{op.out}' needs two vectors of equal length, got {ta.shape} and {tb.shape}")
        self._beaver(op, ProductKind.MATMUL, ())

    def op_matmul(self, op: Op) -> None:
        if len(op.args) != 2:
            raise ProgramError(f"matmul '{op.out}' takes 2 arguments")
        ta, tb = self.need(op.args[0], op), self.need(op.args[1], op)
        if len(ta.shape) != 2 or len(tb.shape) != 2 or ta.shape[1] != tb.shape[0]:
            raise ProgramError(f"matmul '{op.out}': shapes {ta.shape} and {tb.shape} are not (m,k) and (k,n)")
        self._beaver(op, ProductKind.MATMUL, (ta.shape[0], tb.shape[1]))

    def op_sum(self, op: Op) -> None:
        if len(op.args) != 1:
            raise ProgramError(f"sum '{op.out}' takes 1 argument")
        t = self.need(op.args[0], op)
        self.emit(IrCode.SUM, op.out, op.args, SecretType((), t.frac_bits))

    def op_mean(self, op: Op) -> None:
        if len(op.args) != 1:
            raise ProgramError(f"mean '{op.out}' takes 1 argument")
        t = self.need(op.args[0], op)
        if t.size == 0:
            raise ProgramError(f"mean '{op.out}': '{op.args[0]}' is empty")
        total = self.emit(IrCode.SUM, self.temp("sum"), op.args, SecretType((), t.frac_bits))
        self.divide_public(total, t.size, op.out)

    def op_weighted_average(self, op: Op) -> None:
        if not op.args or len(op.args) != len(op.counts):
            raise ProgramError(f"weighted_average '{op.out}' needs as many counts as values (and at least one)")
        vtypes = [self.need(v, op) for v in op.args]
        ctypes = [self.need(c, op) for c in op.counts]
        if len({t.shape for t in vtypes}) != 1 or len({t.frac_bits for t in vtypes}) != 1:
            raise ProgramError(f"weighted_average '{op.out}': all values need the same shape and type")
        for c, t in zip(op.counts, ctypes):
            if t.frac_bits != 0 or t.shape not in ((), (1,)):
                raise ProgramError(f"weighted_average '{op.out}': count '{c}' must be an integer scalar")
        shape, s = vtypes[0].shape, vtypes[0].frac_bits
        counts = [c if self.types[c].shape == () else self.emit(IrCode.SUM, self.temp("cnt"), (c,), SecretType((), 0))
                  for c in op.counts]
        terms = [
            self.emit(IrCode.BEAVER, self.temp("wprod"), (c, v), SecretType(shape, s),
                      material=MaterialItem(MaterialKind.TRIPLE, (), shape, ProductKind.ELEMENTWISE))
            for v, c in zip(op.args, counts)
        ]
        num = terms[0]
        for term in terms[1:]:
            num = self.emit(IrCode.ADD, self.temp("num"), (num, term), SecretType(shape, s))
        den = counts[0]
        for c in counts[1:]:
            den = self.emit(IrCode.ADD, self.temp("den"), (den, c), SecretType((), 0))
        opened = self.emit(IrCode.OPEN, self.temp("total"), (den,), SecretType((), 0))
        self.public.add(opened)
        vmag = [m for m in (self.mag.get(v) for v in op.args) if m is not None]
        cmag = [m for m in (self.mag.get(c) for c in op.counts) if m is not None]
        result_bound = max(vmag) if len(vmag) == len(op.args) else None
        max_den = sum(cmag) if len(cmag) == len(op.counts) else None
        self.opened.append(f"the total count {' + '.join(op.counts)} (public divisor of '{op.out}')")
        self.divide_public(num, opened, op.out, max_denominator=max_den, result_bound=result_bound)

    # -- differential privacy ----------------------------------------------------------------------------------
    def _dp_release(self, op: Op, kind: str) -> tuple[str, int]:
        """Emit sum(a) + distributed DLap noise at a's scale; returns (noisy sum, rows)."""
        if len(op.args) != 1:
            raise ProgramError(f"dp_{kind} '{op.out}' takes 1 argument")
        eps = op.public
        if eps is None or not (0 < eps < math.inf):
            raise ProgramError(f"dp_{kind} '{op.out}': epsilon must be a positive finite number")
        src = op.args[0]
        t = self.need(src, op)
        if t.size == 0:
            raise ProgramError(f"dp_{kind} '{op.out}': '{src}' is empty")
        rows = t.shape[0] if t.shape else 1
        per_row = t.size // rows
        if src not in self.inputs or not t.dp_only or t.bound is None:
            raise ProgramError(f"dp_{kind} '{op.out}': '{src}' must be an input its owner declared DP-only "
                               "(share(..., bound=B, dp_only=True)): the owner, not the program, decides that a value "
                               "is released only with noise, and its declared bound sets the sensitivity")
        s = t.frac_bits
        # the owner's encoded values lie in [-R, R] (or [0, R] when declared non-negative): replacing one row
        # (one individual) moves the sum by at most per_row * (2R or R) ring units -- exact, rounding included
        r = math.floor(float(t.bound) * 2.0**s + 0.5)
        ulps = per_row * (r if t.nonnegative else 2 * r)
        if kind == "count":
            if s != 0 or t.bound > 1 or not t.nonnegative or len(t.shape) != 1:
                raise ProgramError(f"dp_count '{op.out}': '{src}' must be a vector of 0/1 integer flags declared "
                                   "with bound=1, nonnegative=True")
        elif op.sensitivity is not None:
            if not (0 < op.sensitivity < math.inf):
                raise ProgramError(f"dp_{kind} '{op.out}': sensitivity must be positive and finite")
            # a declared sensitivity may only raise the bound-derived one (each element rounds by < 1 unit)
            ulps = max(ulps, math.ceil(op.sensitivity * 2.0**s) + (per_row if s > 0 else 0))
        ulps = max(ulps, 1)
        sens = ulps / 2.0**s
        grid_bits = max(0, math.ceil(math.log2(ulps / 256))) if ulps > 256 else 0
        # a truncation by grid_bits is floor(x / 2^g) + {0, 1}: one more unit of sensitivity on the grid
        grid_sens = math.ceil(ulps / 2**grid_bits) + (1 if grid_bits else 0)
        a = eps / grid_sens
        # refused here, before the ledger is charged, not by the nodes' sampler after it
        if (why := discrete_laplace_refusal(a)) is not None:
            lo, hi = grid_sens * 64 / MAX_LAMBDA, grid_sens * 700.0
            raise ProgramError(f"dp_{kind} '{op.out}': epsilon {eps:g} cannot be released here ({why}); use an "
                               f"epsilon between {lo:.3g} and {hi:.3g} for this sensitivity")
        total = self.emit(IrCode.SUM, self.temp("dpsum"), (src,), SecretType((), s))
        if grid_bits:
            total = self.truncate(total, grid_bits)
        rel = DpRelease(op.out, kind, src, eps, sens, grid_bits, grid_sens, a, s,
                        tuple(sorted(self.deps.get(src, frozenset()))), rows if kind == "mean" else 1)
        self.releases.append(rel)
        m = self.mag.get(total)
        # DLap exceeds 64/a with probability ~ exp(-64): the bound the overflow check uses
        noisy_t = SecretType((), s - grid_bits)
        noisy = self.emit(IrCode.NOISE, self.temp("dpnoise"), (total,), noisy_t, value=len(self.releases) - 1,
                          mag=None if m is None else m + 64.0 / a)
        self.deps[noisy] = frozenset()  # everything after the noise is post-processing of a DP release
        if grid_bits:
            noisy = self.emit(IrCode.SCALE, self.temp("dpgrid"), (noisy,), SecretType((), s), value=1 << grid_bits)
        return noisy, rows

    def op_dp_sum(self, op: Op) -> None:
        noisy, _ = self._dp_release(op, "sum")
        self.alias(noisy, op.out)

    def op_dp_count(self, op: Op) -> None:
        noisy, _ = self._dp_release(op, "count")
        self.alias(noisy, op.out)

    def op_dp_mean(self, op: Op) -> None:
        noisy, rows = self._dp_release(op, "mean")
        t = self.types[noisy]
        if t.frac_bits == 0:  # an integer mean is a real: move to fixed point first
            noisy = self.rescale(noisy, self.f)
        self.divide_public(noisy, rows, op.out)  # post-processing of the noisy sum: no further privacy cost


def compile_program(
    program: Program,
    inputs: Mapping[str, SecretType],
    frac_bits: int = DEFAULT_FRAC_BITS,
    division_bits: int = DEFAULT_DIVISION_BITS,
) -> Plan:
    """Type-check ``program`` against ``inputs`` and compile it to a :class:`Plan`."""
    if not program.ops:
        raise ProgramError("the program has no operations")
    if not program.outputs:
        raise ProgramError("the program names no outputs: nothing would be revealed")
    for name in inputs:
        if not NAME_RE.match(name):
            raise ProgramError(f"invalid input name {name!r}: use letters, digits, '_', '.', '-' (max 64)")
    comp = _Compiler(inputs, frac_bits, division_bits)
    for op in program.ops:
        comp.define(op)
    dp_only = {k for k, t in inputs.items() if t.dp_only}
    for name, readers in program.outputs.items():
        if name not in comp.types or name in comp.public:
            raise ProgramError(f"output '{name}' is not defined by the program or inputs")
        if not readers:
            raise ProgramError(f"output '{name}' names no reader")
        raw = sorted(comp.deps.get(name, frozenset()) & dp_only)
        if raw:
            raise ProgramError(f"output '{name}' depends on {', '.join(repr(r) for r in raw)} without DP noise: its "
                               "owner declared it DP-only (release it with dp_sum, dp_mean or dp_count)")
    canonical = json.dumps(
        {"program": program.to_json(),
         "inputs": {k: [list(t.shape), t.frac_bits, t.bound, t.nonnegative, t.dp_only] for k, t in sorted(inputs.items())},
         "f": frac_bits, "T": division_bits},
        sort_keys=True,
    )
    return Plan(
        frac_bits=frac_bits,
        inputs=dict(inputs),
        instrs=tuple(comp.instrs),
        material=tuple(comp.material),
        types=comp.types,
        outputs=dict(program.outputs),
        opened_to_nodes=tuple(comp.opened),
        digest=hashlib.sha256(canonical.encode()).hexdigest(),
        releases=tuple(comp.releases),
        exact_outputs=tuple(k for k in program.outputs if comp.deps.get(k)),
    )


def program_from_json(data: Mapping[str, object]) -> Program:
    """Rebuild a Program from :meth:`Program.to_json` output, validating its form."""
    try:
        ops_raw = data["ops"]
        outs_raw = data["outputs"]
        assert isinstance(ops_raw, list) and isinstance(outs_raw, dict)
        ops = []
        for o in ops_raw:
            ops.append(Op(OpCode(o["code"]), str(o["out"]), tuple(str(a) for a in o["args"]),
                          None if o.get("public") is None else float(o["public"]),
                          tuple(str(c) for c in o.get("counts", [])),
                          None if o.get("sensitivity") is None else float(o["sensitivity"])))
        outputs = {str(k): tuple(str(r) for r in v) for k, v in outs_raw.items()}
    except (KeyError, ValueError, TypeError, AssertionError) as exc:
        raise ProgramError(f"malformed program: {exc}") from None
    return Program(ops, outputs)
