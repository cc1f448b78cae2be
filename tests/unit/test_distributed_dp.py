"""Distributed DP for FedAvg: the Skellam accounting against dp-accounting, the calibration, the client encoding,
and the noise variance after a real (in-memory) SecAgg aggregation."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pytest
from dp_accounting import dp_event, rdp
from scipy import stats
from scipy.special import logsumexp

from mpcnet.dp.accounting import SKELLAM_ORDERS, skellam_epsilon, skellam_events
from mpcnet.errors import InvalidInput
from mpcnet.fl import data, fedavg, models
from mpcnet.fl.distributed_dp import calibrate_distributed, conditional_round, rounding_bound
from mpcnet.fl.sampling import Draws
from mpcnet.receipt import fedavg_receipt
from mpcnet.receipt_cli import render
from mpcnet.secagg.driver import run_round
from mpcnet.secagg.params import SecAggParams
from mpcnet.secagg.quantization import decode_ints, encode_ints
from mpcnet.secagg.stage import Stage


def test_skellam_events_are_the_papers_bound_as_zcdp_and_compose_in_the_library() -> None:
    mu, l1, l2 = 5e4, 3000.0, 120.0
    v = 2 * mu  # Sk(mu, mu) has variance 2 mu; the paper states its bound for the variance
    ev_a, ev_b = skellam_events(mu, l1, l2)
    for alpha in (2, 7, 40):
        branch_a = alpha * l2**2 / (2 * v) + ((2 * alpha - 1) * l2**2 + 6 * l1) / (4 * v**2)
        branch_b = alpha * l2**2 / (2 * v) + 3 * l1 / (2 * v)
        assert ev_a.xi + ev_a.rho * alpha == pytest.approx(branch_a)
        assert ev_b.xi + ev_b.rho * alpha == pytest.approx(branch_b)
    # our epsilon is exactly the library's for the same events (known parameters): the better branch
    answers = []
    for ev in (ev_a, ev_b):
        acc = rdp.RdpAccountant(orders=SKELLAM_ORDERS)
        acc.compose(dp_event.ZCDpEvent(ev.rho, ev.xi), 12)
        answers.append(acc.get_epsilon(1e-6))
    assert skellam_epsilon([mu] * 12, l1, l2, 1e-6) == pytest.approx(min(answers), rel=1e-12)
    # a negative xi is rounded up to 0 (looser, still valid)
    assert skellam_events(mu, 1.0, 120.0)[0].xi == 0.0


@pytest.mark.parametrize("mu", [1.0, 5.0, 50.0])
@pytest.mark.parametrize("shift", [1, 3])
def test_the_bound_covers_the_exact_renyi_divergence_of_a_shifted_skellam(mu: float, shift: int) -> None:
    """One dimension, sensitivity ``shift``: the exact D_alpha(Sk(mu,mu) + shift || Sk(mu,mu)) at integer alpha
    stays below the bound the accountant is given (the check that the parameterisation is the paper's)."""
    k = np.arange(-300, 301)
    logp = stats.skellam.logpmf(k, mu, mu)
    logq = stats.skellam.logpmf(k - shift, mu, mu)
    ok = np.isfinite(logp) & np.isfinite(logq)
    ev_a, ev_b = skellam_events(mu, float(shift), float(shift))
    for alpha in (2, 3, 5, 10, 20):
        exact = float(logsumexp(alpha * logq[ok] + (1 - alpha) * logp[ok])) / (alpha - 1)
        assert exact <= min(ev_a.xi + ev_a.rho * alpha, ev_b.xi + ev_b.rho * alpha) * (1 + 1e-9)


def test_skellam_approaches_the_gaussian_with_the_same_variance() -> None:
    """Large mu: Sk(mu, mu) ~ N(0, 2 mu); the epsilons agree within a few percent (integer orders only)."""
    l2 = 2000.0
    sigma = 1.3 * l2
    eps_sk = skellam_epsilon([sigma**2 / 2] * 10, l2**2, l2, 1e-5)
    acc = rdp.RdpAccountant()
    acc.compose(dp_event.GaussianDpEvent(sigma / l2), 10)
    assert eps_sk == pytest.approx(acc.get_epsilon(1e-5), rel=0.06)
    assert eps_sk >= acc.get_epsilon(1e-5) * 0.999  # never cheaper than the continuous Gaussian


def test_calibration_is_tight_and_meets_the_target() -> None:
    ddp = calibrate_distributed(2.0, 1e-5, 10, clip=0.5, dim=651, min_contributors=14, max_clients=20)
    assert skellam_epsilon([ddp.mu] * 10, ddp.l1, ddp.l2, 1e-5) <= 2.0
    assert skellam_epsilon([ddp.mu * 0.99] * 10, ddp.l1, ddp.l2, 1e-5) > 2.0
    assert ddp.local_mu == pytest.approx(ddp.mu / 14)
    assert ddp.realised_epsilon([14] * 10) == pytest.approx(skellam_epsilon([ddp.mu] * 10, ddp.l1, ddp.l2, 1e-5))
    assert ddp.realised_epsilon([20] * 10) < 2.0 < ddp.realised_epsilon([10] * 10)
    more = calibrate_distributed(2.0, 1e-5, 40, clip=0.5, dim=651, min_contributors=14, max_clients=20)
    assert more.noise_multiplier > ddp.noise_multiplier
    with pytest.raises(InvalidInput):
        calibrate_distributed(math.inf, 1e-5, 10, 0.5, 651, 14, 20)
    with pytest.raises(InvalidInput):
        calibrate_distributed(1.0, 1e-5, 10, 0.5, 651, 21, 20)


def test_conditional_rounding_is_unbiased_and_enforces_the_norm_bound() -> None:
    d = 400
    x = np.linspace(-1, 1, d)
    x = x / np.linalg.norm(x) * 50.0  # norm 50, the scaled clip
    bound = rounding_bound(50.0, d)
    draws = Draws.seeded("rounding")
    rs = np.array([conditional_round(x, bound, draws) for _ in range(2000)])
    assert (np.sum(rs.astype(float) ** 2, axis=1) <= bound).all()
    assert np.abs(rs.mean(axis=0) - x).max() < 0.15  # per coordinate: 5 sd of a mean of 2000 Bernoullis
    with pytest.raises(InvalidInput):
        conditional_round(x * 10, bound, draws)


def test_distributed_noise_after_secagg_has_the_target_variance() -> None:
    """Six clients encode a zero update; SecAgg (in memory, RING, 32 bits) sums their vectors with one dropout
    after ShareKeys; the sum holds 5 clients' noise: variance 2 * 5 * mu / t, checked with a chi-square bound."""
    dim, clients, t = 4000, 6, 4
    ddp = calibrate_distributed(4.0, 1e-5, 5, clip=1.0, dim=dim, min_contributors=t, max_clients=clients,
                                scaled_clip=64.0)
    draws = Draws.seeded("ddp-secagg")
    ints = {cid: ddp.encode(np.zeros(dim), draws) for cid in range(1, clients + 1)}
    params = SecAggParams("ddp-noise", tuple(range(1, clients + 1)), threshold=t, vector_length=dim, bits=32)
    total = run_round({c: encode_ints(v, 32) for c, v in ints.items()}, params,
                      drops={Stage.MASKED_INPUT_COLLECTION: {6}}, seed=b"distributed-dp-noise-seed")
    noise = decode_ints(total, 32).astype(np.float64)
    assert np.array_equal(noise, sum(ints[c] for c in range(1, 6)).astype(np.float64))  # exact sum of U3
    target = 2 * 5 * ddp.local_mu
    assert target >= 2 * ddp.mu  # five >= t contributors: at least the promised noise
    lo, hi = stats.chi2.ppf([1e-6, 1 - 1e-6], dim - 1) / (dim - 1)
    assert lo < noise.var(ddof=1) / target < hi
    assert abs(noise.mean()) < 5 * math.sqrt(target / dim)


def test_receipt_names_dropped_clients_and_a_noise_shortfall() -> None:
    ds = data.load("breast_cancer")
    m = models.make_model("logreg", ds.n_features, ds.n_classes)
    parts = data.split_iid(len(ds.y_train), 10)
    # calibrated for t = 10 contributors, but 2 of the 10 fail each round, unplanned (a planned dropout that
    # deep is refused before the run): every round is short of noise
    ddp = calibrate_distributed(8.0, 1e-5, 3, clip=0.5, dim=m.n_params, min_contributors=10, max_clients=10)

    class TwoFail(fedavg.PlainAggregator):
        def aggregate(self, round_no: int, updates: Sequence[fedavg.Update],
                      drop: Sequence[int]) -> fedavg.RoundOutcome:
            return super().aggregate(round_no, updates, [u.client for u in updates[:2]])

    with pytest.raises(InvalidInput, match="only 8 clients' noise, fewer than the t = 10"):
        fedavg.check_run(fedavg.FedAvgConfig(rounds=3, clip=0.5, dropout=0.2, ddp=ddp), TwoFail(), 10)
    hist = fedavg.run_fedavg(m, models.SgdTrainer(m, epochs=1, lr=0.05), ds, parts,
                             fedavg.FedAvgConfig(rounds=3, clip=0.5, ddp=ddp), TwoFail())
    rounds = [{"round": o.round, "sampled": o.sampled, "included": o.included, "dropped": o.dropped,
               "skipped": o.skipped, "noise_contributors": o.noise_contributors} for o in hist.rounds]
    rc = fedavg_receipt("t", "plain", rounds, 10, ddp, None)
    assert all(len(r["dropped"]) == 2 for r in rc["participants"]["rounds"])
    assert all(r["noise_contributors"] == 8 for r in rc["participants"]["rounds"])
    privacy = rc["differential_privacy"]
    assert privacy["rounds_short_of_noise"] == [1, 2, 3]
    assert privacy["realised_epsilon"] > 8.0 and "spent epsilon" in privacy["shortfall"]
    assert any("only its own 1/10 share" in t for t in rc["trust_assumptions"])


def test_a_run_whose_every_round_is_short_of_noise_or_aborts_is_refused_before_it_starts() -> None:
    """Distributed DP's planned dropout is a fixed number a round: a run that would sum fewer than t clients'
    noise in every round, abort every SecAgg round, or whose SecAgg threshold is below t is refused by check_run
    (before the CLI charges the ledger); a dropout within the margin passes."""
    ddp = calibrate_distributed(4.0, 1e-5, 3, clip=0.5, dim=62, min_contributors=6, max_clients=9)
    secagg = fedavg.SecAggAggregator("127.0.0.1:1", (), clip=0.5, max_total_samples=100)  # t = ceil(2/3 9) = 6
    for agg in (fedavg.PlainAggregator(), secagg):
        fedavg.check_run(fedavg.FedAvgConfig(rounds=3, clip=0.5, dropout=0.2, ddp=ddp), agg, 9)  # 7 of 9 stay
    with pytest.raises(InvalidInput, match="only 5 clients' noise, fewer than the t = 6"):
        fedavg.check_run(fedavg.FedAvgConfig(rounds=3, clip=0.5, dropout=0.4, ddp=ddp), fedavg.PlainAggregator(), 9)
    with pytest.raises(InvalidInput, match="every round would abort"):
        fedavg.check_run(fedavg.FedAvgConfig(rounds=3, clip=0.5, dropout=0.4, ddp=ddp), secagg, 9)
    low = fedavg.SecAggAggregator("127.0.0.1:1", (), clip=0.5, max_total_samples=100, threshold_fraction=0.5)
    with pytest.raises(InvalidInput, match="threshold 5 of 9 completes rounds that sum fewer than the t = 6"):
        fedavg.check_run(fedavg.FedAvgConfig(rounds=3, clip=0.5, ddp=ddp), low, 9)


def test_a_round_short_of_noise_is_recorded_in_the_ledger_as_it_happens(tmp_path) -> None:
    import argparse

    from mpcnet.fl.cli import _ShortfallRecorder
    from mpcnet.ledger import EpsilonLedger

    class Quiet:
        def print(self, *_a: object) -> None: ...

    ddp = calibrate_distributed(4.0, 1e-5, 3, clip=0.5, dim=62, min_contributors=10, max_clients=12)
    path = tmp_path / "l.sqlite"
    with EpsilonLedger(path) as led:
        led.set_budget("sklearn:x", 10.0, 1e-4)
        led.charge("sklearn:x", "fedavg-secagg", "skellam", {}, 4.0, 1e-5)
    args = argparse.Namespace(ledger=str(path), ledger_dataset=None, dataset="x")
    state: dict[str, Any] = {"spent_by_this_run": [4.0, 1e-5], "remaining": [6.0, 9e-5]}
    rec = _ShortfallRecorder(args, "secagg", ddp, Quiet(), state)
    rec.round_done(fedavg.RoundOutcome(1, [], [], [], mean=np.zeros(1), noise_contributors=12))  # more than t
    rec.round_done(fedavg.RoundOutcome(2, [], [], [], skipped="aborted"))  # released nothing
    with EpsilonLedger(path) as led:
        assert len(led.releases("sklearn:x")) == 1
    rec.round_done(fedavg.RoundOutcome(3, [], [], [], mean=np.zeros(1), noise_contributors=5))  # half the noise
    with EpsilonLedger(path) as led:
        rels = led.releases("sklearn:x")
        assert len(rels) == 2 and "round 3" in rels[1].name
        spent = led.spent("sklearn:x")[0]
    assert spent == pytest.approx(ddp.realised_epsilon([12, 5, 10]), rel=1e-9) and spent > 4.0
    # what the receipts will show of the ledger follows: the run's spending and the balance after the overrun
    assert state["spent_by_this_run"][0] == pytest.approx(spent) and state["remaining"][0] == pytest.approx(10 - spent)
    assert [o["round"] for o in state["overruns"]] == [3]


def test_a_secagg_ring_narrower_than_the_calibration_is_refused_before_any_round() -> None:
    ds = data.load("breast_cancer")
    m = models.make_model("logreg", ds.n_features, ds.n_classes)
    ddp = calibrate_distributed(4.0, 1e-5, 2, clip=0.5, dim=m.n_params, min_contributors=4, max_clients=6)
    # no coordinator at this address: the refusal must come before the first round dials it
    agg = fedavg.SecAggAggregator("127.0.0.1:9", (), clip=0.5, max_total_samples=len(ds.y_train), bits=16)
    with pytest.raises(InvalidInput, match="needs 32-bit sums, the aggregator uses 16-bit SecAgg"):
        fedavg.run_fedavg(m, models.SgdTrainer(m, epochs=1, lr=0.05), ds, data.split_iid(len(ds.y_train), 6),
                          fedavg.FedAvgConfig(rounds=2, clip=0.5, ddp=ddp), agg)


@pytest.mark.parametrize("graph", ["full", "sparse"])
def test_a_secagg_model_receipt_states_the_graph_and_each_rounds_threshold(graph: str) -> None:
    """The receipt of a `--graph sparse` run used to describe the complete graph's t = ceil(2/3 n) of n."""
    rounds = [{"round": 1, "sampled": list(range(1, 21)), "included": list(range(1, 19)), "dropped": [19, 20],
               "skipped": ""},
              {"round": 2, "sampled": list(range(1, 101)), "included": list(range(1, 101)), "dropped": [],
               "skipped": ""}]
    rc = fedavg_receipt("t", "secagg", rounds, 100, None, None, graph=graph)
    secagg = next(layer for layer in rc["layers"] if layer.startswith("secure aggregation"))
    shapes = [{k: r[k] for k in ("threshold", "neighbours") if k in r} for r in rc["participants"]["rounds"]]
    if graph == "sparse":
        assert "SecAgg+" in secagg and "within each neighbourhood" in secagg
        # k = 2 ceil(log2 n), t = ceil(2/3 (k + 1)): 20 clients 10 neighbours, t = 8; 100 clients 14, t = 10
        assert shapes == [{"threshold": 8, "neighbours": 10}, {"threshold": 10, "neighbours": 14}]
        assert any("fewer than t of any client's k neighbours" in t for t in rc["trust_assumptions"])
        shown = "threshold t = 8 of 11 (10 neighbours and the client itself)"
    else:
        assert "Bonawitz" in secagg and shapes == [{"threshold": 14}, {"threshold": 67}]
        assert any("at most t - 1 clients collude" in t for t in rc["trust_assumptions"])
        shown = "threshold t = 14 of 20"
    assert shown in "\n".join(render(rc))  # `mpcnet receipt` shows it with the round


def test_a_central_dp_receipt_says_where_the_noise_was_added_with_and_without_secagg() -> None:
    from mpcnet.fl.privacy import calibrate
    dp = calibrate(8.0, 1e-5, 2, 1.0, 0.5)
    rounds = [{"round": 1, "sampled": [1, 2, 3], "included": [1, 2, 3], "dropped": [], "skipped": ""}]
    secure = fedavg_receipt("t", "secagg", rounds, 3, dp, None)["trust_assumptions"]
    clear = fedavg_receipt("t", "plain", rounds, 3, dp, None)["trust_assumptions"]
    assert any("after SecAgg has summed" in t for t in secure)
    assert not any("SecAgg" in t for t in clear) and any("computed in the clear" in t for t in clear)
