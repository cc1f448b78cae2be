"""Unit tests for mpcnet.core.program: type checking, layering, digests."""

from __future__ import annotations

import numpy as np
import pytest

from mpcnet.core.beaver import ProductKind
from mpcnet.core.preprocessing import MaterialKind
from mpcnet.core.program import (
    IrCode,
    Program,
    ProgramError,
    SecretType,
    compile_program,
    program_from_json,
)

FX = 16


def fx(*shape):
    return SecretType(tuple(shape), FX)


def it(*shape):
    return SecretType(tuple(shape), 0)


BASE_INPUTS = {
    "x": fx(3),
    "y": fx(3),
    "z": fx(3),
    "v4": fx(4),
    "s": fx(),
    "A": fx(2, 3),
    "B": fx(3, 4),
    "C": fx(4, 2),
    "i": it(3),
    "j": it(3),
    "k": it(3),
    "n0": it(),
    "n1": it(),
    "nv": it(1),
    "nvec": it(2),
    "nf": fx(),
    "w0": fx(2),
    "w1": fx(2),
}


def compile_(p, inputs=None):
    return compile_program(p, BASE_INPUTS if inputs is None else inputs)


def raises(p, match=None, inputs=None):
    with pytest.raises(ProgramError, match=match):
        compile_(p, inputs)


# -- type errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "prog",
    [
        Program().add("o", "x", "nope"),
        Program().sub("o", "nope", "x"),
        Program().mul("o", "x", "missing"),
        Program().dot("o", "missing", "y"),
        Program().matmul("o", "A", "missing"),
        Program().sum("o", "missing"),
        Program().mean("o", "missing"),
        Program().mul_public("o", "missing", 2),
        Program().weighted_average("o", ["w0", "missing"], ["n0", "n1"]),
        Program().weighted_average("o", ["w0", "w1"], ["n0", "missing"]),
    ],
)
def test_unknown_name(prog):
    raises(prog.output("o", ["alice"]), "unknown")


def test_name_defined_later_is_unknown_earlier():
    raises(Program().add("o", "x", "later").add("later", "x", "y").output("o", ["a"]), "unknown")


@pytest.mark.parametrize(
    "prog",
    [
        Program().add("o", "x", "v4"),
        Program().sub("o", "x", "s"),  # add/sub do not broadcast scalars
        Program().mul("o", "x", "v4"),
        Program().mul("o", "A", "x"),
        Program().dot("o", "x", "v4"),
        Program().dot("o", "A", "A"),
        Program().dot("o", "s", "s"),
        Program().matmul("o", "A", "A"),
        Program().matmul("o", "A", "C"),
        Program().matmul("o", "x", "B"),
        Program().matmul("o", "A", "x"),
        Program().weighted_average("o", ["w0", "x"], ["n0", "n1"]),
    ],
)
def test_shape_mismatch(prog):
    raises(prog.output("o", ["alice"]))


def test_weighted_average_mixed_scales_refused():
    raises(Program().weighted_average("o", ["w0", "nvec"], ["n0", "n1"]).output("o", ["a"]))


def test_duplicate_name_refused():
    raises(Program().add("o", "x", "y").sub("o", "x", "y").output("o", ["a"]), "already defined")
    raises(Program().add("x", "y", "z").output("x", ["a"]), "already defined")  # shadows an input


def test_no_operations_refused():
    raises(Program().output("x", ["a"]), "no operations")


def test_no_outputs_refused():
    raises(Program().add("o", "x", "y"), "no outputs")


def test_output_not_defined_refused():
    raises(Program().add("o", "x", "y").output("other", ["a"]), "not defined")


def test_output_without_reader_refused():
    raises(Program().add("o", "x", "y").output("o", []), "no reader")


def test_opened_public_count_is_not_a_secret():
    plan = compile_(Program().weighted_average("avg", ["w0", "w1"], ["n0", "n1"]).output("avg", ["a"]))
    opened = [ins.out for ins in plan.instrs if ins.code is IrCode.OPEN]
    assert len(opened) == 1
    assert plan.opened_to_nodes and "total count" in plan.opened_to_nodes[0]
    # it can be neither an output nor an operand
    raises(Program().weighted_average("avg", ["w0", "w1"], ["n0", "n1"]).output("avg", ["a"]).output(opened[0], ["a"]))
    raises(Program().weighted_average("avg", ["w0", "w1"], ["n0", "n1"]).add("q", opened[0], "n0").output("q", ["a"]))


@pytest.mark.parametrize("counts", [["nf", "n1"], ["n0", "nvec"], ["n0", "i"]])
def test_weighted_average_count_must_be_integer_scalar(counts):
    raises(Program().weighted_average("o", ["w0", "w1"], counts).output("o", ["a"]), "integer scalar")


def test_weighted_average_count_of_shape_1_accepted():
    compile_(Program().weighted_average("o", ["w0", "w1"], ["n0", "nv"]).output("o", ["a"]))


@pytest.mark.parametrize("values,counts", [(["w0", "w1"], ["n0"]), ([], [])])
def test_weighted_average_arity(values, counts):
    raises(Program().weighted_average("o", values, counts).output("o", ["a"]))


@pytest.mark.parametrize("name", ["", "1abc", "a b", "%tmp", "x/y", "a" * 65, "é", "a;b"])
def test_invalid_name_refused(name):
    raises(Program().add(name, "x", "y").output(name, ["a"]), "invalid")


@pytest.mark.parametrize("name", ["a", "_a", "A.b-c_9", "a" * 64])
def test_valid_names_accepted(name):
    compile_(Program().add(name, "x", "y").output(name, ["a"]))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e12, 2.0**31, -(2.0**31)])
def test_mul_public_bad_values(value):
    raises(Program().mul_public("o", "x", value).output("o", ["a"]))


def test_mean_of_empty_refused():
    raises(Program().mean("o", "e").output("o", ["a"]), "empty", inputs={"e": fx(0)})


def test_input_named_like_temporary_is_refused_or_respected():
    inputs = {"x": fx(2), "y": fx(2), "%prod1": fx(2)}
    prog = Program().mul("p", "x", "y").add("w", "%prod1", "x").output("w", ["a"])
    try:
        plan = compile_program(prog, inputs)
    except ProgramError:
        return  # refusing the bad input name is fine
    # otherwise 'w' must be input + x at the input's scale
    assert plan.types["w"] == fx(2)  # actually SecretType((2,), 32): the product temp shadowed the input


# -- scales / types ------------------------------------------------------------


def test_result_types():
    p = (Program().add("a", "x", "i").mul("m", "x", "y").mul("mi", "i", "j").mul("mx", "x", "i")
         .dot("d", "x", "y").matmul("M", "A", "B").sum("S", "i").mean("mu", "i").mean("mf", "x")
         .mul_public("h", "x", 0.5).mul_public("hi", "i", 0.5).mul_public("t", "i", 3)
         .mul("sb", "s", "x").weighted_average("avg", ["w0", "w1"], ["n0", "n1"]))
    for o in ["a", "m", "mi", "mx", "d", "M", "S", "mu", "mf", "h", "hi", "t", "sb", "avg"]:
        p.output(o, ["a"])
    plan = compile_(p)
    t = plan.types
    assert t["a"] == fx(3)  # integer rescaled to the fixed-point scale
    assert t["m"] == fx(3) and t["mi"] == it(3) and t["mx"] == fx(3)
    assert t["d"] == fx() and t["M"] == fx(2, 4)
    assert t["S"] == it() and t["mu"] == fx() and t["mf"] == fx()
    assert t["h"] == fx(3) and t["hi"] == fx(3) and t["t"] == it(3)
    assert t["sb"] == fx(3) and t["avg"] == fx(2)


def test_material_planned_per_product():
    p = Program().mul("m", "x", "y").matmul("M", "A", "B").mul("mi", "i", "j").output("m", ["a"])
    plan = compile_(p)
    kinds = [(m.kind, m.product) for m in plan.material]
    assert kinds.count((MaterialKind.TRIPLE, ProductKind.ELEMENTWISE)) == 2
    assert kinds.count((MaterialKind.TRIPLE, ProductKind.MATMUL)) == 1
    # only the fixed-point products need truncation pairs (by f = 16 bits)
    truncs = [m for m in plan.material if m.kind is MaterialKind.TRUNCATION]
    assert len(truncs) == 2 and all(m.shift == 16 for m in truncs)
    for ins in plan.instrs:
        if ins.material >= 0:
            assert ins.code in (IrCode.BEAVER, IrCode.TRUNC)


# -- layering --------------------------------------------------------------------


def test_independent_integer_multiplications_share_one_layer():
    p = Program().mul("a", "i", "j").mul("b", "j", "k").mul("c", "i", "k")
    for o in "abc":
        p.output(o, ["x"])
    plan = compile_(p)
    assert plan.layers == 1
    # one batched exchange opens d and e of all three products
    assert plan.layer_size(1) == 3 * (3 + 3)


def test_independent_fixed_multiplications_have_depth_of_one_multiplication():
    single = compile_(Program().mul("a", "x", "y").output("a", ["p"]))
    p = Program().mul("a", "x", "y").mul("b", "y", "z").mul("c", "x", "z")
    for o in "abc":
        p.output(o, ["p"])
    plan = compile_(p)
    # one Beaver round + one truncation round, however many independent products
    assert single.layers == plan.layers == 2
    assert plan.layer_size(1) == 3 * 6 and plan.layer_size(2) == 3 * 3


def test_chain_of_fixed_point_multiplications_is_deeper():
    p = Program().mul("xy", "x", "y").mul("xyz", "xy", "z").output("xyz", ["p"])
    plan = compile_(p)
    assert plan.layers == 4
    indep = compile_(Program().mul("a", "x", "y").mul("b", "y", "z").output("a", ["p"]).output("b", ["p"]))
    assert plan.layers > indep.layers


def test_integer_chain_layers():
    p = Program().mul("ij", "i", "j").mul("ijk", "ij", "k").output("ijk", ["p"])
    assert compile_(p).layers == 2


def test_local_ops_need_no_layers():
    p = Program().add("a", "x", "y").sub("b", "a", "z").sum("c", "b").mul_public("d", "i", 3).output("c", ["p"])
    plan = compile_(p)
    assert plan.layers == 0 and plan.material == ()


def test_weighted_average_layers():
    plan = compile_(Program().weighted_average("avg", ["w0", "w1"], ["n0", "n1"]).output("avg", ["a"]))
    # products + the opened total count share layer 1; the division's truncation is layer 2
    assert plan.layers == 2
    assert plan.layer_size(1) == 2 * (1 + 2) + 1
    assert plan.layer_size(2) == 2


def test_layer_is_one_plus_deepest_input():
    p = (Program().mul("a", "i", "j").add("b", "a", "k").mul("c", "b", "k").mul("d", "i", "k")
         .output("c", ["p"]).output("d", ["p"]))
    plan = compile_(p)
    layer = {ins.out: ins.layer for ins in plan.instrs}
    assert layer["b"] == 1 and layer["d"] == 1 and layer["c"] == 2


# -- digests ----------------------------------------------------------------------


def _prog():
    return Program().mul("m", "x", "y").weighted_average("avg", ["w0", "w1"], ["n0", "n1"]).output(
        "m", ["alice"]).output("avg", ["alice", "bob"])


def test_same_program_same_digest():
    d1 = compile_(_prog()).digest
    d2 = compile_(_prog()).digest
    assert d1 == d2 and len(d1) == 64
    # insertion order of the input mapping does not matter
    rev = dict(reversed(list(BASE_INPUTS.items())))
    assert compile_program(_prog(), rev).digest == d1


def test_digest_changes_with_shape_scale_program_and_params():
    d = compile_(_prog()).digest
    assert compile_(_prog(), {**BASE_INPUTS, "x": fx(4), "y": fx(4)}).digest != d
    assert compile_(_prog(), {**BASE_INPUTS, "x": SecretType((3,), 20)}).digest != d
    assert compile_(_prog().output("m", ["carol"])).digest != d
    assert compile_(Program().mul("m", "x", "z").weighted_average("avg", ["w0", "w1"], ["n0", "n1"]).output(
        "m", ["alice"]).output("avg", ["alice", "bob"])).digest != d
    assert compile_program(_prog(), BASE_INPUTS, division_bits=30).digest != d
    assert compile_program(_prog(), BASE_INPUTS, frac_bits=12).digest != d


def test_program_json_round_trip():
    p = _prog().mul_public("h", "x", 0.25).mean("mu", "x").output("h", ["a"])
    q = program_from_json(p.to_json())
    assert q.to_json() == p.to_json()
    assert compile_(q).digest == compile_(p).digest


@pytest.mark.parametrize("bad", [{}, {"ops": "x", "outputs": {}}, {"ops": [{"code": "nope", "out": "o", "args": []}],
                                                                   "outputs": {}}])
def test_program_from_json_malformed(bad):
    with pytest.raises(ProgramError):
        program_from_json(bad)


def test_compilation_is_pure():
    p = _prog()
    before = p.to_json()
    inputs = dict(BASE_INPUTS)
    compile_program(p, inputs)
    assert p.to_json() == before and inputs == BASE_INPUTS


def test_plan_shapes_consistent():
    plan = compile_(Program().matmul("M", "A", "B").dot("d", "x", "y").output("M", ["a"]).output("d", ["a"]))
    assert plan.types["M"].shape == (2, 4)
    assert np.prod(plan.types["M"].shape) == 8
    assert plan.types["d"].shape == ()
