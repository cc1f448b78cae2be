"""CLI commands with settings that cannot work (`mpcnet fedavg`, `fedavg-sweep`, `bench`, `round`, `client`,
`certs`, `health`): one line that says what to change, exit status 2, and nothing started or created (every
case here fails before a cluster would start or a coordinator be called)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpcnet import cli

# a round that would be created on an unreachable coordinator, were its settings not refused first
_ROUND = ["round", "create", "--coordinator", "127.0.0.1:1", "--clients", "1-4", "--threshold", "3", "--dim", "5",
          "--tokens-out", "/tmp/mpcnet-never-written.json"]


@pytest.mark.parametrize("argv, words", [
    (["fedavg", "--clients", "1"], "SecAgg needs at least 2 clients a round"),
    (["fedavg", "--clients", "-1"], "--clients -1: at least 1"),  # blamed --per-round
    (["fedavg", "--clients", "1", "--epsilon", "8", "--aggregator", "secagg", "--ledger",
      "/tmp/mpcnet-never-written.sqlite"], "SecAgg needs at least 2 clients a round"),  # spent 8, skipped every round
    (["fedavg", "--per-round", "1", "--aggregator", "secagg"], "--aggregator plain"),
    (["fedavg", "--dropout", "1.5"], "in [0, 1), got 1.5"),
    (["fedavg", "--per-round", "50", "--epsilon", "1", "--ledger", "/tmp/mpcnet-never-written.sqlite"],
     "--per-round 50: from 1 to --clients (20)"),  # was refused only after the ledger was charged
    (["fedavg", "--epsilon", "1", "--ledger", "/tmp/mpcnet-never-made/l.sqlite"],
     "the directory /tmp/mpcnet-never-made does not exist"),  # was made, with a fresh ledger and budget
    (["ledger", "budget", "--ledger", "/tmp/mpcnet-never-made/l.sqlite", "--dataset", "d", "--epsilon", "1",
      "--delta", "0"], "the directory /tmp/mpcnet-never-made does not exist"),
    (["fedavg", "--per-round", "5", "--epsilon", "1", "--ledger", "/tmp/mpcnet-never-written.sqlite"],
     "--per-round 5: central DP samples each client with probability --sample-rate"),  # was silently ignored
    (["fedavg", "--lr", "-1"], "learning rate > 0"),
    (["fedavg", "--model", "mlp", "--hidden", "0"], "at least 1 hidden unit"),
    (["fedavg", "--epochs", "0"], "epochs >= 1"),
    (["fedavg", "--clip", "0"], "must be finite and > 0"),
    (["fedavg", "--epsilon", "1", "--delta", "2"], "got epsilon 1, delta 2"),
    (["fedavg", "--epsilon", "1", "--budget", "0", "1e-4", "--ledger", "/tmp/mpcnet-never-written.sqlite"],
     "--budget 0 0.0001: a budget is a finite epsilon > 0"),  # was refused after the cluster started, if at all
    (["fedavg", "--epsilon", "1", "--aggregator", "plain", "--ledger", "/proc/version"], "as the epsilon ledger"),
    (["fedavg", "--out", "/nonexistent-mpcnet-dir/run.json"], "the directory /nonexistent-mpcnet-dir does not exist"),
    (["fedavg", "--out", "/proc"], "is a directory"),
    (["fedavg", "--out", "/proc/run.json", "--epsilon", "1", "--ledger", "/tmp/mpcnet-never-written.sqlite"],
     "--out /proc/run.json cannot be written"),  # was a traceback after training, with the epsilon spent
    (["fedavg-sweep", "--out", "/proc/version"], "cannot make that directory"),
    (["bench", "fedavg", "--fedavg-clients", "3", "--out", "/proc/version"], "cannot make that directory"),  # was
    # a traceback after the whole benchmark ran
    (["fedavg", "--dp", "distributed"], "--dp without --epsilon: the run would have no differential privacy"),
    (["fedavg", "--sample-rate", "0.3", "--weight-cap", "5"], "--sample-rate, --weight-cap without --epsilon"),
    # each of these ran a non-private training with exit 0, the flag ignored
    (["fedavg", "--delta", "1e-9"], "--delta without --epsilon"),
    (["fedavg", "--budget", "1", "1e-9", "--ledger-dataset", "foo"], "--budget, --ledger-dataset without --epsilon"),
    (["fedavg", "--ledger", "/tmp/mpcnet-never-written.sqlite"], "--ledger without --epsilon"),
    # a model without noise, released with exit 0 and nothing recorded, while the ledger kept its balance
    (["fedavg", "--epsilon", "inf", "--ledger", "/tmp/mpcnet-never-written.sqlite"],
     "--epsilon inf with --ledger: a run without DP noise is not differentially private, so it cannot be charged "
     "to a finite budget; leave out --ledger"),
    (["fedavg", "--epsilon", "inf", "--ledger-dataset", "cohort", "--budget", "5", "1e-4"],
     "--epsilon inf with --ledger-dataset, --budget"),
    (["fedavg", "--epsilon", "1", "--ledger", ""], "--ledger is empty"),  # was the default ledger, quietly
    (["ledger", "--ledger", "", "show"], "--ledger is empty"),
    (["fedavg", "--epsilon", "1", "--ledger-dataset", " ", "--ledger", "/tmp/mpcnet-never-written.sqlite"],
     "--ledger-dataset is empty"),
    # the run's JSON would have replaced the ledger it had just been charged to
    (["fedavg", "--epsilon", "1", "--ledger", "/tmp/mpcnet-never-written.sqlite", "--out",
      "/tmp/mpcnet-never-written.sqlite"], "is the epsilon ledger's file"),
    (["fedavg", "--split", "dirichlet", "--alpha", "nan"], "alpha must be finite and > 0, got nan"),  # was a hang
    (["fedavg-sweep", "--split", "dirichlet", "--alpha", "inf"], "alpha must be finite and > 0, got inf"),
    (["fedavg-sweep", "--clients", "1"], "SecAgg needs at least 2"),
    (["fedavg-sweep", "--clients", "1", "--aggregator", "plain", "--dp", "distributed"],
     "distributed DP sums the noise of at least 2 clients"),  # was "min_contributors must be in [1, 1]"
    (["fedavg-sweep", "--seeds", "0"], "at least one run per epsilon"),
    (["fedavg-sweep", "--rounds", "0"], "rounds must be >= 1"),
    (["fedavg-sweep", "--epsilons", "1", "--delta", "0"], "delta 0"),
    (["bench", "fedavg", "--rounds", "0", "--fedavg-clients", "5", "--out", "/tmp/mpcnet-never-made"],
     "rounds must be >= 1"),  # the --out directory was made first, and left behind empty
    (["bench", "fedavg", "--hidden", "0", "--fedavg-clients", "5"], "at least 1 hidden unit"),
    (["bench", "fedavg", "--fedavg-clients", "5000"], "at most one client per sample"),
    (["bench", "mul", "--size", "1", "--repeats", "0", "--no-mpyc"], "--repeats must be at least 1"),  # IndexError
    (["bench", "secagg", "--clients", "3", "--dim", "1", "--no-flower", "--stage-deadline", "-1"],
     "--stage-deadline -1: seconds in (0, 3600]"),  # was a gRPC INVALID_ARGUMENT traceback
    (["bench", "secagg", "--clients", "2", "--dropout", "2", "--no-flower"], "--clients 2: at least 3; --dropout 2"),
    (["certs", "init", "--dir", "/tmp/mpcnet-never-made", "--days", "0"], "--days 0: a certificate is valid for at"),
    (["certs", "bootstrap", "--dir", "/tmp/mpcnet-never-made", "--nodes", "1"], "--nodes 1: an MPC cluster has at"),
    (_ROUND + ["--threshold", "-1"], "--threshold -1: must be from 1 to 4294967295"),  # was a protobuf traceback
    (_ROUND + ["--dim", "99999999999"], "--dim 99999999999: must be from 1"),
    (_ROUND + ["--bits", "0"], "--bits 0: must be from 1 to 64"),  # was silently 32
    (_ROUND + ["--clients", "99999999999"], "client ids are 1 to 2147483647"),  # was a protobuf traceback
    (["receipt", "--round", "r", "--coordinator", "127.0.0.1:1", "--timeout", "nan"], "--timeout nan: the call's"),
    (_ROUND + ["--timeout", "-1"], "deadline must be > 0"),
    (_ROUND + ["--stage-deadline", "nan"], "--stage-deadline nan"),
    (_ROUND + ["--tokens-out", "/nonexistent-mpcnet-dir/t.json"], "/nonexistent-mpcnet-dir does not exist"),
    (["round", "result", "--round", "r", "--coordinator", "127.0.0.1:1", "--sum-out", "/proc"], "a directory"),
])
def test_a_setting_that_cannot_work_is_one_line_and_exit_2(argv: list[str], words: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    for never in ("/tmp/mpcnet-never-made", "/tmp/mpcnet-never-written.json", "/tmp/mpcnet-never-written.sqlite"):
        assert not Path(never).exists()  # nothing created: no CA directory, no tokens file, no ledger
    out = capsys.readouterr()
    text = " ".join((out.out + out.err).split())  # rich wraps long lines
    assert words in text and "Traceback" not in text


@pytest.mark.parametrize("argv, words", [
    (["fedavg-sweep", "--epsilons", "1,x"], "comma-separated numbers or inf"),
    (["fedavg-sweep", "--epsilons", "0,1"], "every epsilon must be > 0"),
    (["fedavg-sweep", "--epsilons", "1,inf,1.0"], "epsilon 1 given twice"),  # the second curve replaced the first
    (["bench", "fedavg", "--fedavg-clients", "20,x"], "comma-separated whole numbers"),
    (["bench", "fedavg", "--fedavg-clients", "1,20"], "at least 2"),
])
def test_a_malformed_list_is_a_usage_error(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2 and words in capsys.readouterr().err


def test_client_input_problems_are_found_before_it_joins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each of these used to show only after the client had joined (and cost the round its other clients) or
    under a misleading message."""
    tokens = tmp_path / "tokens.json"
    tokens.write_text('{"1": "t1", "2": "t2"}')
    inputs = tmp_path / "in.json"
    inputs.write_text('{"1": [1.0, 2.0]}')
    nan_inputs = tmp_path / "nan.json"
    nan_inputs.write_text('{"1": [1.0, NaN], "2": [0.5, 1.0]}')
    base = ["client", "--coordinator", "127.0.0.1:1", "--round", "r", "--ids", "1,2"]
    for argv, words in (
            (["--input-file", str(inputs), "--tokens-file", str(tokens)], "has no vector for client(s) 2"),
            (["--input-file", str(nan_inputs), "--tokens-file", str(tokens)], "client(s) 1 have NaN or infinite"),
            (["--input-seed", "s", "--tokens-file", str(tmp_path / "missing.json")], "No such file"),
            (["--input-seed", "s", "--tokens-file", str(tokens), "--timeout", "-1"], "--timeout -1")):
        assert cli.main(base + argv) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err


def test_a_health_check_with_a_nan_bound_fails_instead_of_passing(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    beat = tmp_path / "heartbeat"
    beat.touch()  # fresh: a sound bound passes it
    # exit 1 (unhealthy), not 2: docker reserves a health check's exit status 2
    assert cli.main(["health", "--heartbeat", str(beat), "--max-age", "nan"]) == 1
    assert "must be finite seconds > 0" in capsys.readouterr().err
    assert cli.main(["health", "--heartbeat", str(beat), "--max-age", "60"]) == 0


@pytest.mark.parametrize("argv", [
    ["fedavg", "--epsilon", "1", "--sample-rate", "2", "--clip", "0.5", "--lr", "0.05"],
    ["ledger", "--ledger", "/tmp/mpcnet-never-written.sqlite", "show"],
])
def test_a_refusal_is_one_unwrapped_line_on_stderr(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """rich wrapped these at 80 columns on stdout when the output was not a terminal."""
    assert cli.main(argv) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1 and len(out.err) > 80 and out.err.startswith("mpcnet ")


def test_a_new_ledger_key_needs_a_budget_set_beforehand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped --ledger-dataset used to get a fresh default budget (and --budget could size it): the same data
    trained again under a new key.  Only the built-in key sklearn:<dataset> gets a budget on its first run."""
    from mpcnet.ledger import EpsilonLedger
    ledger = tmp_path / "l.sqlite"
    base = ["fedavg", "--rounds", "1", "--clients", "4", "--aggregator", "plain", "--epsilon", "1", "--ledger",
            str(ledger)]
    assert cli.main([*base, "--ledger-dataset", "cohort-a"]) == 2
    assert "does not exist yet" in " ".join(capsys.readouterr().err.split()) and not ledger.exists()  # none made
    assert cli.main(base) == 0  # the built-in key: its first run gives it the default budget
    capsys.readouterr()
    assert cli.main([*base, "--ledger-dataset", "sklearn:breast-cancer", "--budget", "50", "1e-4"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "dataset 'sklearn:breast-cancer' has no budget" in err and "it holds: sklearn:breast_cancer" in err
    assert "mpcnet ledger budget" in err
    with EpsilonLedger(ledger) as led:
        assert led.datasets() == ["sklearn:breast_cancer"] and len(led.releases()) == 1  # nothing charged
        led.set_budget("cohort-a", 3.0, 1e-4)  # what the operator does for a key of their own
    assert cli.main([*base, "--ledger-dataset", "cohort-a", "--budget", "50", "1e-4"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--budget not applied: dataset cohort-a already has the budget epsilon 3" in out
    with EpsilonLedger(ledger) as led:
        (release,) = led.releases("cohort-a")
        assert release.params["data"] == "sklearn:breast_cancer" and led.budget("cohort-a") == (3.0, 1e-4)


def test_an_epsilon_inf_run_says_it_is_charged_to_no_default_ledger(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """MPCNET_LEDGER (or ~/.mpcnet) applies to every run without being asked for, so an --epsilon inf run is not
    refused there, as it is with --ledger; it says that nothing is charged (it used to say nothing)."""
    ledger = tmp_path / "default-ledger.sqlite"
    monkeypatch.setenv("MPCNET_LEDGER", str(ledger))
    assert cli.main(["fedavg", "--rounds", "1", "--clients", "4", "--aggregator", "plain", "--epsilon", "inf"]) == 0
    out = "".join(capsys.readouterr().out.split())  # rich folds the long path mid-word
    assert f"notdifferentiallyprivateandnothingischargedtotheepsilonledger({ledger})" in out
    assert not ledger.exists()


def test_an_output_file_that_is_an_sqlite_database_is_not_overwritten(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from mpcnet.ledger import EpsilonLedger
    ledger = tmp_path / "other-ledger.sqlite"
    with EpsilonLedger(ledger) as led:
        led.set_budget("d", 1.0, 0.0)
    before = ledger.read_bytes()
    assert cli.main(["fedavg", "--rounds", "1", "--clients", "4", "--aggregator", "plain", "--out", str(ledger)]) == 2
    assert "is an SQLite database" in " ".join(capsys.readouterr().err.split())
    assert ledger.read_bytes() == before


def test_a_receipt_file_nested_too_deeply_is_refused_in_one_line(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)  # was a RecursionError traceback
    assert cli.main(["receipt", "--file", str(deep)]) == 2
    err = capsys.readouterr().err
    assert "nested too deeply" in err and "Traceback" not in err
