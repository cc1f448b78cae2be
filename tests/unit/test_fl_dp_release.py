"""DP FedAvg releases and their records, checked where they happen: the central noise as added (once, at the
calibrated size), the sampling rate the accountant assumes, distributed DP's L1 sensitivity, denominator and ring
head-room, the ledger's delta and epsilon limits, what the receipts name, and the issue's accuracy claims (epsilon
8 within 3 points of non-private, epsilon infinity within half a point of plain FedAvg).  Each of these tests
failed on a mutation of the code (noise halved or doubled, q * 1.5, l1 = l2, ...) that the rest of the suite let
through."""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Any, Sequence

import numpy as np
import pytest
from scipy import stats

from mpcnet.fl import data, fedavg, models, privacy
from mpcnet.fl.distributed_dp import calibrate_distributed
from mpcnet.fl.sampling import Draws
from mpcnet.ledger import BudgetExceeded, EpsilonLedger
from mpcnet.receipt import fedavg_receipt


class _Still:
    """Every client returns the model unchanged: its update is exactly zero."""

    def train(self, params: np.ndarray, x: np.ndarray, y: np.ndarray, draws: object) -> np.ndarray:
        return params.copy()


class _Step:
    """Every client moves every coordinate by 1 (clipped by run_fedavg to C / sqrt(d) each)."""

    def train(self, params: np.ndarray, x: np.ndarray, y: np.ndarray, draws: object) -> np.ndarray:
        return params + 1.0


def _setup(n_clients: int) -> tuple[data.Dataset, models.Model, list[np.ndarray]]:
    ds = data.load("breast_cancer")
    m = models.make_model("logreg", ds.n_features, ds.n_classes)
    return ds, m, data.split_iid(len(ds.y_train), n_clients)


# -- central DP: the noise actually added, and the sampling rate actually used ---------------------------------

def test_central_dp_adds_the_calibrated_noise_once_to_the_released_sum() -> None:
    """Zero updates: each released step is the server's noise alone over q N, so (q N) * step ~ N(0, (z C)^2) per
    coordinate.  Chi-square on 62 x 40 draws, two-sided 1e-9 (OS-entropy noise: false failure ~2e-9); halving the
    std (ratio 0.25) or adding the noise twice (ratio 2) is far outside [0.83, 1.18]."""
    n_clients, rounds = 10, 40
    ds, m, parts = _setup(n_clients)
    dp = privacy.calibrate(8.0, 1e-5, rounds, 1.0, clip=0.5)
    hist = fedavg.run_fedavg(m, _Still(), ds, parts, fedavg.FedAvgConfig(rounds=rounds, clip=0.5, dp=dp),
                             fedavg.PlainAggregator())
    assert all(r.mean is not None and not r.skipped for r in hist.rounds)
    noise = np.concatenate([r.mean for r in hist.rounds]) * (dp.sampling_rate * n_clients)  # type: ignore[misc]
    n = noise.size
    lo, hi = stats.chi2.ppf([1e-9, 1 - 1e-9], n) / n
    assert lo < float(np.mean(noise**2)) / dp.noise_std**2 < hi


def test_central_dp_samples_each_client_at_the_accounted_rate() -> None:
    """The accountant's amplification assumes Poisson sampling at q: over 40 rounds of 50 clients the number
    sampled is Binomial(2000, q); bounds at 1e-9 each side (the sample is OS entropy)."""
    q, n_clients, rounds = 0.3, 50, 40
    ds, m, parts = _setup(n_clients)
    dp = privacy.calibrate(8.0, 1e-5, rounds, q, clip=0.5)
    hist = fedavg.run_fedavg(m, _Still(), ds, parts, fedavg.FedAvgConfig(rounds=rounds, clip=0.5, dp=dp),
                             fedavg.PlainAggregator())
    sampled = sum(len(r.sampled) for r in hist.rounds)
    lo, hi = stats.binom.ppf([1e-9, 1 - 1e-9], n_clients * rounds, q)
    assert lo <= sampled <= hi


# -- distributed DP: the sensitivities, the denominator, the ring's head-room ----------------------------------

@pytest.mark.parametrize("scaled_clip, dim", [(8.0, 400), (2.0**14, 62)])
def test_the_l1_sensitivity_covers_every_vector_the_rounding_lets_through(scaled_clip: float, dim: int) -> None:
    """Conditional rounding only promises ||x||_2^2 <= l2^2 for an integer x.  The L1 norm of such a vector can
    reach min(l2^2, sqrt(d) l2): k ones (k <= l2^2, k <= d), or d equal entries.  The accountant's l1 must cover
    both, whatever is used to compute it."""
    ddp = calibrate_distributed(4.0, 1e-5, 3, clip=0.5, dim=dim, min_contributors=4, max_clients=6,
                                scaled_clip=scaled_clip)
    ones = np.zeros(dim, dtype=np.int64)
    ones[:min(dim, math.floor(ddp.l2**2 + 1e-9))] = 1
    flat = np.full(dim, math.floor(ddp.l2 / math.sqrt(dim)), dtype=np.int64)
    for worst in (ones, flat):
        assert float(worst @ worst) <= ddp.l2**2  # the rounding could return it
        assert ddp.l1 >= float(np.abs(worst).sum())


def test_distributed_dp_divides_by_the_public_number_sampled_not_by_who_stayed() -> None:
    """Two of ten clients drop every round; with the noise made negligible the released step is 8 u / 10, u the
    clipped update: the denominator is the fixed number sampled (the module docstring), not the 8 included."""
    n_clients = 10
    ds, m, parts = _setup(n_clients)
    ddp = calibrate_distributed(8.0, 1e-5, 1, clip=0.5, dim=m.n_params, min_contributors=8, max_clients=n_clients)
    quiet = dataclasses.replace(ddp, mu=1e-12)  # Poisson(1e-13): no noise in practice

    class TwoFail(fedavg.PlainAggregator):
        def aggregate(self, round_no: int, updates: Sequence[fedavg.Update],
                      drop: Sequence[int]) -> fedavg.RoundOutcome:
            return super().aggregate(round_no, updates, [u.client for u in updates[:2]])

    hist = fedavg.run_fedavg(m, _Step(), ds, parts, fedavg.FedAvgConfig(rounds=1, clip=0.5, ddp=quiet), TwoFail())
    (out,) = hist.rounds
    assert len(out.included) == 8 and out.mean is not None
    u = 0.5 / math.sqrt(m.n_params)
    np.testing.assert_allclose(out.mean, 8 * u / n_clients, atol=1e-4)


def test_the_calibration_leaves_room_in_the_ring_for_every_client_at_the_clip() -> None:
    """A 19-bit ring: 20 clients each putting their whole norm C on one coordinate (plus their noise) must still
    sum inside [-2^18, 2^18), or SecAgg's sum wraps into garbage.  The calibration shrinks its scale for that."""
    from mpcnet.secagg.quantization import decode_ints, encode_ints
    bits, clients = 19, 20
    ddp = calibrate_distributed(4.0, 1e-5, 3, clip=0.5, dim=62, min_contributors=14, max_clients=clients, bits=bits)
    worst = np.zeros(62)
    worst[0] = 0.5
    draws = Draws.seeded("headroom")
    vectors = [ddp.encode(worst, draws) for _ in range(clients)]
    total = np.sum(vectors, axis=0)
    assert int(np.abs(total).max()) < 2 ** (bits - 1)
    # what SecAgg's RING encoding gives back: the sum mod 2^bits, read as two's complement -- the true sum
    ring = np.sum([encode_ints(v, bits).astype(np.uint64) for v in vectors], axis=0) % np.uint64(2**bits)
    assert np.array_equal(decode_ints(ring, bits), total)


# -- the ledger: delta is a budget too, and the epsilon budget has no slack ------------------------------------

def test_a_release_past_the_delta_budget_or_a_hair_past_the_epsilon_budget_is_refused(tmp_path) -> None:
    with EpsilonLedger(tmp_path / "l.sqlite") as led:
        led.set_budget("d", 1.0, 1e-5)
        with pytest.raises(BudgetExceeded, match="delta"):
            led.charge("d", "delta-heavy", "gaussian", {}, 0.1, 2e-5)  # epsilon fits, delta does not
        led.charge("d", "most of it", "gaussian", {}, 0.99, 1e-5)
        with pytest.raises(BudgetExceeded):
            led.charge("d", "a hair over", "laplace", {}, 0.011, 0.0)  # 0.01 left
        led.charge("d", "exactly the rest", "laplace", {}, 0.01, 0.0)
        assert [r.name for r in led.releases("d")] == ["most of it", "exactly the rest"]


def test_fedavg_charges_the_small_rounds_delta_to_the_ledger(tmp_path) -> None:
    """The receipt's delta includes what skipped small rounds add; the ledger must be charged the same."""
    import argparse
    from types import SimpleNamespace

    from rich.console import Console

    from mpcnet.fl.cli import _charge
    args = argparse.Namespace(ledger_dataset="", dataset="digits", ledger=str(tmp_path / "l.sqlite"),
                              budget=(10.0, 1e-4), clients=8, model="logreg")
    dp = SimpleNamespace(epsilon=2.0, delta=1e-5, noise_multiplier=1.0, clip=0.5, rounds=3, sampling_rate=0.5)
    state = _charge(args, dp, ["secagg"], Console(file=io.StringIO()), small_delta=3e-7)
    with EpsilonLedger(args.ledger) as led:
        (rel,) = led.releases("sklearn:digits")
    assert rel.delta == pytest.approx(1e-5 + 3e-7) and state["spent_by_this_run"][1] == pytest.approx(1e-5 + 3e-7)


# -- receipts ---------------------------------------------------------------------------------------------------

def test_a_distributed_dp_receipt_headlines_the_epsilon_actually_spent() -> None:
    ddp = calibrate_distributed(8.0, 1e-5, 3, clip=0.5, dim=62, min_contributors=10, max_clients=10)
    rounds = [{"round": r, "sampled": list(range(1, 11)), "included": list(range(3, 11)), "dropped": [1, 2],
               "skipped": "", "noise_contributors": 8} for r in (1, 2, 3)]
    dp = fedavg_receipt("t", "plain", rounds, 10, ddp, None)["differential_privacy"]
    assert dp["epsilon"] == pytest.approx(ddp.realised_epsilon([8, 8, 8])) and dp["epsilon"] > 8.0


def test_the_fedavg_cli_receipt_names_each_rounds_dropped_clients(tmp_path) -> None:
    import json

    from mpcnet.cli import main
    out = tmp_path / "run.json"
    assert main(["fedavg", "--rounds", "2", "--clients", "6", "--dropout", "0.34", "--aggregator", "plain",
                 "--out", str(out)]) == 0
    for r in json.loads(out.read_text())["runs"]["plain"]["receipt"]["participants"]["rounds"]:
        assert len(r["dropped"]) == 2 and sorted(r["included"] + r["dropped"]) == sorted(r["sampled"])


def test_a_secagg_round_receipt_names_who_dropped_and_when() -> None:
    from mpcnet.receipt import secagg_receipt
    from mpcnet.v1 import secagg_pb2 as spb
    params = spb.SecAggRoundParams(client_ids=[1, 2, 3, 4], threshold=3, bits=32, vector_length=4)
    done = spb.SecAggDone(included=[1, 2, 3])
    done.dropped.add(client_id=4, stage="masked_input_collection")
    rc = secagg_receipt("r", params, "done", done=done)
    assert rc["participants"]["included"] == [1, 2, 3]
    assert rc["participants"]["dropped"] == [{"client": 4, "stage": "masked_input_collection"}]


def test_a_job_receipt_carries_its_dp_releases() -> None:
    from mpcnet.core.program import Program, SecretType, compile_program
    from mpcnet.receipt import job_receipt
    inputs = {"x": SecretType((10,), 16, 100.0, True, True)}
    plan = compile_program(Program().dp_sum("s", "x", 1.0).output("s", ["a"]), inputs)
    release = {"output": "s", "epsilon": 1.0, "delta": 0.0, "datasets": ["party:a"], "ledger_remaining": {"party:a": 9}}
    dp = job_receipt("j", plan, {"x": (inputs["x"], "a")}, 3, [release])["differential_privacy"]
    assert dp["releases"] == [release]


# -- the accuracy claims --------------------------------------------------------------------------------

@pytest.fixture
def seeded_secure_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the DP noise and the central-DP sample reproducible (a test only: production draws OS entropy)."""
    counter = iter(range(10**9))
    monkeypatch.setattr(Draws, "secure", staticmethod(lambda: Draws.seeded(f"review-{next(counter)}", "secure")))


@pytest.mark.parametrize("mode", ["central", "distributed"])
def test_at_epsilon_8_fedavg_stays_within_3_points_of_non_private(mode: str, seeded_secure_draws: None) -> None:
    """The issue's claim at the sweep's settings (20 clients, 10 rounds, clip 0.25, q = 1; also `make demo`'s):
    the mean of 10 runs is within 3 points, with the noise from seeded streams so that the test is deterministic.
    Measured over 40 unseeded runs each: central 1.0 points below (sd 1.1), distributed 2.0 (sd 1.6); at clip 0.5
    both are ~4 points below."""
    ds, m, parts = _setup(20)
    trainer = models.SgdTrainer(m, epochs=1, lr=0.05)
    base = fedavg.run_fedavg(m, trainer, ds, parts, fedavg.FedAvgConfig(rounds=10, clip=0.25),
                             fedavg.PlainAggregator()).accuracy[-1]
    cfg: dict[str, Any]
    if mode == "central":
        cfg = {"dp": privacy.calibrate(8.0, 1e-5, 10, 1.0, clip=0.25)}
    else:
        cfg = {"ddp": calibrate_distributed(8.0, 1e-5, 10, 0.25, m.n_params, 14, 20)}
    accs = [fedavg.run_fedavg(m, trainer, ds, parts, fedavg.FedAvgConfig(rounds=10, clip=0.25, seed=f"s{i}", **cfg),
                              fedavg.PlainAggregator()).accuracy[-1] for i in range(10)]
    assert base - float(np.mean(accs)) <= 0.03


def test_at_epsilon_infinity_the_secure_model_matches_plain_fedavg_within_half_a_point() -> None:
    """epsilon = inf goes through the DP code path (Poisson sampling at q = 1, weight 1, q N denominator) with no
    noise; through SecAgg's arithmetic (in memory) it must match non-private plain FedAvg within 0.5 points."""
    from mpcnet.bench.fedavg_bench import SecAggMathAggregator
    ds, m, parts = _setup(20)
    trainer = models.SgdTrainer(m, epochs=1, lr=0.05)
    plain = fedavg.run_fedavg(m, trainer, ds, parts, fedavg.FedAvgConfig(rounds=10, clip=0.25),
                              fedavg.PlainAggregator()).accuracy[-1]
    inf = privacy.calibrate(math.inf, 1e-5, 10, 1.0, clip=0.25)
    secure = fedavg.run_fedavg(m, trainer, ds, parts, fedavg.FedAvgConfig(rounds=10, clip=0.25, dp=inf),
                               SecAggMathAggregator(0.25, len(ds.y_train), "full")).accuracy[-1]
    assert abs(secure - plain) <= 0.005


@pytest.mark.parametrize("q, rounds", [(0.05, 200), (0.3, 10)])
def test_the_clients_who_see_the_sample_get_the_epsilon_of_the_rounds_the_target_was_in(q: float, rounds: int) -> None:
    """Every sampled client learns its round's members, so against the other clients pooled, the target's privacy
    is that of the rounds it was in, un-amplified: at each Renyi order the binomial average over how many rounds
    that was (Gaussian RDP a / (2 z^2) per round), computed here apart from the library's curves."""
    from dp_accounting.rdp import rdp_privacy_accountant

    from mpcnet.receipt_cli import render

    dp = privacy.calibrate(8.0, 1e-5, rounds, q, 1.0)
    against = privacy.epsilon_against_clients(dp)
    assert against is not None
    one, pooled = against["one_client"], against["all_other_clients"]
    assert isinstance(one, dict) and isinstance(pooled, dict)
    z = dp.noise_multiplier
    orders = np.array(rdp_privacy_accountant.DEFAULT_RDP_ORDERS, dtype=float)
    k = np.arange(rounds + 1)
    log_pk = stats.binom.logpmf(k, rounds, q)
    rdp = np.array([np.logaddexp.reduce(log_pk + (a - 1) * k * a / (2 * z * z)) / (a - 1) for a in orders])
    expected, _ = rdp_privacy_accountant.compute_epsilon(orders, rdp, dp.delta)
    assert pooled["epsilon"] == pytest.approx(expected, rel=1e-6) and pooled["delta"] == one["delta"] == dp.delta
    # one client sees less than all of them, more than a reader of the model; nobody more than R Gaussian rounds
    assert dp.epsilon < one["epsilon"] < pooled["epsilon"] < privacy.epsilon_spent(z, dp.delta, rounds, 1.0)
    # skipped rounds: the pooled clients see why (the sample), one client pays (1 + e^eps_one) P(skip) in delta
    small = 1e-7
    skipping = privacy.epsilon_against_clients(dp, small)
    assert skipping is not None and skipping["all_other_clients"] == pooled
    assert skipping["one_client"]["delta"] == pytest.approx(  # type: ignore[index]
        dp.delta + (1 + math.exp(one["epsilon"])) * small / (1 + math.exp(dp.epsilon)))
    # the receipt gives both, and says so in its trust assumptions and its rendering
    receipt = fedavg_receipt("r", "secagg", [], 20, dp, None)
    assert receipt["differential_privacy"]["epsilon_against_clients"] == against
    assert any(f"{pooled['epsilon']:.4g} (delta {dp.delta:.3g}) against all the other clients" in t
               for t in receipt["trust_assumptions"])
    assert (f"epsilon {one['epsilon']:.4g} (delta {one['delta']:.3g}) against one, {pooled['epsilon']:.4g}"
            in "\n".join(render(receipt)))
    # at a sampling rate of 1 nothing is amplified, and a plain (in the clear) run's clients see no roster
    assert privacy.epsilon_against_clients(privacy.calibrate(8.0, 1e-5, rounds, 1.0, 1.0)) is None
    assert "epsilon_against_clients" not in fedavg_receipt("r", "plain", [], 20, dp, None)["differential_privacy"]


def test_a_receipt_says_when_the_clients_epsilon_could_not_be_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dp-accounting without the RDP curve must not turn into a receipt saying the roster costs nothing."""
    dp = privacy.calibrate(8.0, 1e-5, 10, 0.3, 1.0)
    monkeypatch.setattr(privacy, "_accountant", lambda: type("Opaque", (), {"compose": lambda self, event: None})())
    against = privacy.epsilon_against_clients(dp)
    assert against is not None and "not_computed" in against
    trust = " ".join(fedavg_receipt("r", "secagg", [], 20, dp, None)["trust_assumptions"])
    assert "the epsilon is larger (not computed: dp-accounting" in trust and "costs nothing" not in trust


def test_each_models_receipt_gives_its_own_spend_beside_the_runs() -> None:
    """--aggregator both releases two models, each charged epsilon: a model's receipt says what its own release
    spent (with its own shortfall overruns), apart from what the whole invocation spent."""
    from mpcnet.fl.cli import _model_ledger

    dp = privacy.calibrate(8.0, 1e-5, 3, 1.0, 1.0)
    state = {"dataset": "d", "spent_by_this_run": [16.5, 2e-5], "remaining": [3.5, 8e-5],
             "overruns": [{"release": "fedavg-secagg", "round": 2, "epsilon": 0.5}]}
    secure, plain = _model_ledger(state, "secagg", dp, 0.0), _model_ledger(state, "plain", dp, 0.0)
    assert secure is not None and plain is not None
    assert secure["spent_by_this_model"] == [8.5, 1e-5] and plain["spent_by_this_model"] == [8.0, 1e-5]
    assert secure["spent_by_this_run"] == plain["spent_by_this_run"] == [16.5, 2e-5]
    assert _model_ledger(None, "plain", dp, 0.0) is None
