"""Federated learning pieces as function calls: the variates behind splits and initial weights, the client
splits, the models' gradients, L2 clipping and the plain weighted mean."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcnet.errors import InvalidInput
from mpcnet.fl import data, fedavg, models
from mpcnet.fl.sampling import Draws


def test_draws_have_the_right_moments_and_repeat_under_a_seed() -> None:
    d = Draws.seeded("moments")
    u = d.uniform(200_000)
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    z = d.normal(200_001)
    assert len(z) == 200_001 and abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(float(np.mean(np.abs(z) > 1.96)) - 0.05) < 0.003  # the tails too, not only two moments
    for shape in (0.3, 1.0, 4.5):
        g = d.gamma(shape, 100_000)
        assert g.min() > 0 and abs(g.mean() - shape) < 0.03 * max(shape, 1) and abs(g.var() - shape) < 0.08 * max(shape, 1)
    p = d.dirichlet(0.5, 4, 1000)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_array_equal(Draws.seeded("x").normal(10), Draws.seeded("x").normal(10))
    assert not np.array_equal(Draws.seeded("x").normal(10), Draws.seeded("y").normal(10))
    assert sorted(Draws.seeded("p").permutation(50).tolist()) == list(range(50))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(10, 400), clients=st.integers(1, 10))
def test_iid_split_is_a_balanced_partition(n: int, clients: int) -> None:
    parts = data.split_iid(n, clients)
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_dirichlet_split_is_a_partition_skewed_by_alpha() -> None:
    y = np.repeat(np.arange(10), 100)

    def skew(alpha: float) -> float:  # mean share of a client's most common label
        parts = data.split_dirichlet(y, 10, alpha)
        assert sorted(np.concatenate(parts).tolist()) == list(range(1000))
        return float(np.mean([np.bincount(y[p], minlength=10).max() / len(p) for p in parts]))

    assert skew(0.1) > 0.5 > skew(100.0)
    assert skew(100.0) < 0.2  # near IID: about a tenth each
    with pytest.raises(InvalidInput):
        data.split_dirichlet(y, 10, 0.0)


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_model_gradients_match_finite_differences(kind: str) -> None:
    m = models.make_model(kind, 5, 3, hidden=4)
    d = Draws.seeded("grad")
    p = d.normal(m.n_params) * 0.5
    x = d.normal(40).reshape(8, 5)
    y = (d.uint64(8) % np.uint64(3)).astype(np.int64)
    _, g = m.loss_grad(p, x, y)
    eps = 1e-6
    for i in range(0, m.n_params, max(1, m.n_params // 15)):
        e = np.zeros(m.n_params)
        e[i] = eps
        num = (m.loss_grad(p + e, x, y)[0] - m.loss_grad(p - e, x, y)[0]) / (2 * eps)
        assert abs(num - g[i]) < 1e-6, (i, num, g[i])


def test_clip_l2_bounds_the_norm_and_keeps_the_direction() -> None:
    v = np.array([3.0, 4.0])
    np.testing.assert_allclose(fedavg.clip_l2(v, 1.0), [0.6, 0.8])
    np.testing.assert_array_equal(fedavg.clip_l2(v, 10.0), v)
    # a finite update whose squares overflow is clipped like any other, not zeroed (bound / inf)
    np.testing.assert_allclose(fedavg.clip_l2(np.array([3e200, -4e200]), 1.0), [0.6, -0.8])


def test_plain_aggregator_is_the_sample_weighted_mean_of_those_who_stayed() -> None:
    ups = [fedavg.Update(1, np.array([1.0, 0.0]), 10), fedavg.Update(2, np.array([0.0, 1.0]), 30),
           fedavg.Update(3, np.array([9.0, 9.0]), 5)]
    out = fedavg.PlainAggregator().aggregate(1, ups, drop=[3])
    assert out.included == [1, 2] and out.dropped == [3] and out.total_samples == 40
    np.testing.assert_allclose(out.mean, [0.25, 0.75])


def test_fedavg_learns_breast_cancer_close_to_centralised_training() -> None:
    ds = data.load("breast_cancer")
    m = models.make_model("logreg", ds.n_features, ds.n_classes)
    trainer = models.SgdTrainer(m, epochs=1, lr=0.05)
    hist = fedavg.run_fedavg(m, trainer, ds, data.split_iid(len(ds.y_train), 10), fedavg.FedAvgConfig(rounds=5),
                             fedavg.PlainAggregator())
    central = fedavg.centralised(m, models.SgdTrainer(m, epochs=5, lr=0.05), ds)
    assert hist.accuracy[0] < 0.7 < 0.93 < hist.accuracy[-1]  # it learned: from a constant guess to a classifier
    assert abs(hist.accuracy[-1] - central) < 0.04
    assert [r.round for r in hist.rounds] == [1, 2, 3, 4, 5] and all(not r.skipped for r in hist.rounds)


def test_dp_calibration_meets_the_target_and_is_tight() -> None:
    from mpcnet.fl import privacy
    dp = privacy.calibrate(2.0, 1e-5, 10, 0.5, clip=0.5)
    spent = privacy.epsilon_spent(dp.noise_multiplier, 1e-5, 10, 0.5)
    assert spent <= 2.0 and privacy.epsilon_spent(dp.noise_multiplier * 0.99, 1e-5, 10, 0.5) > 2.0 * 0.99
    assert dp.noise_std == pytest.approx(dp.noise_multiplier * 0.5)
    # more rounds or a higher sampling rate need more noise for the same epsilon
    assert privacy.calibrate(2.0, 1e-5, 40, 0.5, 0.5).noise_multiplier > dp.noise_multiplier
    assert privacy.calibrate(2.0, 1e-5, 10, 1.0, 0.5).noise_multiplier > dp.noise_multiplier
    assert privacy.calibrate(float("inf"), 1e-5, 10, 1.0, 0.5).noise_multiplier == 0.0
    with pytest.raises(InvalidInput):
        privacy.calibrate(1.0, 0.0, 10, 1.0, 0.5)


def test_central_dp_noise_has_the_calibrated_spread() -> None:
    from mpcnet.fl import privacy
    z = privacy.gaussian_noise(100_000, 0.7)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 0.7) < 0.01


def test_dp_fedavg_at_a_small_epsilon_really_moves_the_model() -> None:
    """(The epsilon-8 accuracy claim is test_fl_dp_release.py's, deterministic and at the issue's 3 points.)"""
    from mpcnet.fl import privacy
    ds = data.load("breast_cancer")
    m = models.make_model("logreg", ds.n_features, ds.n_classes)
    trainer = models.SgdTrainer(m, epochs=1, lr=0.05)
    parts = data.split_iid(len(ds.y_train), 20)
    base = fedavg.run_fedavg(m, trainer, ds, parts, fedavg.FedAvgConfig(rounds=10, clip=0.5), fedavg.PlainAggregator())
    # the noise is really there: at epsilon 0.5 (z = 24) each round moves every coordinate by ~0.6
    tiny = privacy.calibrate(0.5, 1e-5, 10, 1.0, clip=0.5)
    noisy = fedavg.run_fedavg(m, trainer, ds, parts, fedavg.FedAvgConfig(rounds=10, clip=0.5, dp=tiny),
                              fedavg.PlainAggregator())
    assert noisy.params is not None and base.params is not None
    assert float(np.linalg.norm(noisy.params - base.params)) > 3.0


@pytest.mark.parametrize("graph", ["full", "sparse"])
def test_the_bench_in_memory_secagg_floor_computes_the_weighted_mean_of_who_stayed(graph: str) -> None:
    from mpcnet.bench.fedavg_bench import SecAggMathAggregator
    rng = np.random.default_rng(7)  # test data, not key material
    updates = [fedavg.Update(cid, rng.uniform(-1, 1, 40), int(rng.integers(1, 30))) for cid in range(1, 32)]
    secure = SecAggMathAggregator(clip=2.0, max_total_samples=1000, graph=graph).aggregate(4, updates, [2, 9])
    clear = fedavg.PlainAggregator().aggregate(4, updates, [2, 9])
    assert secure.included == clear.included and secure.dropped == [2, 9]
    assert secure.total_samples == clear.total_samples
    step = 2 * 2.0 / ((2**32 - 1) // 1000)  # the quantization step: the weighted mean is within one
    assert secure.mean is not None and clear.mean is not None
    assert np.max(np.abs(secure.mean - clear.mean)) < step
    # below the threshold (21 of 31 on the complete graph, 8 of 11 in a SecAgg+ neighbourhood): the round is
    # skipped with nobody included, as the networked one
    below = SecAggMathAggregator(2.0, 1000, graph).aggregate(5, updates, list(range(1, 25)))
    assert below.skipped.startswith("SecAgg round aborted") and below.mean is None
    assert below.included == [] and below.dropped == list(range(1, 25))
    with pytest.raises(InvalidInput, match="real-valued"):
        SecAggMathAggregator(2.0, 1000, graph).aggregate(5, [fedavg.Update(1, np.zeros(3), 1, integer=True),
                                                             fedavg.Update(2, np.zeros(3), 1, integer=True)], [])


@pytest.mark.parametrize("build, words", [
    (lambda: models.make_model("mlp", 30, 2, hidden=0), "hidden unit"),
    (lambda: models.make_model("logreg", 30, 1), "2 classes"),
    (lambda: models.make_model("cnn", 30, 2), "unknown model"),
    (lambda: models.SgdTrainer(models.make_model("logreg", 3, 2), epochs=0), "epochs >= 1"),
    (lambda: models.SgdTrainer(models.make_model("logreg", 3, 2), batch_size=0), "batch size >= 1"),
    (lambda: models.SgdTrainer(models.make_model("logreg", 3, 2), lr=-0.1), "learning rate > 0"),
    (lambda: models.SgdTrainer(models.make_model("logreg", 3, 2), lr=float("nan")), "learning rate > 0"),
    (lambda: fedavg.FedAvgConfig(rounds=0), "rounds must be >= 1"),
    (lambda: fedavg.FedAvgConfig(dropout=1.0), "in [0, 1)"),
    (lambda: fedavg.FedAvgConfig(dropout=-0.1), "in [0, 1)"),
    (lambda: fedavg.FedAvgConfig(clip=0.0), "clip"),
    (lambda: fedavg.FedAvgConfig(clip=float("inf")), "clip"),
    (lambda: fedavg.FedAvgConfig(clients_per_round=-1), ">= 0"),
])
def test_fedavg_settings_that_cannot_work_are_refused_when_made(build: object, words: str) -> None:
    """Before this check, hidden=0 was a ZeroDivisionError deep in init, and dropout 1.5 or a negative learning
    rate ran to the end."""
    with pytest.raises(InvalidInput, match=words.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        build()  # type: ignore[operator]


def test_a_secagg_run_with_one_client_a_round_is_refused_before_it_starts() -> None:
    from mpcnet.bench.fedavg_bench import SecAggMathAggregator
    ds = data.load("breast_cancer")
    m = models.make_model("logreg", ds.n_features, ds.n_classes)
    trainer = models.SgdTrainer(m, epochs=1, lr=0.05)
    parts = data.split_iid(len(ds.y_train), 4)
    trained: list[int] = []

    class Counting(models.SgdTrainer):
        def train(self, *a: object, **k: object) -> np.ndarray:  # type: ignore[override]
            trained.append(1)
            return super().train(*a, **k)  # type: ignore[arg-type]

    counting = Counting(m, epochs=1, lr=0.05)
    with pytest.raises(InvalidInput, match="at least 2 clients in a round; this run samples 1"):
        fedavg.run_fedavg(m, counting, ds, parts, fedavg.FedAvgConfig(rounds=2, clients_per_round=1),
                          SecAggMathAggregator(5.0, len(ds.y_train), "full"))
    assert trained == []  # refused before any client trained
    # plain averaging takes a round of one; SecAgg takes two
    one = fedavg.run_fedavg(m, trainer, ds, parts, fedavg.FedAvgConfig(rounds=1, clients_per_round=1),
                            fedavg.PlainAggregator())
    assert one.rounds[0].included and not one.rounds[0].skipped
    two = fedavg.run_fedavg(m, trainer, ds, parts, fedavg.FedAvgConfig(rounds=1, clients_per_round=2),
                            SecAggMathAggregator(5.0, len(ds.y_train), "full"))
    assert len(two.rounds[0].included) == 2 and not two.rounds[0].skipped


def test_check_run_refuses_what_run_fedavg_would_before_anything_is_spent() -> None:
    """`mpcnet fedavg` calls check_run before charging the ledger: what it refuses, run_fedavg refuses too."""
    from mpcnet.fl.privacy import calibrate
    plain = fedavg.PlainAggregator()
    with pytest.raises(InvalidInput, match=r"clients per round must be in \[1, 20\].*got 50"):
        fedavg.check_run(fedavg.FedAvgConfig(clients_per_round=50), plain, 20)
    dp = calibrate(1.0, 1e-5, 10, 1.0, 0.5)
    with pytest.raises(InvalidInput, match="the DP calibration is for clip 0.5, the run clips at 5"):
        fedavg.check_run(fedavg.FedAvgConfig(dp=dp), plain, 20)
    fedavg.check_run(fedavg.FedAvgConfig(clip=0.5, dp=dp), plain, 20)  # a run that can start passes


class _Stub:
    """An aggregator as check_run sees it."""

    def __init__(self, name: str = "secagg", min_clients: int = 2, clip: float | None = None) -> None:
        self.name, self.min_clients = name, min_clients
        if clip is not None:
            self.clip = clip


def test_sdk_runs_that_would_leak_more_or_skip_everything_are_refused_before_they_start() -> None:
    """Each of these ran to the end before: a calibration for 2 rounds used for 8 (epsilon 2.14 spent, 1.0 on
    the label), --per-round silently ignored under central DP, one client under SecAgg with every round skipped,
    and an aggregator quantizing at a smaller clip than the run's (the large updates saturated)."""
    from mpcnet.fl.distributed_dp import calibrate_distributed
    from mpcnet.fl.privacy import calibrate
    dp = calibrate(1.0, 1e-5, 2, 1.0, 0.25)
    with pytest.raises(InvalidInput, match="the DP calibration covers 2 rounds, the run has 8: it would spend more "
                                           "than epsilon 1; calibrate for 8 rounds"):
        fedavg.check_run(fedavg.FedAvgConfig(rounds=8, clip=0.25, dp=dp), _Stub("plain", 1), 6)
    ddp = calibrate_distributed(1.0, 1e-5, 2, clip=0.25, dim=62, min_contributors=4, max_clients=6)
    with pytest.raises(InvalidInput, match="distributed-DP calibration covers 2 rounds, the run has 3"):
        fedavg.check_run(fedavg.FedAvgConfig(rounds=3, clip=0.25, ddp=ddp), _Stub("plain", 1), 6)
    fedavg.check_run(fedavg.FedAvgConfig(rounds=1, clip=0.25, dp=dp), _Stub("plain", 1), 6)  # fewer: fine
    with pytest.raises(InvalidInput, match="clients per round 2 with central DP"):
        fedavg.check_run(fedavg.FedAvgConfig(rounds=2, clip=0.25, dp=dp, clients_per_round=2), _Stub(), 6)
    with pytest.raises(InvalidInput, match="this run has 1 in all, so every round would be skipped"):
        fedavg.check_run(fedavg.FedAvgConfig(rounds=2, clip=0.25, dp=dp), _Stub(), 1)
    with pytest.raises(InvalidInput, match="quantizes updates of L2 norm up to 0.01, the run clips them at 5"):
        fedavg.check_run(fedavg.FedAvgConfig(rounds=2, clip=5.0), _Stub(clip=0.01), 6)
    fedavg.check_run(fedavg.FedAvgConfig(rounds=2, clip=5.0), _Stub(clip=5.0), 6)


def test_a_trainer_result_that_is_no_parameter_vector_is_refused_naming_the_client() -> None:
    """A vector of length 1 used to broadcast into a garbage model, and NaN to spread through plain averaging."""
    ds = data.load("breast_cancer")
    m = models.make_model("logreg", ds.n_features, ds.n_classes)
    parts = data.split_iid(len(ds.y_train), 4)

    class Returning:
        def __init__(self, make: object) -> None:
            self.make = make

        def train(self, params: np.ndarray, x: np.ndarray, y: np.ndarray, draws: Draws) -> object:
            return self.make(params)  # type: ignore[operator]

    cfg = fedavg.FedAvgConfig(rounds=1)
    for make, words in ((lambda p: np.zeros(1), r"client 1, round 1: the trainer returned parameters of shape "
                                                r"\(1,\); the model has 62"),
                        (lambda p: np.full_like(p, np.nan), "client 1, round 1: the trainer returned non-finite"),
                        (lambda p: np.zeros((2, 31)), r"shape \(2, 31\)")):
        with pytest.raises(InvalidInput, match=words):
            fedavg.run_fedavg(m, Returning(make), ds, parts, cfg, fedavg.PlainAggregator())
    # a list or float32 is a parameter vector all the same
    for make in (lambda p: list(p + 0.01), lambda p: (p + 0.01).astype(np.float32)):
        hist = fedavg.run_fedavg(m, Returning(make), ds, parts, cfg, fedavg.PlainAggregator())
        assert hist.params is not None and hist.params.dtype == np.float64
    with pytest.raises(InvalidInput, match="the model takes 64 features and 10 classes, the data has 30 features "
                                           "and 2 classes"):
        fedavg.run_fedavg(models.make_model("logreg", 64, 10), models.SgdTrainer(m), ds, parts, cfg,
                          fedavg.PlainAggregator())


def test_a_secagg_aggregator_refuses_more_samples_than_its_quantization_range_before_any_call() -> None:
    agg = fedavg.SecAggAggregator("127.0.0.1:9", (), clip=0.5, max_total_samples=10)  # nothing listens there
    updates = [fedavg.Update(1, np.zeros(3), 8), fedavg.Update(2, np.zeros(3), 8)]
    with pytest.raises(InvalidInput, match="the sampled clients hold 16 samples, more than the aggregator's "
                                           "max_total_samples 10"):
        agg.aggregate(1, updates, [])


def test_dirichlet_with_a_tiny_alpha_is_nearly_one_hot_not_uniform() -> None:
    """Draws.gamma's U^(1/alpha) boost underflows to 0 for every category of a row at small alpha; the row used
    to come out uniform (1/k each): alpha 1e-4 gave less skew than alpha 0.01."""
    p = Draws.seeded("x", "t").dirichlet(0.001, 2, 4000)
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(axis=1), 1.0)
    assert np.mean(np.abs(p[:, 0] - 0.5) < 1e-9) < 0.01  # was 0.26 of the rows exactly 50/50
    assert abs(float(np.mean(p[:, 0])) - 0.5) < 0.05  # still symmetric: each category wins about half the rows
    ds = data.load("digits")
    classes = [len(np.unique(ds.y_train[part])) for part in data.split_dirichlet(ds.y_train, 5, 1e-4)]
    assert np.mean(classes) <= 3  # nearly every class to one client: 2 each on average (was 6-8)
    # the log-space draws are the same variates as gamma() from the same stream
    np.testing.assert_allclose(np.exp(Draws.seeded("g").log_gamma(0.7, 50)), Draws.seeded("g").gamma(0.7, 50))


def test_a_trainer_that_updates_its_input_in_place_cannot_bypass_the_aggregator() -> None:
    """torch.from_numpy(params) + optimizer.step() updates the array it was given: with the global model itself
    that trained it client after client in the clear, and every aggregated mean was 0."""
    ds = data.load("breast_cancer")
    model = models.make_model("logreg", ds.n_features, ds.n_classes)
    parts = data.split_iid(len(ds.y_train), 10)

    class InPlace:
        def train(self, params, x, y, draws):  # type: ignore[no-untyped-def]
            _, g = model.loss_grad(params, x, y)
            params -= 0.05 * g
            return params

    class Copying:
        def train(self, params, x, y, draws):  # type: ignore[no-untyped-def]
            _, g = model.loss_grad(params, x, y)
            return params - 0.05 * g

    cfg = fedavg.FedAvgConfig(rounds=2)
    in_place = fedavg.run_fedavg(model, InPlace(), ds, parts, cfg, fedavg.PlainAggregator())
    copying = fedavg.run_fedavg(model, Copying(), ds, parts, cfg, fedavg.PlainAggregator())
    assert all(np.linalg.norm(o.mean) > 0 for o in in_place.rounds)
    np.testing.assert_array_equal(in_place.params, copying.params)


def test_epsilon_inf_runs_are_reproducible_from_the_seed() -> None:
    """No noise, no amplification to protect: the sample and the drops come from the seed, so the SecAgg and plain
    runs of one `mpcnet fedavg --epsilon inf` see the same clients (they used to come from OS entropy)."""
    from mpcnet.fl.privacy import calibrate
    ds = data.load("breast_cancer")
    model = models.make_model("logreg", ds.n_features, ds.n_classes)
    parts = data.split_iid(len(ds.y_train), 20)
    tr = models.SgdTrainer(model)
    cfg = fedavg.FedAvgConfig(rounds=3, clip=1.0, dropout=0.3, dp=calibrate(float("inf"), 1e-5, 3, 0.5, 1.0))
    assert cfg.dp is not None and cfg.dp.noise_multiplier == 0
    a = fedavg.run_fedavg(model, tr, ds, parts, cfg, fedavg.PlainAggregator())
    b = fedavg.run_fedavg(model, tr, ds, parts, cfg, fedavg.PlainAggregator())
    assert [o.included for o in a.rounds] == [o.included for o in b.rounds]
    assert [o.dropped for o in a.rounds] == [o.dropped for o in b.rounds]
    assert any(o.dropped for o in a.rounds) and any(len(o.included) < 20 for o in a.rounds)  # really sampled
    np.testing.assert_array_equal(a.params, b.params)
    # with noise, the sample stays unseen (OS entropy): two runs sample differently (equal with p ~ 2^-60)
    noisy = fedavg.FedAvgConfig(rounds=3, clip=1.0, dp=calibrate(8.0, 1e-5, 3, 0.5, 1.0))
    c = fedavg.run_fedavg(model, tr, ds, parts, noisy, fedavg.PlainAggregator())
    d = fedavg.run_fedavg(model, tr, ds, parts, noisy, fedavg.PlainAggregator())
    assert [o.included for o in c.rounds] != [o.included for o in d.rounds]


class _SecAggStub(_Stub):
    def __init__(self, graph: str) -> None:
        super().__init__()
        self.graph, self.threshold_fraction = graph, 2 / 3


def test_a_run_whose_every_round_must_be_skipped_is_refused_before_it_starts() -> None:
    """Without central DP the same number drops every round: 2 of 3 left every SecAgg round one survivor under the
    threshold of 2, and the run exited 0 with an untrained model."""
    with pytest.raises(InvalidInput, match="2 leave every round and 1 remain: secagg would skip every round"):
        fedavg.check_run(fedavg.FedAvgConfig(rounds=2, dropout=0.5), _SecAggStub("full"), 3)
    with pytest.raises(InvalidInput, match="1 leave every round and 0 remain: plain would skip every round"):
        fedavg.check_run(fedavg.FedAvgConfig(rounds=2, dropout=0.6, clients_per_round=1), _Stub("plain", 1), 5)
    fedavg.check_run(fedavg.FedAvgConfig(rounds=2, dropout=0.3), _SecAggStub("full"), 3)  # 1 drops, 2 = t remain
    # SecAgg+: which clients drop decides, so only a certain abort is refused: fewer in all than t, or too few to
    # give each of the n neighbourhoods (k + 1 clients each, every survivor in k + 1 of them) t survivors
    from mpcnet.secagg.graph import default_degree
    fedavg.check_run(fedavg.FedAvgConfig(rounds=2, dropout=0.1), _SecAggStub("sparse"), 100)
    fedavg.check_run(fedavg.FedAvgConfig(rounds=2, dropout=0.2), _SecAggStub("sparse"), 100)  # some rounds complete
    t, k = fedavg.secagg_threshold(30, "sparse", 2 / 3), default_degree(30)
    assert 21 * (k + 1) < t * 30 <= 22 * (k + 1)  # 30 clients: 9 drops leave some neighbourhood short, 8 may not
    with pytest.raises(InvalidInput, match="some client's neighbourhood .* would keep fewer than the threshold"):
        # 9 drop: 21 * 11 < 8 * 30
        fedavg.check_run(fedavg.FedAvgConfig(rounds=2, dropout=0.3), _SecAggStub("sparse"), 30)
    fedavg.check_run(fedavg.FedAvgConfig(rounds=2, dropout=8 / 30), _SecAggStub("sparse"), 30)
    t = fedavg.secagg_threshold(100, "sparse", 2 / 3)
    with pytest.raises(InvalidInput, match=f"fewer than the threshold {t} survive"):
        fedavg.check_run(fedavg.FedAvgConfig(rounds=2, dropout=(101 - t) / 100), _SecAggStub("sparse"), 100)


def test_planned_drops_round_halves_up() -> None:
    assert [fedavg.planned_drops(d, n) for d, n in ((0.05, 10), (0.25, 2), (0.25, 6), (0.1, 20), (0.0, 7),
                                                    (0.29, 50), (0.7, 45))] == [1, 1, 2, 2, 0, 15, 32]


def test_a_client_without_samples_is_refused_naming_it() -> None:
    """SecAgg's FedAvg encoding needs n_k >= 1: an empty client used to be a silent dropout of every SecAgg round
    (and a weight-0 client of plain averaging), so the two aggregators summed different clients."""
    ds = data.load("breast_cancer")
    model = models.make_model("logreg", ds.n_features, ds.n_classes)
    parts = data.split_iid(len(ds.y_train), 4)
    parts[2] = parts[2][:0]
    with pytest.raises(InvalidInput, match=r"client\(s\) \[3\] hold no training samples"):
        fedavg.run_fedavg(model, models.SgdTrainer(model), ds, parts, fedavg.FedAvgConfig(rounds=1),
                          fedavg.PlainAggregator())


def test_fedavg_refuses_a_coordinator_that_would_publish_the_members_before_it_creates_a_round() -> None:
    """An older coordinator ignores withhold_membership, and creating a round already publishes its members: the
    aggregator asks with a stand-in round first, so the sampled ids never reach such a coordinator."""
    from concurrent import futures

    import grpc

    from mpcnet.errors import MpcnetError
    from mpcnet.v1 import secagg_pb2 as spb
    from mpcnet.v1 import secagg_pb2_grpc as spbg

    created: list[list[int]] = []

    class OlderCoordinator(spbg.SecAggServicer):
        def CreateRound(self, request: Any, context: Any) -> Any:
            created.append(list(request.params.client_ids))
            p = spb.SecAggRoundParams()
            p.CopyFrom(request.params)
            p.ClearField("withhold_membership")  # what a coordinator without the field echoes
            return spb.SecAggCreateRoundReply(round_id=p.round_id, params=p)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    spbg.add_SecAggServicer_to_server(OlderCoordinator(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        agg = fedavg.SecAggAggregator(f"127.0.0.1:{port}", (), clip=1.0, max_total_samples=100)
        updates = [fedavg.Update(c, np.zeros(4), 10) for c in (17, 23, 42)]
        with pytest.raises(MpcnetError, match="would publish FedAvg rounds' members .* upgrade it"):
            agg.aggregate(1, updates, [])
    finally:
        server.stop(None)
    assert created == [[1, 2]]  # the probe's stand-in ids only, never the sample 17, 23, 42
