"""FedAvg through SecAgg on a local cluster: the secure model equals plain FedAvg up to quantization, dropouts
are SecAgg dropouts, a round below threshold is skipped with the model unchanged; `mpcnet fedavg` end to end."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import grpc
import numpy as np
import pytest

from mpcnet.cluster import REPO_ROOT, LocalCluster
from mpcnet.errors import InvalidInput
from mpcnet.fl import data, fedavg, models
from mpcnet.ledger import EpsilonLedger

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(3) as c:
        yield c


def setup(clients: int = 12) -> tuple[data.Dataset, models.Model, models.SgdTrainer, list[np.ndarray]]:
    ds = data.load("breast_cancer")
    m = models.make_model("logreg", ds.n_features, ds.n_classes)
    return ds, m, models.SgdTrainer(m, epochs=1, lr=0.05), data.split_dirichlet(ds.y_train, clients, 1.0)


def test_secure_fedavg_equals_plain_fedavg_up_to_quantization(cluster: LocalCluster) -> None:
    ds, m, trainer, parts = setup()
    cfg = fedavg.FedAvgConfig(rounds=3, dropout=0.2)  # two of each round's twelve leave mid-round
    agg = fedavg.SecAggAggregator(cluster.coordinator, cluster.auth_metadata, clip=cfg.clip,
                                  max_total_samples=len(ds.y_train))
    secure = fedavg.run_fedavg(m, trainer, ds, parts, cfg, agg)
    plain = fedavg.run_fedavg(m, trainer, ds, parts, cfg, fedavg.PlainAggregator())
    for s, p in zip(secure.rounds, plain.rounds):
        assert not s.skipped and len(s.dropped) == 2 and s.dropped == p.dropped
        assert s.included == p.included and set(s.included).isdisjoint(s.dropped)
        assert s.total_samples == p.total_samples  # the sample count is summed exactly
        # quantization error: below 2 * clip / L per element, L = floor((2^32 - 1) / W)
        step = 2 * cfg.clip / ((2**32 - 1) // len(ds.y_train))
        assert s.mean is not None and p.mean is not None
        assert np.abs(s.mean - p.mean).max() < step
    assert secure.params is not None and plain.params is not None
    assert np.abs(secure.params - plain.params).max() < 1e-4
    assert abs(secure.accuracy[-1] - plain.accuracy[-1]) <= 0.005
    # each round's sum went to the FedAvg server alone: the coordinator gives the clients' tokens no sum
    from mpcnet.v1 import secagg_pb2 as spb
    from mpcnet.v1 import secagg_pb2_grpc as spbg
    with grpc.insecure_channel(cluster.coordinator) as channel:
        res = spbg.SecAggStub(channel).GetResult(spb.SecAggGetResultRequest(round_id=f"fedavg-{agg.tag}-1-r1"),
                                                 timeout=10, metadata=cluster.auth_metadata)
    assert res.state == "done" and len(res.done.sum) > 0
    assert "operator only" in json.loads(res.receipt_json)["released"]


def test_a_round_below_threshold_is_skipped_and_the_model_kept(cluster: LocalCluster) -> None:
    ds, m, trainer, parts = setup(6)
    # a planned dropout this large is refused before the run (every round would abort): here 3 of the 6 crash
    # mid-round unplanned, and the threshold is ceil(2/3 * 6) = 4
    cfg = fedavg.FedAvgConfig(rounds=1)

    class ThreeCrash(fedavg.SecAggAggregator):
        def aggregate(self, round_no: int, updates: Any, drop: Any) -> fedavg.RoundOutcome:
            return super().aggregate(round_no, updates, [u.client for u in updates][:3])

    agg = ThreeCrash(cluster.coordinator, cluster.auth_metadata, clip=cfg.clip, max_total_samples=len(ds.y_train),
                     stage_deadline_s=5)
    with pytest.raises(InvalidInput, match="would skip every round"):
        fedavg.check_run(fedavg.FedAvgConfig(rounds=1, dropout=0.5), agg, 6)
    hist = fedavg.run_fedavg(m, trainer, ds, parts, cfg, agg)
    (out,) = hist.rounds
    assert out.skipped.startswith("SecAgg round aborted") and out.mean is None
    assert hist.params is not None and not hist.params.any()  # softmax regression starts at zero, and stayed
    assert hist.accuracy[0] == hist.accuracy[1]


def test_when_every_client_fails_locally_the_round_raises_their_reason(cluster: LocalCluster) -> None:
    """Updates the clients cannot encode (here: NaN, as a broken trainer would give without run_fedavg's check):
    each client refuses its own input before advertising keys.  That used to be a skipped round whose reason was
    the coordinator's view ("0 survivors", or just "running"), with the clients' own reason thrown away."""
    from mpcnet.errors import MpcnetError
    agg = fedavg.SecAggAggregator(cluster.coordinator, cluster.auth_metadata, clip=1.0, max_total_samples=100,
                                  stage_deadline_s=5)
    updates = [fedavg.Update(c, np.full(4, np.nan), 10) for c in (1, 2, 3)]
    with pytest.raises(MpcnetError, match="round 7: every client failed before the SecAgg round could finish; "
                                          "client 1 at .*: .*finite"):
        agg.aggregate(7, updates, [])


def test_fedavg_cli_runs_both_aggregators_and_writes_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    proc = subprocess.run([sys.executable, "-m", "mpcnet.cli", "fedavg", "--rounds", "3", "--clients", "8",
                           "--split", "dirichlet", "--alpha", "0.5", "--out", str(out)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run = json.loads(out.read_text())
    assert set(run["runs"]) == {"secagg", "plain"}
    assert run["runs"]["secagg"]["accuracy"] == pytest.approx(run["runs"]["plain"]["accuracy"], abs=0.005)
    assert run["runs"]["secagg"]["accuracy"][-1] > 0.9 and 0.9 < run["centralised"] <= 1.0
    assert "percentage points apart" in proc.stdout
    ds, m, _, _ = setup()  # the command's defaults: breast-cancer data, softmax regression
    for kind in ("secagg", "plain"):  # each released model is stored beside its receipt, and is the one measured
        stored = run["runs"][kind]["model"]
        assert stored["file"] == f"run.{kind}.npy"
        raw = (tmp_path / stored["file"]).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == stored["sha256"]
        params = np.load(tmp_path / stored["file"])
        assert len(params) == stored["parameters"] == m.n_params
        assert fedavg.accuracy(m, params, ds.x_test, ds.y_test) == run["runs"][kind]["accuracy"][-1]
        assert run["runs"][kind]["receipt"]["released"] == "the final global model"


def test_dp_fedavg_spends_from_the_ledger_and_a_run_past_the_budget_is_refused(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite"
    base = [sys.executable, "-m", "mpcnet.cli", "fedavg", "--rounds", "3", "--clients", "8", "--clip", "0.5",
            "--epsilon", "3", "--aggregator", "secagg", "--ledger", str(ledger), "--budget", "5", "1e-4"]
    first = subprocess.run([*base, "--out", str(tmp_path / "run.json")], cwd=REPO_ROOT, capture_output=True,
                           text=True, timeout=240)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    written = json.loads((tmp_path / "run.json").read_text())
    receipt = written["runs"]["secagg"]["receipt"]
    # the non-private centralised reference does not leave with a DP run (the operator's console shows it)
    assert str(written["centralised"]).startswith("withheld") and "centralised on the pooled data" in first.stdout
    assert receipt["differential_privacy"]["epsilon"] == 3 and receipt["differential_privacy"]["delta"] == 1e-5
    assert receipt["differential_privacy"]["ledger"]["remaining"][0] == pytest.approx(2.0)
    assert any("secure aggregation" in layer for layer in receipt["layers"])
    assert [r["round"] for r in receipt["participants"]["rounds"]] == [1, 2, 3]
    # the same query again, under another run: 3 more does not fit in the 2 left; refused before it starts
    second = subprocess.run(base, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert second.returncode == 3 and "which has epsilon 2, delta" in second.stderr  # one line, on stderr
    assert f"raise the budget with `mpcnet ledger budget --ledger {ledger} --dataset sklearn:" in second.stderr
    assert "test accuracy per round" not in second.stdout


def test_a_central_dp_run_that_would_skip_small_rounds_too_often_is_refused_before_any_charge(tmp_path: Path) -> None:
    """20 clients sampled at 0.3: a round of one client (which SecAgg cannot run) comes up often enough that its
    skipping would add about 1 to delta; refused with exit 2 after the checks, before the ledger exists."""
    ledger = tmp_path / "ledger.sqlite"
    proc = subprocess.run([sys.executable, "-m", "mpcnet.cli", "fedavg", "--rounds", "3", "--clients", "20",
                           "--epsilon", "8", "--sample-rate", "0.3", "--aggregator", "secagg", "--ledger",
                           str(ledger)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "would skip a round too small to aggregate often enough to add" in proc.stderr
    assert not ledger.exists() and "test accuracy per round" not in proc.stdout


def test_fedavg_sweep_writes_the_privacy_utility_table_and_plot(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "mpcnet.cli", "fedavg-sweep", "--rounds", "2", "--seeds", "1",
                           "--epsilons", "1,inf", "--aggregator", "plain", "--out", str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (js,) = tmp_path.glob("fedavg-privacy-*.json")
    (png,) = tmp_path.glob("fedavg-privacy-*.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    def no_infinity(constant: str) -> None:
        raise AssertionError(f"{constant} in the sweep's JSON: not JSON (JavaScript's JSON.parse refuses it)")

    run = json.loads(js.read_text(), parse_constant=no_infinity)
    assert run["args"]["epsilons"] == [1.0, "inf"]
    assert set(run["curves"]) == {"non-private", "eps=1", "eps=inf"}
    # no noise: only the DP weighting (uniform weights, fixed denominator) differs from FedAvg's
    assert run["curves"]["eps=inf"] == pytest.approx(run["curves"]["non-private"], abs=0.02)
    assert run["noise_multiplier"]["eps=1"] > 1
    # a study, not a release: said in its output and JSON (it trains DP models on the data and spends nothing)
    assert run["ledger"].startswith("not charged to any epsilon ledger")
    assert "not charged to any epsilon ledger" in " ".join(proc.stdout.split())


def test_bench_fedavg_writes_both_sides_of_the_comparison(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "mpcnet.cli", "bench", "fedavg", "--fedavg-clients", "4,30",
                           "--rounds", "1", "--repeats", "2", "--epochs", "1", "--model", "logreg", "--out",
                           str(tmp_path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (js,) = tmp_path.glob("fedavg-digits-logreg-*.json")
    result = json.loads(js.read_text())
    assert result["machine"]["cores"] >= 1 and result["machine"]["python"]  # as bench mul and dot record it
    rows = result["rows"]
    assert [r["clients"] for r in rows] == [4, 30] and [r["graph"] for r in rows] == ["full", "sparse"]
    for r in rows:  # quantization only: the same model either way
        assert r["accuracy_gap_points"] < 0.5 and r["secure_round_s"] > 0 and r["plain_round_s"] > 0
        # the gRPC baseline averages the float64 updates exactly: the same model as numpy in memory
        assert r["plain_accuracy"] == r["memory_accuracy"] and r["memory_round_s"] > 0
        assert r["overhead_ratio_pooled"] == pytest.approx(r["secure_round_s"] / r["plain_round_s"])
        # two repeats of one round each: every round's time is kept, and the headline is the median of the
        # repeats' own (paired) ratios
        times = r["round_seconds"]
        assert [len(times[k]) for k in ("memory", "plain", "secure", "math")] == [2, 2, 2, 2]
        each = r["overhead_ratio_per_repeat"]
        assert each == pytest.approx([s[0] / p[0] for p, s in zip(times["plain"], times["secure"])])
        assert r["overhead_ratio"] == pytest.approx(sum(each) / 2)
        assert r["coordinator_cpu_s"] > 0 and r["plain_server_cpu_s"] >= 0  # Linux: read from /proc
        assert r["clients_process_cpu_s"]["secure"] > r["clients_process_cpu_s"]["plain"] > 0
        assert r["max_parameter_difference"] is not None and 0 < r["max_parameter_difference"] < 0.05
        # SecAgg's arithmetic without transport: a quantized aggregate like the network's (quantization only)
        assert r["secagg_math_round_s"] > 0 and 100 * abs(r["secagg_math_accuracy"] - r["plain_accuracy"]) < 0.5
        assert r["secagg_math_ratio"] == pytest.approx(r["secagg_math_round_s"] / r["plain_round_s"])


def test_distributed_dp_fedavg_through_secagg_charges_the_ledger_and_says_who_added_noise(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite"
    out = tmp_path / "run.json"
    proc = subprocess.run([sys.executable, "-m", "mpcnet.cli", "fedavg", "--rounds", "3", "--clients", "9",
                           "--clip", "0.5", "--epsilon", "4", "--dp", "distributed", "--dropout", "0.2",
                           "--aggregator", "secagg", "--ledger", str(ledger), "--budget", "6", "1e-4",
                           "--out", str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "distributed DP: epsilon 4" in proc.stdout
    run = json.loads(out.read_text())["runs"]["secagg"]
    privacy = run["receipt"]["differential_privacy"]
    assert privacy["mechanism"] == "skellam (distributed)" and privacy["epsilon"] == 4
    assert privacy["ledger"]["remaining"][0] == pytest.approx(2.0)
    assert privacy["rounds_short_of_noise"] == [] and privacy["realised_epsilon"] <= 4.0
    for r in run["receipt"]["participants"]["rounds"]:
        # 2 of 9 drop (20 %), t = 6: 7 clients' inputs and noise shares in every sum
        assert len(r["dropped"]) == 2 and r["noise_contributors"] == len(r["included"]) == 7
    assert any("nobody sees an un-noised aggregate" in t for t in run["receipt"]["trust_assumptions"])
    # it learned through the noise: some round beats the majority class (0.556 of the test set). Not the last
    # round alone: with epsilon 4 over 3 rounds one noisy step can land on the majority class (CI saw 0.556 once
    # in the final round; 38 local runs: final 0.669-0.901, best round after the first never below 0.803)
    assert max(run["accuracy"][1:]) > 0.6
    shown = subprocess.run([sys.executable, "-m", "mpcnet.cli", "receipt", "--file", str(out)], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "differential privacy: skellam (distributed)" in shown.stdout
    assert shown.stdout.count("noise shares") == 3 and "epsilon 4, delta 1e-05" in shown.stdout


def test_a_distributed_dp_shortfall_is_recorded_and_the_receipt_shows_the_balance_after_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Half the clients fail in both rounds, unplanned (a planned dropout that deep is refused before the run):
    each sum holds 4 noise shares where t = 6 were planned.  The realised epsilon goes to the ledger as overruns,
    and the receipt's ledger balance is the one after them (it used to be the balance at the start of the run)."""
    from mpcnet.cli import main

    plain_aggregate = fedavg.PlainAggregator.aggregate

    def four_fail(self: fedavg.PlainAggregator, round_no: int, updates: list[fedavg.Update],
                  drop: list[int]) -> fedavg.RoundOutcome:
        return plain_aggregate(self, round_no, updates, sorted({*drop, *(u.client for u in updates[:4])}))

    monkeypatch.setattr(fedavg.PlainAggregator, "aggregate", four_fail)
    ledger, out = tmp_path / "ledger.sqlite", tmp_path / "run.json"
    base = ["fedavg", "--rounds", "2", "--clients", "8", "--clip", "0.5", "--epsilon", "4", "--dp", "distributed",
            "--aggregator", "plain", "--ledger", str(ledger), "--budget", "10", "1e-4"]
    # planned: 4 of 8 leave every round, so every sum would be short of noise -- refused, nothing charged
    assert main([*base, "--dropout", "0.5"]) == 2
    assert "fewer than the t = 6" in capsys.readouterr().err
    assert not ledger.exists() or EpsilonLedger(ledger).releases() == []
    assert main([*base, "--out", str(out)]) == 0
    privacy = json.loads(out.read_text())["runs"]["plain"]["receipt"]["differential_privacy"]
    assert privacy["rounds_short_of_noise"] == [1, 2] and privacy["realised_epsilon"] > 4.5
    # the headline epsilon is what was spent, the calibration's beside it
    assert privacy["epsilon"] == privacy["realised_epsilon"] and privacy["planned_epsilon"] == 4
    assert f"epsilon {privacy['realised_epsilon']:.4g} (planned 4: rounds short of noise)" in capsys.readouterr().out
    with EpsilonLedger(ledger) as led:
        spent, remaining = led.spent("sklearn:breast_cancer"), led.remaining("sklearn:breast_cancer")
        assert [r.name for r in led.releases()] == ["fedavg-plain", "fedavg-plain round 1 (shortfall)",
                                                    "fedavg-plain round 2 (shortfall)"]
    assert spent[0] == pytest.approx(privacy["realised_epsilon"])
    assert privacy["ledger"]["remaining"] == pytest.approx(list(remaining))
    assert privacy["ledger"]["spent_by_this_run"][0] == pytest.approx(privacy["realised_epsilon"])
    assert [o["round"] for o in privacy["ledger"]["overruns"]] == [1, 2]


def test_a_dp_run_that_cannot_reach_its_coordinator_spends_nothing(tmp_path: Path, cluster: LocalCluster) -> None:
    """The coordinator is checked before the ledger is charged (it used to be charged first: every mistyped
    address or missing secret cost epsilon)."""
    ledger = tmp_path / "ledger.sqlite"
    base = [sys.executable, "-m", "mpcnet.cli", "fedavg", "--rounds", "2", "--clients", "6", "--clip", "0.5",
            "--epsilon", "2", "--aggregator", "secagg", "--ledger", str(ledger), "--budget", "5", "1e-4"]
    secret = tmp_path / "secret"
    secret.write_text(cluster.cluster_secret)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPCNET_CLUSTER_SECRET")}
    for coordinator, extra_env, words, code in (
            ("127.0.0.1:1", {"MPCNET_CLUSTER_SECRET_FILE": str(secret)}, "is unreachable", 1),
            (cluster.coordinator, {}, "needs the cluster secret", 2),  # a setting: refused with the others
            (cluster.coordinator, {"MPCNET_CLUSTER_SECRET": "not-the-secret"}, "wrong mpcnet-cluster-auth", 1)):
        proc = subprocess.run([*base, "--coordinator", coordinator], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=120, env={**env, **extra_env})
        assert proc.returncode == code and words in proc.stderr, proc.stdout[-2000:] + proc.stderr
        assert _spent(ledger) == []
    ok = subprocess.run([*base, "--coordinator", cluster.coordinator], cwd=REPO_ROOT, capture_output=True, text=True,
                        timeout=240, env={**env, "MPCNET_CLUSTER_SECRET_FILE": str(secret)})
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert _spent(ledger) == [2.0]


def _spent(path: Path) -> list[float]:
    if not path.exists():
        return []
    with EpsilonLedger(path, create=False) as ledger:
        return [r.epsilon for r in ledger.releases()]
