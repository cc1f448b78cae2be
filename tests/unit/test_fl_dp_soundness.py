"""What makes a FedAvg run's epsilon true, beyond the noise itself (found by a review of the DP maths):

* weights under DP never depend on other clients' data (a cap derived from the clients' mean size changed every
  client's weight when one joined: one client then moved the sum by ~19 C, not C);
* central DP's Poisson sample is secret: drawn from OS entropy, and its members, their number and the rounds'
  thresholds are withheld from what leaves with the model (a sample recomputable from the public seed voids the
  amplification: epsilon 8 claimed, ~224 true at q = 0.05, 200 rounds);
* a round too small to aggregate (which is skipped, depending on how many were sampled) is priced into delta,
  and a run where that is not negligible is refused; an empty sample releases the noise alone;
* under central DP the update is clipped below C by what SecAgg's quantization can add, so that the update as
  summed has norm at most C.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpcnet.errors import InvalidInput
from mpcnet.fl import data, fedavg, models, privacy
from mpcnet.fl.sampling import Draws
from mpcnet.receipt import fedavg_receipt, public_rounds


@settings(max_examples=50, deadline=None, database=None)
@given(sizes=st.lists(st.integers(1, 500), min_size=1, max_size=30), newcomer=st.integers(1, 100_000),
       cap=st.sampled_from([0, 1, 20, 300]))
def test_a_clients_dp_weight_is_its_own_business(sizes: list[int], newcomer: int, cap: int) -> None:
    """Property: adding a client, of any size, leaves every other client's weight as it was; weights are <= 1."""
    parts = [np.arange(n) for n in sizes]
    before = fedavg.dp_weights(parts, cap)
    after = fedavg.dp_weights(parts + [np.arange(newcomer)], cap)
    assert all(after[k] == w for k, w in before.items())
    assert all(0 < w <= 1 for w in after.values())
    if cap == 0:
        assert set(after.values()) == {1.0}
    else:
        assert after[len(sizes) + 1] == min(newcomer / cap, 1.0)


def _zero_trainer(dim: int) -> object:
    class Trainer:
        def train(self, params: np.ndarray, x: np.ndarray, y: np.ndarray, draws: object) -> np.ndarray:
            return params + 1.0  # every client moves every coordinate by 1 (clipped below)
    return Trainer()


def _tiny_run(dp: privacy.CentralDp, n_clients: int, rounds: int, seed: str = "s",
              dropout: float = 0.0, aggregator: object | None = None) -> fedavg.History:
    ds = data.load("breast_cancer")
    m = models.make_model("logreg", ds.n_features, ds.n_classes)
    parts = data.split_iid(len(ds.y_train), n_clients)
    cfg = fedavg.FedAvgConfig(rounds=rounds, clip=dp.clip, dp=dp, seed=seed, dropout=dropout)
    return fedavg.run_fedavg(m, _zero_trainer(m.n_params), ds, parts, cfg, aggregator or fedavg.PlainAggregator())


def test_central_dps_sample_is_not_a_function_of_the_public_seed() -> None:
    dp = privacy.calibrate(8.0, 1e-5, 3, 0.5, clip=0.5)
    a, b = (_tiny_run(dp, 60, 3, seed="same") for _ in range(2))
    # P(two Poisson(0.5) samples of 60 clients agree in all 3 rounds) = 2^-180
    assert [r.sampled for r in a.rounds] != [r.sampled for r in b.rounds]
    # without DP the run stays reproducible from its seed
    ds = data.load("breast_cancer")
    m = models.make_model("logreg", ds.n_features, ds.n_classes)
    parts = data.split_iid(len(ds.y_train), 20)
    cfg = fedavg.FedAvgConfig(rounds=2, clients_per_round=5, seed="same", dropout=0.2)
    runs = [fedavg.run_fedavg(m, _zero_trainer(m.n_params), ds, parts, cfg, fedavg.PlainAggregator())
            for _ in range(2)]
    assert [(r.sampled, r.dropped) for r in runs[0].rounds] == [(r.sampled, r.dropped) for r in runs[1].rounds]


def test_central_dps_denominator_is_the_public_constant_q_times_n() -> None:
    """Every client's update is clipped to (0.5 / sqrt(d)) * ones; with a negligible noise std the released step
    is sum(included) * u / (q N), whoever and however many were sampled."""
    dp = privacy.calibrate(8.0, 1e-5, 1, 0.5, clip=0.5)
    quiet = privacy.CentralDp(dp.epsilon, dp.delta, 1e-12, 1, 0.5, 0.5)
    hist = _tiny_run(quiet, 40, 1)
    assert hist.params is not None
    d = hist.params.size
    step = hist.params - models.make_model("logreg", 30, 2).init(Draws.seeded("s", "init"))
    want = len(hist.rounds[0].included) * (0.5 / math.sqrt(d)) / (0.5 * 40)
    assert np.allclose(step, want, atol=1e-9)


def test_an_empty_central_dp_round_releases_the_noise_alone() -> None:
    """At q = 0.02 with 5 clients most rounds sample nobody: those rounds still move the model by the noise (the
    accounted mechanism releases it), and none of them is skipped."""
    dp = privacy.CentralDp(8.0, 1e-5, 1.0, 40, 0.02, 0.5)
    hist = _tiny_run(dp, 5, 40)
    empty = [r for r in hist.rounds if not r.sampled]
    assert len(empty) >= 20 and not any(r.skipped for r in empty)
    assert all(r.mean is not None and np.std(r.mean) > 0 for r in empty)


def test_rounds_too_small_to_aggregate_are_priced_into_delta_against_a_brute_force_sum() -> None:
    secagg = fedavg.SecAggAggregator("127.0.0.1:1", (), clip=0.5, max_total_samples=455)
    # complete graph: skipped when one client is sampled or survivors fall below t = ceil(2/3 n)
    assert fedavg.round_too_small(secagg, 1, 0) and not fedavg.round_too_small(secagg, 0, 0)
    assert not fedavg.round_too_small(secagg, 9, 3) and fedavg.round_too_small(secagg, 9, 4)
    plain = fedavg.PlainAggregator()
    assert not fedavg.round_too_small(plain, 1, 0) and fedavg.round_too_small(plain, 3, 3)
    n, q, p, rounds, eps = 12, 0.6, 0.1, 7, 2.0
    dp = privacy.CentralDp(eps, 1e-5, 1.0, rounds, q, 0.5)
    # brute force over every sample and dropout pattern of 12 clients (2^12 samples)
    total = 0.0
    for mask in range(2**n):
        s = bin(mask).count("1")
        for dropped in range(s + 1):
            if fedavg.round_too_small(secagg, s, dropped):
                total += q**s * (1 - q)**(n - s) * math.comb(s, dropped) * p**dropped * (1 - p)**(s - dropped)
    got = privacy.small_round_delta(dp, n, lambda s, d: fedavg.round_too_small(secagg, s, d), p)
    assert got == pytest.approx(min(1.0, (1 + math.exp(eps)) * rounds * total), rel=1e-9)
    # no DP noise, no addition; a sure-to-be-large sample adds nothing
    assert privacy.small_round_delta(privacy.CentralDp(math.inf, 1e-5, 0.0, 5, q, 0.5), n, lambda s, d: True, p) == 0
    assert privacy.small_round_delta(privacy.CentralDp(8.0, 1e-5, 1.0, 5, 1.0, 0.5), 20,
                                     lambda s, d: fedavg.round_too_small(secagg, s, d), 0.0) == 0.0


def test_a_central_dp_run_whose_small_rounds_are_not_negligible_is_refused_before_it_starts() -> None:
    secagg = fedavg.SecAggAggregator("127.0.0.1:1", (), clip=0.5, max_total_samples=455)
    dp = privacy.calibrate(8.0, 1e-5, 10, 0.3, clip=0.5)
    with pytest.raises(InvalidInput, match=r"with 20 clients, sampling rate 0.3 and dropout 0, secagg would skip a "
                                           r"round too small to aggregate often enough to add .* to delta 1e-05"):
        fedavg.check_run(fedavg.FedAvgConfig(rounds=10, clip=0.5, dp=dp), secagg, 20)
    fedavg.check_run(fedavg.FedAvgConfig(rounds=10, clip=0.5, dp=dp), secagg, 200)  # 60 expected: fine
    assert 0 < fedavg.skipped_rounds_delta(fedavg.FedAvgConfig(rounds=10, clip=0.5, dp=dp), secagg, 100) < 1e-6
    # a planned dropout near SecAgg's 1/3 makes aborts likely even with everyone sampled
    every = privacy.calibrate(8.0, 1e-5, 10, 1.0, clip=0.5)
    with pytest.raises(InvalidInput, match="lower the dropout"):
        fedavg.check_run(fedavg.FedAvgConfig(rounds=10, clip=0.5, dp=every, dropout=0.3), secagg, 30)


def test_the_receipt_withholds_a_secret_samples_members_and_size_and_lists_them_otherwise() -> None:
    rounds = [{"round": 1, "sampled": [1, 2, 3], "included": [1, 3], "dropped": [2], "skipped": "",
               "seconds": 0.1}, {"round": 2, "sampled": [4], "included": [], "dropped": [],
                                 "skipped": "1 client(s) sampled: SecAgg needs at least 2", "seconds": 0.0}]
    secret = privacy.calibrate(8.0, 1e-5, 2, 0.5, clip=0.5)
    rc = fedavg_receipt("t", "secagg", rounds, 10, secret, None, small_rounds_delta=3e-9)
    assert rc["participants"]["rounds"] == [{"round": 1, "skipped": ""}, {"round": 2, "skipped": "skipped"}]
    assert "withheld" in rc["participants"] and "withheld" in rc["layers"][1]
    assert rc["differential_privacy"]["delta"] == pytest.approx(1e-5 + 3e-9)
    assert "zero-out" in rc["differential_privacy"]["unit"] and "rounds [2]" in rc["differential_privacy"][
        "skipped_rounds"]
    assert public_rounds(rounds, secret) == rc["participants"]["rounds"]
    # everyone every round (q = 1): no amplification is claimed, so the members are listed
    every = privacy.calibrate(8.0, 1e-5, 2, 1.0, clip=0.5)
    listed = fedavg_receipt("t", "secagg", rounds, 10, every, None)["participants"]["rounds"]
    assert listed[0]["included"] == [1, 3] and listed[0]["threshold"] == 2 and public_rounds(rounds, every) == rounds


def test_the_accountant_is_dp_accountings_for_zero_out_neighbours() -> None:
    from dp_accounting import dp_event, rdp
    from dp_accounting.privacy_accountant import NeighboringRelation
    acc = rdp.RdpAccountant(neighboring_relation=NeighboringRelation.REPLACE_SPECIAL)
    acc.compose(dp_event.PoissonSampledDpEvent(0.2, dp_event.GaussianDpEvent(1.3)), 25)
    assert privacy.epsilon_spent(1.3, 1e-5, 25, 0.2) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-12)


def test_central_dp_clips_below_c_by_what_the_quantization_can_add() -> None:
    from mpcnet.secagg.quantization import WeightedEncoder
    # a small range makes the steps coarse enough to see: W = 2^20 leaves 2^12 levels of 32 bits
    secagg = fedavg.SecAggAggregator("127.0.0.1:1", (), clip=0.5, max_total_samples=2**20)
    enc = WeightedEncoder(0.5, 2**20, 32)
    dim = 400
    assert secagg.quantization_slack(dim) == pytest.approx(math.sqrt(dim) * enc.step)
    dp = privacy.calibrate(8.0, 1e-5, 2, 1.0, clip=0.5)
    clip = fedavg.dp_clip(fedavg.FedAvgConfig(rounds=2, clip=0.5, dp=dp), secagg, dim)
    assert clip == pytest.approx(0.5 - secagg.quantization_slack(dim))
    assert fedavg.dp_clip(fedavg.FedAvgConfig(rounds=2, clip=0.5), secagg, dim) == 0.5  # no DP: no slack
    assert fedavg.dp_clip(fedavg.FedAvgConfig(rounds=2, clip=0.5, dp=dp), fedavg.PlainAggregator(), dim) == 0.5
    # the worst case the slack covers: every coordinate rounded a step outward, on a vector at the clipped norm
    worst = 0.0
    for trial in range(200):
        v = Draws.seeded(f"v{trial}").normal(dim)
        v = fedavg.clip_l2(v * 10, clip)  # norm exactly the DP clip
        summed, _ = enc.decode(enc.encode(v, 1))
        worst = max(worst, float(np.linalg.norm(summed)))
    assert worst <= 0.5
    # and without the slack the quantized update does exceed C
    over = max(float(np.linalg.norm(enc.decode(enc.encode(fedavg.clip_l2(Draws.seeded(f"w{t}").normal(dim) * 10, 0.5),
                                                          1))[0])) for t in range(50))
    assert over > 0.5


def test_a_zero_update_encodes_exactly_so_a_zeroed_out_client_adds_nothing() -> None:
    """Zero-out adjacency assumes the neighbouring client adds exactly 0; with an odd number of levels 0 fell
    between two grid points and was rounded to +-step/2 at random."""
    from mpcnet.secagg.quantization import WeightedEncoder
    for bound in (427, 455, 1000, 2**20, 3):
        enc = WeightedEncoder(5.0, bound, 32)
        assert enc.levels % 2 == 0
        codes = enc.encode(np.zeros(500), 1)[:-1]
        assert set(codes.tolist()) == {enc.levels // 2}


def test_the_central_dp_receipt_says_whom_the_epsilon_holds_against() -> None:
    rounds = [{"round": 1, "sampled": [1, 2], "included": [1, 2], "dropped": [], "skipped": ""}]
    dp = privacy.calibrate(8.0, 1e-5, 1, 1.0, clip=0.5)
    trust = " ".join(fedavg_receipt("t", "secagg", rounds, 2, dp, None)["trust_assumptions"])
    assert "holds against readers of the released model" in trust and "un-noised sum" in trust
    assert "not the round's sum" in trust  # FedAvg's rounds are sum_to_operator_only
