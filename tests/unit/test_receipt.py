"""Receipts: the party view of a job receipt (its own data's ledger balance, nobody else's; everything else
unchanged), and `mpcnet receipt --file` on files that hold no receipt."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from mpcnet.receipt import job_receipt_for_party
from mpcnet.receipt_cli import render

STORED = {
    "job_id": "job-1",
    "differential_privacy": {
        "mechanism": "discrete Laplace",
        "releases": [
            {"output": "sx", "statistic": "sum", "source": "x", "epsilon": 0.5, "delta": 0.0, "sensitivity": 16.0,
             "noise_scale": 32.0, "datasets": ["party:alice"], "ledger_remaining": {"party:alice": 9.5}},
            {"output": "sy", "statistic": "sum", "source": "y", "epsilon": 0.25, "delta": 0.0, "sensitivity": 16.0,
             "noise_scale": 64.0, "datasets": ["party:bob"], "ledger_remaining": {"party:bob": 3.0}},
        ],
    },
}


def test_a_party_keeps_its_own_balance_and_loses_the_others() -> None:
    before = copy.deepcopy(STORED)
    view = job_receipt_for_party(STORED, "alice")
    assert STORED == before  # the stored receipt (the operator's view) is not touched
    sx, sy = view["differential_privacy"]["releases"]
    assert sx == STORED["differential_privacy"]["releases"][0]  # its own release: exactly as stored
    assert sy["ledger_remaining"] == {} and "operator" in sy["ledger_remaining_note"]
    assert {k: v for k, v in sy.items() if not k.startswith("ledger")} == \
        {k: v for k, v in STORED["differential_privacy"]["releases"][1].items() if not k.startswith("ledger")}


def test_a_reader_who_owns_no_data_sees_no_balance_and_receipts_without_dp_pass_through() -> None:
    view = job_receipt_for_party(STORED, "carol")
    assert all(r["ledger_remaining"] == {} for r in view["differential_privacy"]["releases"])
    exact = {"job_id": "job-2", "differential_privacy": "none (exact result)"}
    assert job_receipt_for_party(exact, "alice") == exact


def test_the_cli_says_why_a_balance_is_missing() -> None:
    text = "\n".join(render(job_receipt_for_party(STORED, "alice")))
    assert "party:alice 9.5 left" in text and "party:bob" not in text.split("sy (")[1].split("\n")[0]
    assert "shown to them and the operator only" in text


@pytest.mark.parametrize("content, words", [
    ("", "is not JSON"),
    ('{"runs": {}}', "run file with no privacy receipt"),
    ('{"runs": {"a": 1}}', "run file with no privacy receipt"),
    ('{"layers": 5}', "is not a receipt this version can show: TypeError"),
    ('{"job_id": "j", "layers": [], "inputs": [{"x": 1}]}', "is not a receipt this version can show: KeyError"),
    ('{"layers": [], "differential_privacy": {"epsilon": "x"}}', "is not a receipt this version can show"),
    ('{"layers": "abc"}', "'layers' is a str, not a list"),  # was printed one character a line, exit 0
    ('{"runs": {"x": {"receipt": {}}}}', "(x) is not a receipt this version can show: ValueError it names "
                                         "neither layers nor trust assumptions"),  # was accepted, exit 0
    # the lists render() iterates, and which result it is (each was rendered as nonsense, exit 0)
    ('{"job_id": "j", "layers": [], "outputs": [{"name": "a", "revealed_to": "alice"}]}',
     "'revealed_to' is a str, not a list"),
    ('{"job_id": "j", "layers": [], "inputs": [{"name": "a", "owner": "o", "seen_in_clear_by": "o", "public": ""}]}',
     "'seen_in_clear_by' is a str, not a list"),
    ('{"round": "r", "layers": [], "participants": {"registered": [1], "dropped": "1"}}',
     "'dropped' is a str, not a list"),
    ('{"run": "r", "layers": [], "participants": {"rounds": [{"round": 1, "included": "12", "dropped": []}]}}',
     "'included' is a str, not a list"),
    ('{"job_id": "j", "layers": [], "differential_privacy": {"releases": {"a": 1}}}', "'releases' is a dict"),
    ('{"layers": []}', "it names no job_id, round or run"),
    ('{"job_id": ' + "9" * 5000 + ', "layers": []}', "is not JSON"),  # the digit limit's ValueError
])
def test_receipt_cli_on_a_file_that_is_no_receipt_says_so(tmp_path: Path, content: str, words: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from mpcnet import cli
    path = tmp_path / "r.json"
    path.write_text(content)
    assert cli.main(["receipt", "--file", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and words in err and "Traceback" not in err


def test_receipt_cli_on_a_binary_file_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mpcnet import cli
    path = tmp_path / "r.json"
    path.write_bytes(bytes(range(128, 256)))
    assert cli.main(["receipt", "--file", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path} is not JSON" in err and "Traceback" not in err  # the decode error used to come without the file


def test_a_model_without_dp_has_a_strict_json_receipt_and_run_file() -> None:
    """epsilon = infinity was written as JSON's non-standard Infinity, which strict parsers refuse."""
    import json
    import math

    from mpcnet.jsonout import strict_json
    from mpcnet.receipt import fedavg_receipt
    rounds = [{"round": 1, "sampled": [1, 2], "included": [1, 2], "dropped": [], "skipped": ""}]
    rc = fedavg_receipt("t", "secagg", rounds, 2, None, None)
    assert rc["differential_privacy"]["epsilon"] is None
    json.dumps(rc, allow_nan=False)  # raises on inf or nan
    assert "epsilon unbounded (no differential privacy)" in "\n".join(render(rc))
    assert strict_json({"args": {"epsilon": math.inf, "delta": 1e-5}, "x": [-math.inf, 1.5]}) == {
        "args": {"epsilon": "inf", "delta": 1e-5}, "x": ["-inf", 1.5]}


def test_an_output_computed_from_a_dp_release_alone_is_post_processing_not_exact() -> None:
    """A review found 's_scaled' = 2 * dp_sum(...) called 'exact and not covered by DP'; it is covered by the
    release's epsilon.  An output that also reads an input other than through noise stays exact."""
    from mpcnet.core.program import Program, SecretType, compile_program
    from mpcnet.receipt import job_receipt

    inputs = {"x": SecretType((10,), 16, 100.0, True, True), "y": SecretType((10,), 16, 100.0)}
    prog = (Program().dp_sum("s", "x", 1.0).mul_public("s_scaled", "s", 2.0).sum("ys", "y").add("mixed", "s", "ys")
            .output("s", ["a"]).output("s_scaled", ["a"]).output("mixed", ["a"]))
    plan = compile_program(prog, inputs)
    dp = job_receipt("j", plan, {k: (t, "a") for k, t in inputs.items()}, 3)["differential_privacy"]
    assert dp["exact_outputs"] == ["mixed"] and "mixed" in dp["note"]
    only_dp = compile_program(Program().dp_sum("s", "x", 1.0).mul_public("s_scaled", "s", 2.0)
                              .output("s", ["a"]).output("s_scaled", ["a"]), inputs)
    dp = job_receipt("j", only_dp, {"x": (inputs["x"], "a")}, 3)["differential_privacy"]
    assert dp["exact_outputs"] == [] and "post-processing" in dp["note"]


def test_a_secaggplus_round_receipt_gives_the_degree_it_ran_and_the_connectivity_rule() -> None:
    from mpcnet.receipt import secagg_receipt
    from mpcnet.v1 import secagg_pb2 as spb

    params = spb.SecAggRoundParams(client_ids=list(range(1, 31)), threshold=6, bits=32, vector_length=4,
                                   graph=spb.SECAGG_GRAPH_SECAGGPLUS)  # degree 0: the default, 2 ceil(log2 30)
    rc = secagg_receipt("r", params, "running")
    assert "among its 10 graph neighbours; threshold t = 6 of the 11" in rc["layers"][0]
    assert "connected in the graph" in rc["trust_assumptions"][0]
    assert "dropped ones included" in rc["released"]
    params.sum_to_operator_only = True
    assert "operator only" in secagg_receipt("r", params, "running")["released"]


def test_a_distributed_dp_receipt_written_before_planned_epsilon_still_shows() -> None:
    old = {"run": "r", "layers": ["x"], "trust_assumptions": ["y"],
           "differential_privacy": {"mechanism": "skellam (distributed)", "epsilon": 4.0, "delta": 1e-5,
                                    "realised_epsilon": 3.5}}
    assert any("epsilon 4, delta 1e-05 (planned 4, realised 3.5)" in line for line in render(old))


def _dp_job_receipt(exact_too: bool = False) -> dict:
    from mpcnet.core.program import Program, SecretType, compile_program
    from mpcnet.receipt import job_receipt

    inputs = {"age": SecretType((200,), 16, 120.0, True, True), "y": SecretType((200,), 16, 10.0)}
    prog = Program().dp_mean("m", "age", 1.0).output("m", ["a"])
    if exact_too:
        prog = prog.sum("ys", "y").output("ys", ["a"])
    plan = compile_program(prog, inputs)
    rel = [{"output": "m", "statistic": "mean", "source": "age", "epsilon": 1.0, "delta": 0.0, "sensitivity": 0.6,
            "noise_scale": 0.6025, "datasets": ["party:a"], "ledger_remaining": {"party:a": 9.0}}]
    return job_receipt("job-1", plan, {k: (t, "a") for k, t in inputs.items()}, 3, rel)


def test_a_dp_job_receipt_lists_dp_among_its_layers_with_the_outputs_it_covers() -> None:
    """A review found a job whose outputs were all Laplace releases listing only the secret sharing as a layer."""
    assert _dp_job_receipt()["layers"][1] == ("differential privacy on output(s) m: discrete Laplace noise added "
                                              "inside the secret sharing, one noise share from each of the 3 "
                                              "compute nodes")
    assert "output(s) ys are exact, not covered" in _dp_job_receipt(exact_too=True)["layers"][1]


def test_the_cli_shows_a_jobs_dp_limits_and_any_field_it_does_not_know() -> None:
    """The DP layer's trust assumptions (`limits`) were in the JSON only, as were the FedAvg ledger's spending and
    overruns; a key render() has no line for is printed as it is, so none goes missing."""
    rc = _dp_job_receipt()
    rc["state"] = "done"
    rc["differential_privacy"]["a_future_field"] = [1.5, "x"]
    text = "\n".join(render(rc))
    assert "  trust (differential privacy): assumes every node adds its share honestly" in text
    assert "a node working with a reader can subtract its own share" in text
    assert "  state: done" in text and "  multiplication layers: " in text
    assert "    a future field: 1.5, x" in text
    led = {"dataset": "sklearn:breast_cancer", "path": "/tmp/l.sqlite", "spent_by_this_run": [8.25, 2e-05],
           "remaining": [1.75, 8e-05], "overruns": [{"release": "fedavg-secagg", "round": 3, "epsilon": 0.25}]}
    fl = {"run": "secagg", "layers": ["x"], "trust_assumptions": ["y"],
          "differential_privacy": {"mechanism": "skellam (distributed)", "epsilon": 8.25, "delta": 2e-05,
                                   "rounds": 10, "rounds_short_of_noise": [], "ledger": led}}
    lines = render(fl)
    assert ("    ledger sklearn:breast_cancer: spent by this run epsilon 8.25, delta 2e-05; remaining epsilon 1.75, "
            "delta 8e-05") in lines
    assert "      overrun: fedavg-secagg round 3 spent epsilon 0.25 more than charged (rounds short of noise)" in lines
    assert "      path: /tmp/l.sqlite" in lines and "    rounds: 10" in lines
    assert "    rounds short of noise: none" in lines
    assert not any("[" in line for line in lines if "ledger" in line)  # not a Python list


def test_an_aborted_rounds_receipt_says_who_dropped_or_that_it_was_not_recorded() -> None:
    """A review found an aborted round's receipt printing "dropped: none" for a round that aborted because three
    clients dropped: the journal kept no dropouts of aborted rounds."""
    from mpcnet.receipt import secagg_receipt
    from mpcnet.v1 import secagg_pb2 as spb

    params = spb.SecAggRoundParams(client_ids=[1, 2, 3, 4, 5, 6], threshold=4, bits=32, vector_length=10)
    why = "secure aggregation aborted after masked_input_collection: 3 survivors in round, threshold 4"
    aborted = spb.SecAggAborted(stage="masked_input_collection", reason=why, participants_recorded=True,
                                dropped=[spb.SecAggDropout(client_id=c, stage="masked_input_collection")
                                         for c in (4, 5, 6)], masked_input_from=[3, 1, 2])
    rc = secagg_receipt("rr3", params, "aborted", aborted=aborted)
    assert rc["participants"]["dropped"] == [{"client": c, "stage": "masked_input_collection"} for c in (4, 5, 6)]
    assert rc["participants"]["sent_masked_input"] == [1, 2, 3]
    assert ("  registered: [1, 2, 3, 4, 5, 6]; summed: -; dropped: 4 (at masked_input_collection), 5 (at "
            "masked_input_collection), 6 (at masked_input_collection); sent masked input: [1, 2, 3]") in render(rc)
    # an older journal, or a round a restart cut short: nothing recorded, which is not "nobody dropped"
    old = secagg_receipt("rr3", params, "aborted", aborted=spb.SecAggAborted(stage="masked_input_collection",
                                                                            reason=why))
    assert "dropped" not in old["participants"]
    assert "  registered: [1, 2, 3, 4, 5, 6]; summed: -; dropped: not recorded" in render(old)


def test_receipt_cli_refuses_an_oversized_file_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mpcnet import cli
    from mpcnet.receipt_cli import MAX_FILE_BYTES
    path = tmp_path / "big.json"
    path.write_text('{"job_id": "j", "layers": [], "pad": "' + "x" * MAX_FILE_BYTES + '"}')
    assert cli.main(["receipt", "--file", str(path)]) == 2
    assert capsys.readouterr().err == f"mpcnet receipt: {path} is larger than 64 MiB: not a receipt\n"


def test_receipt_cli_refuses_an_unbounded_file_without_a_traceback() -> None:
    """`mpcnet receipt --file /dev/zero` read until memory ran out (a MemoryError traceback under a limit, the
    OOM killer without one)."""
    import subprocess
    import sys
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000)); "
            "from mpcnet.cli import main; sys.exit(main(['receipt', '--file', '/dev/zero']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-800:]
    assert "/dev/zero is larger than 64 MiB" in proc.stderr
