"""Distributed DP noise and the Laplace mechanism of MPC jobs: samplers, calibration, accounting, the ledger.

All draws come from seeded AES-CTR streams, so every statistical check here is deterministic (it cannot flake);
each bound is still a real test: a wrong variance or a biased sampler fails it."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mpcnet.core import fixedpoint as fp
from mpcnet.core import sharing
from mpcnet.core.engine import ExecutionError, run_in_process
from mpcnet.core.preprocessing import InProcessDealer
from mpcnet.core.program import Program, ProgramError, SecretType, compile_program
from mpcnet.dp import noise
from mpcnet.dp.accounting import discrete_laplace_epsilon
from mpcnet.fl.sampling import Draws
from mpcnet.ledger import BudgetExceeded, EpsilonLedger


def _poisson_chi2(x: np.ndarray, lam: float) -> float:
    lo, hi = max(0, int(lam - 4 * lam**0.5)), int(lam + 4 * lam**0.5)
    obs = [(x <= lo).sum()] + [(x == k).sum() for k in range(lo + 1, hi)] + [(x >= hi).sum()]
    pk = [stats.poisson.cdf(lo, lam)] + [stats.poisson.pmf(k, lam) for k in range(lo + 1, hi)] + \
        [stats.poisson.sf(hi - 1, lam)]
    return float(stats.chisquare(np.array(obs), np.array(pk) * len(x) / sum(pk)).pvalue)


@pytest.mark.parametrize("lam", [0.5, 4.0, 9.99, 10.0, 37.5, 2500.0])
def test_poisson_matches_its_distribution(lam: float) -> None:
    x = noise.poisson(lam, Draws.seeded("poisson", str(lam)), 100_000)
    assert abs(x.mean() - lam) < 5 * math.sqrt(lam / len(x))
    if lam >= 4:
        assert _poisson_chi2(x, lam) > 1e-3
    else:
        counts = np.bincount(x, minlength=12)[:12] / len(x)
        assert np.allclose(counts, stats.poisson.pmf(np.arange(12), lam), atol=5e-3)


@pytest.mark.parametrize("lam", [1e6, 1e9, 6e10])
def test_poisson_large_rates_have_the_right_moments(lam: float) -> None:
    x = noise.poisson(lam, Draws.seeded("big", str(lam)), 200_000).astype(np.float64)
    n = len(x)
    assert abs(x.mean() - lam) < 5 * math.sqrt(lam / n)
    # the sample variance of n Poisson draws has sd ~ lam * sqrt(2 / n)
    assert abs(x.var() / lam - 1) < 5 * math.sqrt(2 / n)


def test_poisson_refuses_bad_rates() -> None:
    with pytest.raises(ValueError):
        noise.poisson(-1.0, Draws.seeded("x"), 3)
    with pytest.raises(ValueError):
        noise.poisson(float("nan"), Draws.seeded("x"), 3)
    with pytest.raises(ValueError, match="2\\^36"):
        noise.poisson(2.0**37, Draws.seeded("x"), 3)


def test_log_factorial_matches_lgamma() -> None:
    k = np.array([0, 1, 5, 255, 256, 257, 1000, 10**6, 10**12], dtype=np.float64)
    want = np.array([math.lgamma(v + 1) for v in k])
    assert np.allclose(noise.log_factorial(k), want, rtol=1e-14, atol=1e-12)


def test_skellam_shares_sum_to_the_target_variance() -> None:
    """Each of 10 clients adds Sk(mu/t, mu/t) with t = 8: any 8 of them carry variance >= 2 mu (closure)."""
    mu, t, clients = 4000.0, 8, 10
    draws = Draws.seeded("skellam")
    total = sum(noise.skellam(mu / t, 50_000, draws) for _ in range(clients)).astype(np.float64)
    target = 2 * mu * clients / t
    n = len(total)
    assert abs(total.mean()) < 5 * math.sqrt(target / n)
    # chi-square bound on the sample variance: (n-1) s^2 / sigma^2 ~ chi2(n-1), two-sided 1e-6
    lo, hi = stats.chi2.ppf([1e-6, 1 - 1e-6], n - 1) / (n - 1)
    assert lo < total.var(ddof=1) / target < hi


@pytest.mark.parametrize("n_parties", [1, 2, 3, 5])
def test_discrete_laplace_shares_sum_to_discrete_laplace(n_parties: int) -> None:
    a = 0.6
    draws = Draws.seeded("dlap", str(n_parties))
    total = sum(noise.discrete_laplace_share(a, n_parties, 200_000, draws) for _ in range(n_parties))
    p = math.exp(-a)
    ks = np.arange(-8, 9)
    pmf = (1 - p) / (1 + p) * p ** np.abs(ks)
    obs = np.array([(total == k).sum() for k in ks] + [(np.abs(total) > 8).sum()])
    exp = np.append(pmf, 1 - pmf.sum()) * len(total)
    assert stats.chisquare(obs, exp).pvalue > 1e-3
    assert abs(total.var() / noise.discrete_laplace_variance(a) - 1) < 0.03


def test_a_lone_laplace_share_is_not_the_whole_noise() -> None:
    """One node's share has a third of the variance: no single node knows the noise that was added."""
    a = 0.05
    share = noise.discrete_laplace_share(a, 3, 100_000, Draws.seeded("lone")).astype(np.float64)
    assert abs(share.var() / (noise.discrete_laplace_variance(a) / 3) - 1) < 0.05


@pytest.mark.parametrize("eps,sens", [(0.1, 1), (1.0, 1), (1.0, 34), (2.0, 257), (8.0, 100)])
def test_discrete_laplace_epsilon_is_the_libraries_and_matches_a_times_sensitivity(eps: float, sens: int) -> None:
    assert discrete_laplace_epsilon(eps / sens, sens) == pytest.approx(eps, abs=2e-4)


# -- the Laplace mechanism in compiled programs ------------------------------------------------------------

def _shares(secrets: dict[str, np.ndarray], n: int) -> list[dict[str, np.ndarray]]:
    out: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    for name, v in secrets.items():
        for i, s in enumerate(sharing.share(np.asarray(v, dtype=np.uint64).reshape(-1), n)):
            out[i][name] = np.asarray(s).reshape(np.shape(v))
    return out


def _release(prog: Program, inputs: dict[str, SecretType], secrets: dict[str, np.ndarray], trials: int,
             n: int = 3) -> tuple[object, dict[str, np.ndarray]]:
    plan = compile_program(prog, inputs)
    got: dict[str, list[float]] = {k: [] for k in plan.outputs}
    for trial in range(trials):
        dealer = InProcessDealer(n)
        material = [dealer.material(i, "b", plan.material) for i in range(n)]
        outs = run_in_process(plan, _shares(secrets, n), material,
                              [Draws.seeded(f"trial{trial}", f"node{i}") for i in range(n)])
        for k in plan.outputs:
            v = sharing.reconstruct([np.asarray(o[k]) for o in outs])
            got[k].append(float(fp.decode(np.asarray(v, dtype=np.uint64), plan.types[k].frac_bits)))
    return plan, {k: np.array(v) for k, v in got.items()}


def test_dp_sum_mean_count_are_unbiased_with_the_calibrated_laplace_spread() -> None:
    x = np.linspace(-1, 1, 200)
    flags = (np.arange(200) % 3 == 0).astype(np.int64)
    inputs = {"x": SecretType((200,), 16, 1.0, dp_only=True), "f": SecretType((200,), 0, 1.0, True, True)}
    prog = (Program().dp_sum("s", "x", 1.0).dp_mean("m", "x", 0.5).dp_count("c", "f", 2.0)
            .output("s", ["a"]).output("m", ["a"]).output("c", ["a"]))
    plan, got = _release(prog, inputs, {"x": fp.encode(x, 16), "f": fp.encode_integers(flags)}, trials=400)
    rel = {r.output: r for r in plan.releases}
    # sensitivities: replace one value in [-1, 1] moves the sum by 2; a 0/1 flag moves the count by 1
    assert rel["s"].sensitivity == 2.0 and rel["c"].sensitivity == 1.0 and rel["m"].divisor == 200
    # the grid (sensitivity 129..257 units on it) keeps the DLap scale within 2% of sensitivity / epsilon
    assert 2.0 <= rel["s"].noise_scale < 2.04 and 4.0 / 200 <= rel["m"].noise_scale < 4.08 / 200
    assert rel["c"].noise_scale == pytest.approx(0.5)
    n = 400
    for k, true in (("s", x.sum()), ("m", x.mean()), ("c", flags.sum())):
        b = rel[k].noise_scale
        var = 2 * b * b if k != "c" else noise.discrete_laplace_variance(rel[k].parameter)
        assert abs(got[k].mean() - true) < 5 * math.sqrt(var / n), k
        lo, hi = stats.chi2.ppf([1e-6, 1 - 1e-6], n - 1) / (n - 1)
        # Laplace has kurtosis 6: widen the chi-square band by sqrt((kurtosis - 1) / 2) = 1.6
        assert lo / 1.6 < got[k].var(ddof=1) / var < hi * 1.6, k
    assert np.all(got["c"] == np.round(got["c"]))  # a count stays an integer


def _dp(shape: tuple[int, ...], frac: int, bound: float, nonnegative: bool = False) -> SecretType:
    return SecretType(shape, frac, bound, nonnegative, True)


def test_dp_releases_need_a_noise_source_and_sound_declarations() -> None:
    inputs = {"x": _dp((10,), 16, 5.0), "i": _dp((10,), 0, 7.0, True), "y": SecretType((10,), 16, 5.0),
              "g": SecretType((10,), 0, 1.0, False, True), "r": _dp((10,), 0, 1.0, True)}
    plan = compile_program(Program().dp_sum("s", "x", 1.0).output("s", ["a"]), inputs)
    zeros = {k: np.zeros(10, np.uint64) for k in inputs}
    with pytest.raises(ExecutionError, match="noise source"):
        run_in_process(plan, _shares(zeros, 2), [InProcessDealer(2).material(i, "b", plan.material) for i in range(2)])
    with pytest.raises(ProgramError, match="0/1"):
        compile_program(Program().dp_count("c", "i", 1.0).output("c", ["a"]), inputs)  # bound 7
    with pytest.raises(ProgramError, match="0/1"):
        compile_program(Program().dp_count("c", "g", 1.0).output("c", ["a"]), inputs)  # may hold -1
    assert compile_program(Program().dp_count("c", "r", 1.0).output("c", ["a"]), inputs).releases[0].sensitivity == 1
    with pytest.raises(ProgramError, match="DP-only"):
        compile_program(Program().dp_sum("s", "y", 1.0).output("s", ["a"]), inputs)  # its owner did not consent
    with pytest.raises(ProgramError, match="DP-only"):
        compile_program(Program().add("z", "x", "x").dp_sum("s", "z", 1.0, sensitivity=20.0).output("s", ["a"]),
                        inputs)  # only inputs: a computed value's per-row sensitivity is not the program's to say
    with pytest.raises(ProgramError, match="epsilon"):
        compile_program(Program().dp_sum("s", "x", 0.0).output("s", ["a"]), inputs)


def test_a_dp_only_input_leaves_the_job_only_through_the_noise() -> None:
    inputs = {"x": _dp((10,), 16, 5.0), "y": SecretType((10,), 16, 5.0)}
    for prog in (Program().dp_sum("s", "x", 1.0).sum("raw", "x").output("s", ["a"]).output("raw", ["a"]),
                 Program().mul("xy", "x", "y").output("xy", ["a"]),
                 Program().add("x2", "x", "x").output("x2", ["a"])):
        with pytest.raises(ProgramError, match="declared DP-only: such an input can only be the argument of dp_"):
            compile_program(prog, inputs)
    with pytest.raises(ProgramError, match="depends on 'x' without DP noise"):  # the input itself as an output
        compile_program(Program().dp_sum("s", "x", 1.0).output("s", ["a"]).output("x", ["a"]), inputs)
    # the compiler's temporaries (the sum before its noise) cannot be read by name
    with pytest.raises(ProgramError, match="unknown secret"):
        compile_program(Program().dp_sum("s", "x", 1.0).add("leak", "%dpsum1", "%dpsum1").output("leak", ["a"]),
                        inputs)
    # post-processing of a release is fine, and so are exact outputs of other inputs
    ok = compile_program(Program().dp_sum("s", "x", 1.0).mul_public("s2", "s", 2.0).sum("ysum", "y")
                         .output("s2", ["a"]).output("ysum", ["a"]), inputs)
    assert [r.output for r in ok.releases] == ["s"]


def test_a_dp_only_input_is_never_opened_nor_made_a_failure_condition_even_when_not_output() -> None:
    """weighted_average opens its total count to the nodes, and a total <= 0 fails the job: a DP-only count
    there, even in a value nobody outputs, would be an exact leak (to the nodes, and one bit per job to the
    runner) at zero epsilon."""
    inputs = {"cnt": _dp((), 0, 1000.0, True), "v": SecretType((3,), 16, 5.0), "mine": SecretType((), 0, 1000.0, True),
              "flags": _dp((10,), 0, 1.0, True)}
    for prog in (Program().weighted_average("wa", ["v"], ["cnt"]).dp_count("k", "flags", 1.0).output("k", ["a"]),
                 Program().weighted_average("wa", ["v", "v"], ["mine", "cnt"]).output("wa", ["a"]),
                 Program().sum("c2", "cnt").dp_count("k", "flags", 1.0).output("k", ["a"])):
        with pytest.raises(ProgramError, match="'cnt', which its owner declared DP-only"):
            compile_program(prog, inputs)
    # and behind that rule, the compiler itself never opens a value computed from a DP-only input
    from mpcnet.core.program import IrCode, _Compiler
    comp = _Compiler(inputs, 16, 24)
    comp.current = "probe"
    total = comp.emit(IrCode.ADD, "%t", ("mine", "cnt"), SecretType((), 0))
    with pytest.raises(ProgramError, match="would open a value computed from DP-only 'cnt'"):
        comp.emit(IrCode.OPEN, "%o", (total,), SecretType((), 0))
    comp.emit(IrCode.OPEN, "%ok", ("mine",), SecretType((), 0))  # a non-DP count may be opened (and is disclosed)


@pytest.mark.parametrize("eps, why", [(1e-10, "too large for exact sampling"), (1e6, "underflows")])
def test_an_epsilon_the_nodes_cannot_sample_is_refused_when_compiling(eps: float, why: str) -> None:
    """The coordinator charges the ledger after compiling and before the nodes draw: an epsilon whose noise the
    nodes' sampler refuses must be refused by the compiler, or the job fails with the epsilon spent."""
    inputs = {"x": _dp((10,), 16, 5.0)}
    refused = f"epsilon {re.escape(f'{eps:g}')} cannot be released here .*{why}.*use an epsilon between"
    with pytest.raises(ProgramError, match=refused):
        compile_program(Program().dp_sum("s", "x", 1.0).dp_sum("t", "x", eps).output("s", ["a"]).output("t", ["a"]),
                        inputs)
    # the range the message quotes compiles, at both ends, and its noise can be drawn
    rel = compile_program(Program().dp_sum("s", "x", 1.0).output("s", ["a"]), inputs).releases[0]
    lo, hi = rel.grid_sensitivity * 64 / noise.MAX_LAMBDA, rel.grid_sensitivity * 700.0
    for e in (lo * 1.0001, hi):
        r = compile_program(Program().dp_sum("s", "x", e).output("s", ["a"]), inputs).releases[0]
        assert noise.discrete_laplace_share(r.parameter, 3, 4, Draws.seeded(b"k" * 32)).shape == (4,)


def test_a_declared_sensitivity_only_ever_raises_the_bound_derived_one() -> None:
    inputs = {"x": _dp((100,), 16, 1000.0)}
    low = compile_program(Program().dp_sum("s", "x", 1.0, sensitivity=1e-6).output("s", ["a"]), inputs).releases[0]
    assert low.sensitivity == pytest.approx(2000.0, rel=1e-6) and low.noise_scale >= 2000.0
    high = compile_program(Program().dp_sum("s", "x", 1.0, sensitivity=5000.0).output("s", ["a"]), inputs).releases[0]
    assert high.sensitivity >= 5000.0 and high.noise_scale >= 5000.0


def _exact_encoded_sensitivity(t: SecretType) -> int:
    """Brute force over the encodings: the largest change of a row sum when one row is replaced."""
    r = round(t.bound * 2**t.frac_bits)  # the largest |encoding| of a value within the bound
    per_row = t.size // (t.shape[0] if t.shape else 1)
    return per_row * (r if t.nonnegative else 2 * r)


@settings(max_examples=60, deadline=None, database=None)
@given(bound=st.floats(1e-3, 1e4), eps=st.floats(0.01, 20.0), rows=st.integers(1, 50), cols=st.integers(1, 60),
       frac=st.sampled_from([0, 8, 16]), nonneg=st.booleans())
def test_grid_calibration_never_claims_less_noise_than_the_sensitivity_needs(bound: float, eps: float, rows: int,
                                                                             cols: int, frac: int,
                                                                             nonneg: bool) -> None:
    """Property: on 1-D and 2-D inputs, the noise scale (ring units) is >= the exact replace-one sensitivity of
    the encoded row sums / epsilon, and within 2% of it once the grid is coarser than one unit."""
    if frac == 0:
        bound = float(max(1, round(bound)))
    t = SecretType((rows, cols) if cols > 1 else (rows,), frac, bound, nonneg, True)
    plan = compile_program(Program().dp_sum("s", "x", eps).output("s", ["a"]), {"x": t})
    rel = plan.releases[0]
    need = max(1, _exact_encoded_sensitivity(t))
    assert rel.grid_sensitivity * 2.0**rel.grid_bits >= need  # the grid covers every neighbouring pair
    assert rel.grid_sensitivity <= 257
    assert rel.parameter * rel.grid_sensitivity == pytest.approx(eps)
    scale_units = rel.noise_scale * 2.0**frac
    assert need / eps * (1 - 1e-12) <= scale_units
    if need > 256:
        assert scale_units <= need / eps * 1.02


# -- the ledger ---------------------------------------------------------------------------------------------

def test_charge_all_is_all_or_nothing(tmp_path) -> None:
    with EpsilonLedger(tmp_path / "l.sqlite") as led:
        led.set_budget("party:a", 2.0, 0.0)
        charges = [("party:a", "j/s", "dlap", {}, 1.5, 0.0), ("party:b", "j/s", "dlap", {}, 1.0, 0.0),
                   ("party:a", "j/m", "dlap", {}, 1.0, 0.0)]
        with pytest.raises(BudgetExceeded, match="left"):
            led.charge_all(charges, default_budget=(5.0, 0.0))
        assert led.releases() == [] and led.budget("party:b") is None  # nothing recorded, no budget created
        led.charge_all(charges[:2], default_budget=(5.0, 0.0))
        assert led.remaining("party:a") == (0.5, 0.0) and led.remaining("party:b") == (4.0, 0.0)
        led.record_overrun("party:a", "round 3", "skellam shortfall", {}, 0.7, 0.0)
        assert led.remaining("party:a")[0] == pytest.approx(-0.2)  # recorded although past the budget
