"""Declared bounds: programs that could overflow are refused; divisions stay accurate.

These are the cases that used to go silently wrong for some masks (a product or
mean beyond the truncation domain, a weighted average over very large counts).
"""

from __future__ import annotations

import numpy as np
import pytest

from mpcnet.core import fixedpoint as fp
from mpcnet.core import sharing
from mpcnet.core.engine import run_in_process
from mpcnet.core.preprocessing import InProcessDealer
from mpcnet.core.program import Program, ProgramError, SecretType, compile_program

ULP = 2.0**-16


def run(prog: Program, secrets: dict[str, np.ndarray], types: dict[str, SecretType], n: int = 3,
        batch: str = "b") -> dict[str, np.ndarray]:
    plan = compile_program(prog, types)
    shares: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    for k, v in secrets.items():
        for i, s in enumerate(sharing.share(v, n)):
            shares[i][k] = s
    dealer = InProcessDealer(n)
    outs = run_in_process(plan, shares, [dealer.material(i, batch, plan.material) for i in range(n)])
    return {o: fp.decode(sharing.reconstruct([outs[i][o] for i in range(n)]), plan.types[o].frac_bits)
            for o in prog.outputs}


def test_product_beyond_domain_is_refused_not_wrong() -> None:
    types = {"x": SecretType((1,), 16, 65536.0), "y": SecretType((1,), 16, 65536.0)}
    with pytest.raises(ProgramError, match="'m' may overflow"):
        compile_program(Program().mul("m", "x", "y").output("m", ["a"]), types)
    small = {"x": SecretType((1,), 16, 2.0**14), "y": SecretType((1,), 16, 2.0**14)}
    compile_program(Program().mul("m", "x", "y").output("m", ["a"]), small)


def test_dot_bound_grows_with_length() -> None:
    n = 1 << 12
    ok = {"x": SecretType((n,), 16, 8.0), "y": SecretType((n,), 16, 8.0)}
    compile_program(Program().dot("d", "x", "y").output("d", ["a"]), ok)
    big = {"x": SecretType((n,), 16, 2.0**10), "y": SecretType((n,), 16, 2.0**10)}
    with pytest.raises(ProgramError, match="'d' may"):
        compile_program(Program().dot("d", "x", "y").output("d", ["a"]), big)


@pytest.mark.parametrize("trial", range(10))
def test_mean_of_large_values_is_right_every_time(trial: int) -> None:
    # Used to be wrong for ~5% of masks: 20000 is beyond the old fixed 2^14 domain of mean.
    out = run(Program().mean("m", "x").output("m", ["a"]), {"x": fp.encode([20000.0, 20000.0])},
              {"x": SecretType((2,), 16, 32768.0)}, batch=f"t{trial}")
    assert abs(float(out["m"]) - 20000.0) <= ULP


def test_mean_over_millions_keeps_precision() -> None:
    n = 3_000_000
    out = run(Program().mean("m", "x").output("m", ["a"]), {"x": fp.encode(np.full(n, 100.0))},
              {"x": SecretType((n,), 16, 128.0)})
    assert abs(float(out["m"]) - 100.0) <= 4 * ULP


def test_weighted_average_with_huge_counts() -> None:
    w0, w1 = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    secrets = {"w0": fp.encode(w0), "w1": fp.encode(w1), "n0": fp.encode_integers(np.array(10**7)),
               "n1": fp.encode_integers(np.array(2 * 10**7))}
    types = {"w0": SecretType((2,), 16, 4.0), "w1": SecretType((2,), 16, 4.0),
             "n0": SecretType((), 0, 2.0**24), "n1": SecretType((), 0, 2.0**25)}
    out = run(Program().weighted_average("a", ["w0", "w1"], ["n0", "n1"]).output("a", ["x"]), secrets, types)
    np.testing.assert_allclose(out["a"], (1e7 * w0 + 2e7 * w1) / 3e7, atol=2 * ULP)


def test_weighted_average_refuses_imprecise_division() -> None:
    types = {"w0": SecretType((2,), 16, 2.0**20), "n0": SecretType((), 0, 2.0**40)}
    with pytest.raises(ProgramError, match="lose precision|may"):
        compile_program(Program().weighted_average("a", ["w0"], ["n0"]).output("a", ["x"]), types)


def test_integer_overflow_is_refused() -> None:
    types = {"i": SecretType((4,), 0, 2.0**40), "j": SecretType((4,), 0, 2.0**30)}
    with pytest.raises(ProgramError, match="may overflow"):
        compile_program(Program().mul("p", "i", "j").output("p", ["a"]), types)


def test_bounds_change_the_digest() -> None:
    prog = Program().add("s", "x", "x").output("s", ["a"])
    a = compile_program(prog, {"x": SecretType((2,), 16, 4.0)})
    b = compile_program(prog, {"x": SecretType((2,), 16, 8.0)})
    assert a.digest != b.digest
