"""The FedAvg SDK used carelessly or adversarially (a researcher's own data, parts, trainer, aggregator, numbers):
refused with InvalidInput saying what to change, never a silent wrong model, a wrong receipt or a ledger that
locks itself.  Each test failed on the code before a review of the SDK (2026-12-03)."""

from __future__ import annotations

import dataclasses
import sqlite3

import numpy as np
import pytest

from mpcnet.errors import InvalidInput
from mpcnet.fl import data, fedavg, models
from mpcnet.fl.distributed_dp import calibrate_distributed
from mpcnet.fl.privacy import calibrate
from mpcnet.ledger import EpsilonLedger
from mpcnet.receipt import fedavg_receipt


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    ds = data.load("breast_cancer")
    model = models.make_model("logreg", ds.n_features, ds.n_classes)
    return ds, model, models.SgdTrainer(model, epochs=1, lr=0.05), data.split_iid(len(ds.y_train), 5)


class _Agg:
    """A duck-typed aggregator that post-processes the plain mean with ``f``."""
    name = "mine"

    def __init__(self, f):  # type: ignore[no-untyped-def]
        self.f = f

    def aggregate(self, r, ups, drop):  # type: ignore[no-untyped-def]
        out, kept = fedavg.clear_round(r, ups, drop)
        out.mean = self.f(fedavg.weighted_mean([u.samples for u in kept], [u.delta for u in kept]))
        out.total_samples = sum(u.samples for u in kept)
        return out


def test_aggregate_of_wrong_shape_is_refused_not_broadcast(setup) -> None:  # type: ignore[no-untyped-def]
    ds, model, tr, parts = setup
    with pytest.raises(InvalidInput):  # today: every parameter silently moves by 5.0
        fedavg.run_fedavg(model, tr, ds, parts, fedavg.FedAvgConfig(rounds=1, clip=0.5),
                          _Agg(lambda m: np.array([5.0])))


def test_non_finite_aggregate_is_refused(setup) -> None:  # type: ignore[no-untyped-def]
    ds, model, tr, parts = setup
    with pytest.raises(InvalidInput):  # today: a NaN model is returned after one round
        fedavg.run_fedavg(model, tr, ds, parts, fedavg.FedAvgConfig(rounds=1, clip=0.5), _Agg(lambda m: m * np.nan))


@pytest.mark.parametrize("bad", ["overlap", "negative", "bool_mask"])
def test_parts_must_be_disjoint_integer_indices(setup, bad) -> None:  # type: ignore[no-untyped-def]
    ds, model, tr, parts = setup
    n = len(ds.y_train)
    mask = np.zeros(n, bool)
    mask[:10] = True
    first = {"overlap": parts[1], "negative": np.array([-1, -2, -3]), "bool_mask": mask}[bad]
    with pytest.raises(InvalidInput):  # today: accepted (a boolean mask even counts as n samples)
        fedavg.run_fedavg(model, tr, ds, [first, *parts[1:]], fedavg.FedAvgConfig(rounds=1, clip=0.5),
                          fedavg.PlainAggregator())


@pytest.mark.parametrize("bad", ["negative_label", "nan_test_feature", "short_labels"])
def test_hand_built_dataset_is_validated(setup, bad) -> None:  # type: ignore[no-untyped-def]
    ds, model, tr, parts = setup
    if bad == "negative_label":
        y = ds.y_train.copy()
        y[0] = -1
        d = dataclasses.replace(ds, y_train=y)
    elif bad == "nan_test_feature":
        x = ds.x_test.copy()
        x[0, 0] = np.nan
        d = dataclasses.replace(ds, x_test=x)
    else:
        d = dataclasses.replace(ds, y_train=ds.y_train[:-10])
    with pytest.raises(InvalidInput):  # today: trains and reports an accuracy
        fedavg.run_fedavg(model, tr, d, data.split_iid(len(d.y_train), 5), fedavg.FedAvgConfig(rounds=1, clip=0.5),
                          fedavg.PlainAggregator())


@pytest.mark.parametrize("cap", [float("inf"), float("nan")])
def test_weight_cap_must_be_finite(cap) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput):  # today: accepted; under DP every weight is 0 (inf) or NaN (nan)
        fedavg.FedAvgConfig(rounds=1, clip=0.5, weight_cap=cap)


def test_check_run_refuses_a_model_too_large_for_one_secagg_round() -> None:
    agg = fedavg.SecAggAggregator("127.0.0.1:1", (), clip=0.5, max_total_samples=427)
    with pytest.raises(InvalidInput):  # today: passes; the coordinator refuses round 1, after the charge
        fedavg.check_run(fedavg.FedAvgConfig(rounds=1, clip=0.5), agg, 6, 600_000, [71] * 6)


def test_check_run_refuses_a_distributed_calibration_for_another_dim() -> None:
    ddp = calibrate_distributed(8, 1e-5, 2, 0.5, dim=10, min_contributors=4, max_clients=6)
    agg = fedavg.SecAggAggregator("127.0.0.1:1", (), clip=0.5, max_total_samples=427)
    with pytest.raises(InvalidInput):  # today: passes; round 1 fails in encode(), after the charge
        fedavg.check_run(fedavg.FedAvgConfig(rounds=2, clip=0.5, ddp=ddp), agg, 6, 62, [71] * 6)


def test_receipt_refuses_more_rounds_than_the_central_calibration() -> None:
    dp = calibrate(8, 1e-5, 5, 1.0, 0.5)
    rounds = [{"round": r, "sampled": [1, 2, 3], "included": [1, 2, 3], "dropped": [], "skipped": ""}
              for r in range(1, 11)]
    with pytest.raises(InvalidInput):  # today: "epsilon 8 over 5 rounds" for 10 released rounds
        fedavg_receipt("r", "secagg", rounds, 3, dp, None)


def test_receipt_refuses_negative_small_rounds_delta() -> None:
    dp = calibrate(8, 1e-5, 5, 1.0, 0.5)
    with pytest.raises(InvalidInput):  # today: the receipt's delta becomes 0
        fedavg_receipt("r", "secagg", [], 3, dp, None, small_rounds_delta=-1e-5)


def test_numpy_scalar_overrun_does_not_brick_the_ledger(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "l.sqlite"
    with EpsilonLedger(path) as ledger:
        ledger.set_budget("d", 10, 1e-4)
        ledger.record_overrun("d", "ovr", "skellam", {}, np.float32(0.5), 0.0)
        kinds = sqlite3.connect(str(path)).execute("SELECT typeof(epsilon) FROM releases").fetchall()
        assert kinds == [("real",)], kinds  # today: ('blob',), and every later charge is refused
        ledger.charge("d", "next", "gaussian", {}, 1.0, 0.0)


def test_numpy_integer_epsilon_is_charged(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with EpsilonLedger(tmp_path / "l.sqlite") as ledger:
        ledger.set_budget("d", 10, 1e-4)
        # today: refused with "the ledger was edited ... refusing to use it"
        assert ledger.charge("d", "run", "gaussian", {}, np.int64(1), 0.0).epsilon == 1


def test_a_trainer_that_raises_or_returns_complex_values_is_named(setup) -> None:  # type: ignore[no-untyped-def]
    ds, model, tr, parts = setup

    class Raising:
        def train(self, params, x, y, draws):  # type: ignore[no-untyped-def]
            raise RuntimeError("CUDA out of memory")

    class Complex:
        def train(self, params, x, y, draws):  # type: ignore[no-untyped-def]
            return params + 1j  # the imaginary part used to be dropped with a warning

    with pytest.raises(InvalidInput, match="client 1, round 1: the trainer raised RuntimeError: CUDA out of memory"):
        fedavg.run_fedavg(model, Raising(), ds, parts, fedavg.FedAvgConfig(rounds=1, clip=0.5),
                          fedavg.PlainAggregator())
    with pytest.raises(InvalidInput, match="client 1, round 1: the trainer returned complex128 values"):
        fedavg.run_fedavg(model, Complex(), ds, parts, fedavg.FedAvgConfig(rounds=1, clip=0.5),
                          fedavg.PlainAggregator())


@pytest.mark.parametrize("kwargs, words", [
    ({"stage_deadline_s": 0}, "stage_deadline_s 0"),  # was a bare TimeoutError with no message
    ({"max_total_samples": float("nan")}, "max_total_samples nan"),
    ({"threshold_fraction": 0}, "threshold_fraction 0"),  # was threshold 2 for any n
])
def test_secagg_aggregator_settings_are_checked_when_made(kwargs, words) -> None:  # type: ignore[no-untyped-def]
    base = {"clip": 0.5, "max_total_samples": 427}
    with pytest.raises(InvalidInput, match=words):
        fedavg.SecAggAggregator("127.0.0.1:1", (), **{**base, **kwargs})


@pytest.mark.parametrize("make, words", [
    (lambda: calibrate(8, 1e-5, 2.5, 1.0, 0.5), "rounds must be a whole number"),
    (lambda: calibrate(8, 1e-5, 5, 1.0, float("inf")), "clip inf"),
    (lambda: calibrate_distributed(8, 1e-5, 2, 0.5, 62, 4, 6, scaled_clip=-5), "scaled_clip -5"),
    (lambda: calibrate_distributed(8, 1e-5, 2, 0.5, 2.5, 4, 6), "dim must be a whole number"),  # type: ignore
])
def test_calibrations_refuse_what_would_give_nonsense(make, words) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match=words):
        make()


def test_a_distributed_receipt_needs_each_rounds_noise_contributors() -> None:
    """Without them every round read as short of noise: epsilon 12.17 where 8 was spent."""
    ddp = calibrate_distributed(8, 1e-5, 2, 0.5, 62, 4, 6)
    rounds = [{"round": 1, "sampled": [1, 2, 3, 4], "included": [1, 2, 3, 4], "dropped": [], "skipped": ""}]
    with pytest.raises(InvalidInput, match="noise_contributors"):
        fedavg_receipt("r", "secagg", rounds, 4, ddp, None)


def test_a_distributed_calibration_for_fewer_clients_than_a_round_sums_is_refused() -> None:
    """The calibration's scale keeps sums of max_clients noisy vectors inside the ring; more could wrap."""
    ddp = calibrate_distributed(8, 1e-5, 2, 0.5, 62, 2, 2)
    agg = fedavg.SecAggAggregator("127.0.0.1:1", (), clip=0.5, max_total_samples=427)
    with pytest.raises(InvalidInput, match="ring room for sums of 2 clients, the run sums up to 6"):
        fedavg.check_run(fedavg.FedAvgConfig(rounds=2, clip=0.5, ddp=ddp), agg, 6, 62, [71] * 6)
    fine = calibrate_distributed(8, 1e-5, 2, 0.5, 62, 4, 6)
    fedavg.check_run(fedavg.FedAvgConfig(rounds=2, clip=0.5, ddp=fine), agg, 6, 62, [71] * 6)
