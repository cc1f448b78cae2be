"""End-to-end tests of compiled plans run by mpcnet.core.engine (all parties in one process)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcnet.core import fixedpoint as fp
from mpcnet.core import sharing
from mpcnet.core.engine import ExecutionError, JobExecution, run_in_process
from mpcnet.core.preprocessing import InProcessDealer
from mpcnet.core.program import Program, SecretType, compile_program

SETTINGS = settings(max_examples=50, deadline=None, database=None)
F = 16
ULP = 2.0**-F


def fx(*shape):
    return SecretType(tuple(shape), F)


def it(*shape):
    return SecretType(tuple(shape), 0)


def share_inputs(secrets: dict[str, np.ndarray], n: int) -> list[dict[str, np.ndarray]]:
    shares: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    for name, v in secrets.items():
        v = np.asarray(v, dtype=np.uint64)
        # share 1-element arrays and reshape: share() of a 0-d secret has a known defect
        parts = sharing.share(v.reshape(-1), n)
        for i, s in enumerate(parts):
            shares[i][name] = np.asarray(s).reshape(v.shape)
    return shares


def run(program: Program, inputs: dict[str, SecretType], secrets: dict[str, np.ndarray], n: int):
    plan = compile_program(program, inputs)
    dealer = InProcessDealer(n)
    material = [dealer.material(i, "batch", plan.material) for i in range(n)]
    outs = run_in_process(plan, share_inputs(secrets, n), material)
    assert all(set(o) == set(plan.outputs) for o in outs)
    ring = {name: sharing.reconstruct([np.asarray(outs[i][name]) for i in range(n)]) for name in plan.outputs}
    return plan, ring


def signed(v) -> np.ndarray:
    return np.asarray(v, dtype=np.uint64).view(np.int64)


def ints(v) -> list[int]:
    return [int(x) for x in np.ravel(signed(v))]


def dec(plan, ring, name):
    return fp.decode(np.asarray(ring[name], dtype=np.uint64), plan.types[name].frac_bits)


def grid_values(rng: np.random.Generator, shape, lim: float = 100.0) -> np.ndarray:
    """Random reals on the 2^-8 grid, so fixed-point encoding is exact."""
    return np.round(rng.uniform(-lim, lim, size=shape) * 256) / 256


def assert_close(got, expected, tol):
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), expected.shape)
    err = np.abs(got - expected)
    assert np.all(err <= tol), f"max error {err.max()} (tolerance {tol.min()}..{tol.max()})"


def assert_floor_plus_borrow(got: list[int], exact_num: list[int], shift: int):
    for g, e in zip(got, exact_num):
        assert g - (e >> shift) in (0, 1), (g, e, shift)


# -- integers: exact ---------------------------------------------------------


@SETTINGS
@given(n=st.integers(2, 5), seed=st.integers(0, 2**32 - 1))
def test_integer_ops_exact(n, seed):
    rng = np.random.default_rng(seed)
    i = rng.integers(-(2**20), 2**20, size=4)
    j = rng.integers(-(2**20), 2**20, size=4)
    A = rng.integers(-1000, 1000, size=(2, 3))
    B = rng.integers(-1000, 1000, size=(3, 2))
    s = rng.integers(-1000, 1000, size=())
    c = int(rng.integers(-1000, 1000))
    inputs = {"i": it(4), "j": it(4), "A": it(2, 3), "B": it(3, 2), "s": it()}
    secrets = {"i": fp.encode_integers(i), "j": fp.encode_integers(j), "A": fp.encode_integers(A),
               "B": fp.encode_integers(B), "s": fp.encode_integers(np.array([s])).reshape(())}
    p = (Program().add("add", "i", "j").sub("sub", "i", "j").mul("mul", "i", "j").dot("dot", "i", "j")
         .matmul("mm", "A", "B").sum("sum", "i").mul_public("mp", "i", c).mul("sb", "s", "j"))
    for o in ["add", "sub", "mul", "dot", "mm", "sum", "mp", "sb"]:
        p.output(o, ["alice"])
    plan, r = run(p, inputs, secrets, n)
    assert plan.layers == 1  # all products are independent: one batched exchange
    assert ints(r["add"]) == list(i + j)
    assert ints(r["sub"]) == list(i - j)
    assert ints(r["mul"]) == list(i * j)
    assert ints(r["dot"]) == [int(i @ j)]
    assert ints(r["mm"]) == list((A @ B).ravel())
    assert ints(r["sum"]) == [int(i.sum())]
    assert ints(r["mp"]) == list(i * c)
    assert ints(r["sb"]) == list(s * j)
    assert r["dot"].shape == () and r["mm"].shape == (2, 2) and r["sum"].shape == ()


def test_integer_wraparound_is_mod_2_64():
    n = 3
    big = np.array([2**62, -(2**62)], dtype=np.int64)
    p = Program().add("a", "i", "i").mul("m", "i", "j").output("a", ["x"]).output("m", ["x"])
    plan, r = run(p, {"i": it(2), "j": it(2)},
                  {"i": fp.encode_integers(big), "j": fp.encode_integers(np.array([4, 4]))}, n)
    assert [int(v) for v in r["a"]] == [(2 * int(b)) % 2**64 for b in big]
    assert [int(v) for v in r["m"]] == [(4 * int(b)) % 2**64 for b in big]


# -- fixed point ----------------------------------------------------------------


@SETTINGS
@given(n=st.integers(2, 5), seed=st.integers(0, 2**32 - 1))
def test_fixed_point_ops(n, seed):
    rng = np.random.default_rng(seed)
    x, y = grid_values(rng, 5), grid_values(rng, 5)
    A, B = grid_values(rng, (2, 3), 10), grid_values(rng, (3, 4), 10)
    s = grid_values(rng, ())
    cnt = rng.integers(-50, 50, size=5)
    half = float(rng.choice([0.5, -0.75, 1.25, 0.1, -3.3]))
    k = int(rng.integers(-100, 100))
    ex, ey, eA, eB = fp.encode(x), fp.encode(y), fp.encode(A), fp.encode(B)
    es = fp.encode(np.array([s])).reshape(())
    inputs = {"x": fx(5), "y": fx(5), "A": fx(2, 3), "B": fx(3, 4), "s": fx(), "c": it(5)}
    secrets = {"x": ex, "y": ey, "A": eA, "B": eB, "s": es, "c": fp.encode_integers(cnt)}
    p = (Program().add("add", "x", "y").sub("sub", "x", "y").mul("mul", "x", "y").dot("dot", "x", "y")
         .matmul("mm", "A", "B").sum("sum", "x").mean("mean", "x").mul_public("mpf", "x", half)
         .mul_public("mpi", "x", k).mul("mfi", "x", "c").add("addi", "x", "c").mul("sb", "s", "y"))
    outs = ["add", "sub", "mul", "dot", "mm", "sum", "mean", "mpf", "mpi", "mfi", "addi", "sb"]
    for o in outs:
        p.output(o, ["alice"])
    plan, r = run(p, inputs, secrets, n)
    for o in outs:
        assert plan.types[o].frac_bits == F
    X, Y = ints(ex), ints(ey)
    # local ops: exact
    assert ints(r["add"]) == [a + b for a, b in zip(X, Y)]
    assert ints(r["sub"]) == [a - b for a, b in zip(X, Y)]
    assert ints(r["sum"]) == [sum(X)]
    assert ints(r["mpi"]) == [a * k for a in X]
    assert ints(r["mfi"]) == [a * int(b) for a, b in zip(X, cnt)]  # fixed * integer: no truncation
    assert ints(r["addi"]) == [a + (int(b) << F) for a, b in zip(X, cnt)]
    # truncated products: floor(exact / 2^16) + {0, 1}
    assert_floor_plus_borrow(ints(r["mul"]), [a * b for a, b in zip(X, Y)], F)
    assert_floor_plus_borrow(ints(r["dot"]), [sum(a * b for a, b in zip(X, Y))], F)
    iA, iB = np.array(ints(eA), dtype=object).reshape(2, 3), np.array(ints(eB), dtype=object).reshape(3, 4)
    assert_floor_plus_borrow(ints(r["mm"]), list((iA @ iB).ravel()), F)
    assert_floor_plus_borrow(ints(r["sb"]), [ints(es)[0] * b for b in Y], F)
    kk = round(half * 2**F)
    assert_floor_plus_borrow(ints(r["mpf"]), [a * kk for a in X], F)
    K = round(2**32 / 5)
    assert_floor_plus_borrow(ints(r["mean"]), [sum(X) * K], 32)
    # against numpy in floats (inputs exact on the grid)
    np.testing.assert_array_equal(dec(plan, r, "add"), x + y)
    np.testing.assert_array_equal(dec(plan, r, "sub"), x - y)
    assert_close(dec(plan, r, "mul"), x * y, 2 * ULP)
    assert_close(dec(plan, r, "dot"), x @ y, 2 * ULP)
    assert_close(dec(plan, r, "mm"), A @ B, 2 * ULP)
    assert_close(dec(plan, r, "sb"), s * y, 2 * ULP)
    np.testing.assert_array_equal(dec(plan, r, "sum"), np.sum(x))
    assert_close(dec(plan, r, "mean"), np.mean(x), 2 * ULP)
    assert_close(dec(plan, r, "mpf"), x * half, np.abs(x) * ULP / 2 + 2 * ULP)
    np.testing.assert_array_equal(dec(plan, r, "mpi"), x * k)
    np.testing.assert_array_equal(dec(plan, r, "mfi"), x * cnt)
    np.testing.assert_array_equal(dec(plan, r, "addi"), x + cnt)


def test_smoke_values_of_the_design_doc():
    n = 3
    x = np.array([1.5, -2.25, 3.0])
    y = np.array([2.0, 0.5, -1.25])
    A = np.arange(6.0).reshape(2, 3)
    B = np.arange(12.0).reshape(3, 4) / 3
    inputs = {"x": fx(3), "y": fx(3), "A": fx(2, 3), "B": fx(3, 4)}
    secrets = {"x": fp.encode(x), "y": fp.encode(y), "A": fp.encode(A), "B": fp.encode(B)}
    p = (Program().add("s", "x", "y").mul("p", "x", "y").dot("d", "x", "y").matmul("M", "A", "B")
         .mean("m", "x").mul_public("h", "x", 0.5).mul_public("t", "x", 3).sum("S", "x").sub("df", "x", "y"))
    outs = ["s", "p", "d", "M", "m", "h", "t", "S", "df"]
    for o in outs:
        p.output(o, ["alice"])
    plan, r = run(p, inputs, secrets, n)
    # B is not on a power-of-two grid: its encoding error is <= 2^-17 per entry
    expect = {"s": x + y, "p": x * y, "d": x @ y, "M": A @ B, "m": x.mean(), "h": x * 0.5, "t": x * 3,
              "S": x.sum(), "df": x - y}
    tol = {"M": 2 * ULP + np.abs(A).sum(axis=1, keepdims=True) * 2.0**-17}
    for o in outs:
        assert_close(dec(plan, r, o), expect[o], tol.get(o, 2 * ULP))


def test_fedavg_example():
    n = 3
    w = [np.array([1.0, 2.0]), np.array([3.0, 4.0]), np.array([2.0, 2.0])]
    counts = [100, 50, 200]
    inputs, secrets = {}, {}
    for i, (wi, ci) in enumerate(zip(w, counts)):
        inputs[f"w{i}"], secrets[f"w{i}"] = fx(2), fp.encode(wi)
        inputs[f"n{i}"], secrets[f"n{i}"] = it(), fp.encode_integers(np.array(ci))
    p = Program().weighted_average("avg", ["w0", "w1", "w2"], ["n0", "n1", "n2"]).output("avg", ["alice"])
    plan, r = run(p, inputs, secrets, n)
    got = dec(plan, r, "avg")
    expected = (100 * w[0] + 50 * w[1] + 200 * w[2]) / 350
    assert_close(expected, [1.857142857, 2.285714286], 1e-9)
    assert_close(got, expected, 1e-4)
    assert_close(got, [1.857142857, 2.285714286], 1e-4)
    # exact structure: num * round(2^32 / 350) truncated by 32 bits
    num = [sum(c * int(round(wi[k] * 2**F)) for wi, c in zip(w, counts)) for k in range(2)]
    assert_floor_plus_borrow(ints(r["avg"]), [v * round(2**32 / 350) for v in num], 32)


@SETTINGS
@given(n=st.integers(2, 5), seed=st.integers(0, 2**32 - 1), parties=st.integers(1, 4))
def test_weighted_average_random(n, seed, parties):
    rng = np.random.default_rng(seed)
    ws = [grid_values(rng, 3, 50) for _ in range(parties)]
    cs = [int(c) for c in rng.integers(1, 10_000, size=parties)]
    inputs, secrets = {}, {}
    for i in range(parties):
        inputs[f"w{i}"], secrets[f"w{i}"] = fx(3), fp.encode(ws[i])
        # alternate scalar and shape-(1,) counts
        if i % 2:
            inputs[f"n{i}"], secrets[f"n{i}"] = it(1), fp.encode_integers(np.array([cs[i]]))
        else:
            inputs[f"n{i}"], secrets[f"n{i}"] = it(), fp.encode_integers(np.array(cs[i]))
    p = Program().weighted_average("avg", [f"w{i}" for i in range(parties)], [f"n{i}" for i in range(parties)])
    p.output("avg", ["alice"])
    plan, r = run(p, inputs, secrets, n)
    D = sum(cs)
    expected = sum(c * w for c, w in zip(cs, ws)) / D
    # documented accuracy: ~ D * 2^-T relative (T = 32) plus one ulp
    assert_close(dec(plan, r, "avg"), expected, np.abs(expected) * D * 2.0**-32 + 2 * ULP)


@SETTINGS
@given(n=st.integers(2, 4), seed=st.integers(0, 2**32 - 1))
def test_mean_of_integers_and_matrix(n, seed):
    rng = np.random.default_rng(seed)
    v = rng.integers(-10_000, 10_000, size=7)
    M = grid_values(rng, (2, 3))
    p = Program().mean("mi", "v").mean("mm", "M").output("mi", ["a"]).output("mm", ["a"])
    plan, r = run(p, {"v": it(7), "M": fx(2, 3)}, {"v": fp.encode_integers(v), "M": fp.encode(M)}, n)
    assert plan.types["mi"] == fx()
    assert_close(dec(plan, r, "mi"), v.mean(), 2 * ULP + abs(v.sum()) * 2.0**-33)
    assert_close(dec(plan, r, "mm"), M.mean(), 2 * ULP)


def test_chain_of_fixed_products():
    n = 4
    rng = np.random.default_rng(7)
    x, y, z = grid_values(rng, 6, 20), grid_values(rng, 6, 20), grid_values(rng, 6, 20)
    p = Program().mul("xy", "x", "y").mul("xyz", "xy", "z").output("xyz", ["a"])
    plan, r = run(p, {"x": fx(6), "y": fx(6), "z": fx(6)},
                  {"x": fp.encode(x), "y": fp.encode(y), "z": fp.encode(z)}, n)
    assert plan.layers == 4
    # error: one ulp from the first truncation scaled by |z|, plus one ulp
    assert_close(dec(plan, r, "xyz"), x * y * z, (np.abs(z) + 2) * ULP)


# -- plan digests -----------------------------------------------------------------


def test_digest_same_program_and_shape_change():
    def prog():
        return Program().mul("m", "x", "y").output("m", ["a"])

    d1 = compile_program(prog(), {"x": fx(3), "y": fx(3)}).digest
    assert compile_program(prog(), {"x": fx(3), "y": fx(3)}).digest == d1
    assert compile_program(prog(), {"x": fx(4), "y": fx(4)}).digest != d1
    assert compile_program(prog(), {"x": fx(3), "y": fx()}).digest != d1


# -- JobExecution discipline ---------------------------------------------------


def _job_setup(n=2):
    p = Program().mul("m", "x", "y").output("m", ["a"])
    inputs = {"x": fx(3), "y": fx(3)}
    plan = compile_program(p, inputs)
    secrets = {"x": fp.encode([1.0, 2.0, 3.0]), "y": fp.encode([4.0, 5.0, 6.0])}
    shares = share_inputs(secrets, n)
    dealer = InProcessDealer(n)
    material = [dealer.material(i, "b", plan.material) for i in range(n)]
    return plan, shares, material


def test_manual_layer_driving_matches_run_in_process():
    plan, shares, material = _job_setup(3)
    runs = [JobExecution(plan, i, 3, shares[i], material[i]) for i in range(3)]
    for layer in range(1, plan.layers + 1):
        mine = [r.masked_shares(layer) for r in runs]
        assert all(m.size == plan.layer_size(layer) and m.dtype == np.uint64 for m in mine)
        opened = sharing.reconstruct(mine)
        for r in runs:
            r.absorb_opening(layer, opened)
    out = sharing.reconstruct([r.outputs()["m"] for r in runs])
    np.testing.assert_allclose(fp.decode(out), [4.0, 10.0, 18.0], atol=ULP)


def test_out_of_order_layers_refused():
    plan, shares, material = _job_setup()
    r = JobExecution(plan, 0, 2, shares[0], material[0])
    with pytest.raises(ExecutionError):
        r.masked_shares(2)
    with pytest.raises(ExecutionError):
        r.masked_shares(0)
    with pytest.raises(ExecutionError):
        r.absorb_opening(2, np.zeros(plan.layer_size(2), np.uint64))
    with pytest.raises(ExecutionError):
        r.outputs()
    m = r.masked_shares(1)
    with pytest.raises(ExecutionError):
        r.masked_shares(1)  # twice before absorbing
    with pytest.raises(ExecutionError):
        r.masked_shares(2)  # next layer before absorbing this one
    r.absorb_opening(1, m)
    with pytest.raises(ExecutionError):
        r.absorb_opening(1, m)  # the same layer again
    with pytest.raises(ExecutionError):
        r.outputs()  # layer 2 still missing


@pytest.mark.parametrize("delta", [-1, 1, -6])
def test_wrong_opened_size_refused(delta):
    plan, shares, material = _job_setup()
    r = JobExecution(plan, 0, 2, shares[0], material[0])
    m = r.masked_shares(1)
    with pytest.raises(ExecutionError):
        r.absorb_opening(1, np.zeros(m.size + delta, np.uint64))


def test_wrong_opened_dtype_refused():
    plan, shares, material = _job_setup()
    r = JobExecution(plan, 0, 2, shares[0], material[0])
    m = r.masked_shares(1)
    with pytest.raises(ExecutionError):
        r.absorb_opening(1, m.view(np.int64))


def test_absorb_without_masked_shares_refused():
    plan, shares, material = _job_setup()
    r = JobExecution(plan, 0, 2, shares[0], material[0])
    with pytest.raises(ExecutionError):
        r.absorb_opening(1, np.zeros(0, np.uint64))


def test_constructor_checks():
    plan, shares, material = _job_setup()
    with pytest.raises(ExecutionError):
        JobExecution(plan, 2, 2, shares[0], material[0])
    with pytest.raises(ExecutionError):
        JobExecution(plan, -1, 2, shares[0], material[0])
    with pytest.raises(ExecutionError):
        JobExecution(plan, 0, 2, shares[0], material[0][:-1])
    with pytest.raises(ExecutionError):
        JobExecution(plan, 0, 2, {"x": shares[0]["x"]}, material[0])
    with pytest.raises(ExecutionError):
        JobExecution(plan, 0, 2, {"x": shares[0]["x"], "y": np.zeros(4, np.uint64)}, material[0])
    with pytest.raises(ExecutionError):
        JobExecution(plan, 0, 2, {"x": shares[0]["x"], "y": np.zeros(3, np.int64)}, material[0])


def test_non_positive_public_count_refused():
    n = 2
    p = Program().weighted_average("avg", ["w0", "w1"], ["n0", "n1"]).output("avg", ["a"])
    inputs = {"w0": fx(2), "w1": fx(2), "n0": it(), "n1": it()}
    secrets = {"w0": fp.encode([1.0, 2.0]), "w1": fp.encode([3.0, 4.0]),
               "n0": fp.encode_integers(np.array(5)), "n1": fp.encode_integers(np.array(-5))}
    plan = compile_program(p, inputs)
    dealer = InProcessDealer(n)
    material = [dealer.material(i, "b", plan.material) for i in range(n)]
    with pytest.raises(ExecutionError):
        run_in_process(plan, share_inputs(secrets, n), material)


def test_plan_without_openings_runs_locally():
    n = 3
    p = Program().add("a", "x", "y").sum("s", "a").output("s", ["a"])
    plan, r = run(p, {"x": fx(2), "y": fx(2)}, {"x": fp.encode([1.0, 2.0]), "y": fp.encode([0.5, 0.25])}, n)
    assert plan.layers == 0
    assert float(dec(plan, r, "s")) == 3.75
