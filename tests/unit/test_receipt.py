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
    ('{"layers": [], "inputs": [{"x": 1}]}', "is not a receipt this version can show: KeyError"),
    ('{"layers": [], "differential_privacy": {"epsilon": "x"}}', "is not a receipt this version can show"),
    ('{"layers": "abc"}', "'layers' is a str, not a list"),  # was printed one character a line, exit 0
    ('{"runs": {"x": {"receipt": {}}}}', "(x) is not a receipt this version can show: ValueError it names "
                                         "neither layers nor trust assumptions"),  # was accepted, exit 0
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
