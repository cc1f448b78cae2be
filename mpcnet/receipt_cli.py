"""`mpcnet receipt`: show the privacy receipt of a released result.

* ``--job ID``: an MPC job's receipt, as the coordinator stored it (operator call: the cluster secret);
* ``--round ID``: a SecAgg round's receipt (operator call: the cluster secret);
* ``--file PATH``: a receipt saved as JSON, or the output of ``mpcnet fedavg --out`` (one receipt per run).

Printed for a person by default; ``--json`` prints the receipt itself.  Receipts hold no secret values: names,
shapes, declared bounds, who took part, the DP parameters and the ledger balance.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mpcnet.errors import InvalidInput, MpcnetError


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--job", default=None, help="an MPC job id (asks the coordinator; needs the cluster secret)")
    src.add_argument("--round", default=None, dest="round_id", help="a SecAgg round id (asks the coordinator)")
    src.add_argument("--file", default=None, help="a receipt JSON file, or the JSON of `mpcnet fedavg --out`")
    p.add_argument("--json", action="store_true", help="print the receipt as JSON")
    p.add_argument("--config", default=None, help="TOML config (coordinator address, [cluster] secret_file)")
    p.add_argument("--coordinator", default=None, help="host:port (default: config / MPCNET_COORDINATOR)")
    p.add_argument("--tls-dir", default=None, help="certificate directory for mTLS (default: config / MPCNET_TLS_DIR)")
    p.add_argument("--timeout", type=float, default=30.0, help="RPC deadline (s)")


def receipt_main(args: argparse.Namespace) -> int:
    try:
        receipts = _from_file(Path(args.file)) if args.file else {"": _from_coordinator(args)}
    except (MpcnetError, OSError, ValueError) as exc:  # ConfigError and CertError are ValueErrors
        print(f"mpcnet receipt: {exc}", file=sys.stderr)
        return 2
    for title, receipt in receipts.items():
        if args.json:
            print(json.dumps(receipt, indent=1, default=str))
            continue
        try:
            _check_shape(receipt)
            lines = render(receipt)
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:  # hand-edited or foreign
            where = args.file or args.job or args.round_id
            print(f"mpcnet receipt: {where}{f' ({title})' if title else ''} is not a receipt this version can show: "
                  f"{type(exc).__name__} {exc} (--json prints it as it is)", file=sys.stderr)
            return 2
        if title:
            print(f"== {title}")
        for line in lines:
            print(line)
    return 0


# A receipt is a few KiB; a `mpcnet fedavg --out` file lists every round's clients (1,000 rounds of 1,000 clients
# are ~25 MB of JSON; its models are .npy files beside it): the cap keeps /dev/zero or a padded file from using
# all memory before it is refused.
MAX_FILE_BYTES = 64 << 20


def _from_file(path: Path) -> dict[str, dict[str, Any]]:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise InvalidInput(f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB: not a receipt")
        data = json.loads(raw.decode())
    except RecursionError:  # arrays nested thousands deep
        raise InvalidInput(f"{path} is not a receipt: JSON nested too deeply") from None
    except ValueError as exc:  # not JSON, not UTF-8, or an integer too long to convert
        raise InvalidInput(f"{path} is not JSON ({exc})") from None
    except MemoryError:
        raise InvalidInput(f"{path} is too large to read as a receipt") from None
    except OSError as exc:
        raise InvalidInput(f"{path} cannot be read: {exc.strerror or exc}") from None
    if isinstance(data, dict) and isinstance(data.get("runs"), dict):  # mpcnet fedavg --out
        found = {k: v["receipt"] for k, v in data["runs"].items()
                 if isinstance(v, dict) and isinstance(v.get("receipt"), dict)}
        if not found:
            raise InvalidInput(f"{path} is a run file with no privacy receipt in it")
        return found
    if isinstance(data, dict) and isinstance(data.get("receipt"), dict):
        return {"": data["receipt"]}
    if isinstance(data, dict) and ("layers" in data or "trust_assumptions" in data):
        return {"": data}
    raise InvalidInput(f"{path} holds no privacy receipt")


def _check_shape(r: dict[str, Any]) -> None:
    """What render() relies on: the lists it iterates are lists (a string there would print one character a
    line), a receipt says what protected the result, and which result it is."""
    if "layers" not in r and "trust_assumptions" not in r:
        raise ValueError("it names neither layers nor trust assumptions")
    for key in ("layers", "trust_assumptions"):
        value = r.get(key, [])
        if not isinstance(value, (list, str)) or (key == "layers" and not isinstance(value, list)):
            raise TypeError(f"{key!r} is a {type(value).__name__}, not a list")
    if not any(isinstance(r.get(k), str) and r[k] for k in ("job_id", "round", "run")):
        raise ValueError("it names no job_id, round or run")
    for inp in _list(r, "inputs"):
        _list(inp, "seen_in_clear_by")
    for o in _list(r, "outputs"):
        _list(o, "revealed_to")
    _list(r, "opened_to_nodes")
    dp = r.get("differential_privacy")
    if isinstance(dp, dict):
        _list(dp, "releases")
    part = r.get("participants")
    if isinstance(part, dict):
        for key in ("registered", "included", "dropped", "sent_masked_input"):
            _list(part, key)
        for rnd in _list(part, "rounds"):
            for key in ("included", "dropped"):
                _list(rnd, key)


def _list(container: Any, key: str) -> list[Any]:
    """``container[key]`` when it is a list ([] when absent); anything else there is refused."""
    if not isinstance(container, dict):
        raise TypeError(f"an entry holding {key!r} is a {type(container).__name__}, not an object")
    value = container.get(key, [])
    if not isinstance(value, list):
        raise TypeError(f"{key!r} is a {type(value).__name__}, not a list")
    return value


def _from_coordinator(args: argparse.Namespace) -> dict[str, Any]:
    import grpc

    from mpcnet.certs import Identity
    from mpcnet.secagg_admin import operator_connection
    from mpcnet.transport.rpc import from_rpc_error, sync_channel
    if not 0 < args.timeout <= 3600:  # NaN and negative deadlines used to end as "did not answer in time"
        raise InvalidInput(f"--timeout {args.timeout:g}: the call's deadline in seconds, in (0, 3600]")
    address, md, tls = operator_connection(args)  # receipts are read by the operator; parties get theirs from run()
    with sync_channel(address, tls, Identity("coordinator", "main")) as channel:
        try:
            if args.job:
                from mpcnet.v1 import mpc_pb2 as pb
                from mpcnet.v1 import mpc_pb2_grpc as pbg
                info = pbg.CoordinatorStub(channel).GetJob(pb.GetJobRequest(job_id=args.job), timeout=args.timeout,
                                                           metadata=md)
                if not info.receipt_json:
                    raise InvalidInput(f"job {args.job} is {info.state}: it has no receipt (a job gets one when its "
                                       "DP releases are charged or its nodes are told to run; this one got to "
                                       "neither)")
                return dict(json.loads(info.receipt_json), state=info.state)
            from mpcnet.v1 import secagg_pb2 as spb
            from mpcnet.v1 import secagg_pb2_grpc as spbg
            res = spbg.SecAggStub(channel).GetResult(spb.SecAggGetResultRequest(round_id=args.round_id),
                                                     timeout=args.timeout, metadata=md)
            if not res.receipt_json:
                raise InvalidInput(f"round {args.round_id} is {res.state}: it has no receipt yet")
            return dict(json.loads(res.receipt_json))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, f"coordinator at {address}") from None


def render(r: dict[str, Any]) -> list[str]:
    """A receipt as lines for a person: what was released, the layers, DP, who took part, trust.  A key this
    version does not know is still printed, as "key: value", so that no field of a newer receipt goes missing."""
    out: list[str] = []
    what = r.get("job_id") or r.get("round") or r.get("run") or "result"
    out.append(f"privacy receipt of {what}" + (f": {r['released']}" if r.get("released") else ""))
    for key in ("state", "outcome"):
        if r.get(key):
            out.append(f"  {key}: {r[key]}")
    for layer in r.get("layers", []):
        out.append(f"  layer: {layer}")
    for inp in r.get("inputs", []):
        out.append(f"  input {inp['name']} ({inp['owner']}): seen in the clear by {', '.join(inp['seen_in_clear_by'])};"
                   f" public: {inp['public']}")
    for o in r.get("outputs", []):
        out.append(f"  output {o['name']}: revealed to {', '.join(o['revealed_to'])}")
    if r.get("opened_to_nodes"):
        out.append("  compute nodes saw: " + "; ".join(r["opened_to_nodes"]))
    for key in ("coordinator_saw", "dealer_saw"):
        if r.get(key):
            out.append(f"  {key.replace('_', ' ')}: {r[key]}")
    trust = r.get("trust_assumptions")
    trust_lines = [f"  trust: {t}" for t in ([trust] if isinstance(trust, str) else trust or [])]
    dp = r.get("differential_privacy")
    if isinstance(dp, dict):
        out.append(f"  differential privacy: {dp.get('mechanism', '?')}")
        for rel in dp.get("releases", []):
            left = (", ".join(f"{d} {v:g} left" for d, v in rel.get("ledger_remaining", {}).items())
                    or rel.get("ledger_remaining_note", "-"))
            out.append(f"    {rel['output']} ({rel['statistic']} of {rel['source']}): epsilon {rel['epsilon']:g}, "
                       f"delta {rel['delta']:g}, sensitivity {rel['sensitivity']:g}, noise scale "
                       f"{rel['noise_scale']:.4g}; ledger: {left}")
            out += _unknown(rel, _RELEASE_KEYS, "      ")
        if "epsilon" in dp and dp["epsilon"] is None:
            out.append("    epsilon unbounded (no differential privacy)")
        elif "epsilon" in dp:
            out.append(f"    epsilon {dp['epsilon']:g}, delta {dp.get('delta', 0):g}"
                       + (f" (planned {dp.get('planned_epsilon', dp['epsilon']):g}, realised {dp['realised_epsilon']:.4g})"
                          if "realised_epsilon" in dp else ""))
        for key in ("unit", "guarantee", "accountant", "delta_small_rounds", "skipped_rounds", "note", "shortfall"):
            if dp.get(key):
                out.append(f"    {key}: {dp[key]}")
        against = dp.get("epsilon_against_clients")
        pairs: list[Any] = ([against.get(k) for k in ("one_client", "all_other_clients")]
                            if isinstance(against, dict) else [])
        if pairs and all(isinstance(p, dict) and all(isinstance(p.get(k), (int, float)) for k in ("epsilon", "delta"))
                         for p in pairs):
            out.append(f"    against the run's own clients (they see who was sampled): epsilon "
                       f"{pairs[0]['epsilon']:.4g} (delta {pairs[0]['delta']:.3g}) against one, "
                       f"{pairs[1]['epsilon']:.4g} (delta {pairs[1]['delta']:.3g}) against all the others pooled")
        elif against is not None:
            out.append(f"    epsilon against clients: {_plain(against)}")
        out += _unknown(dp, _DP_KEYS, "    ")
        if isinstance(dp.get("ledger"), dict):
            out += _ledger(dp["ledger"])
        elif dp.get("ledger"):
            out.append(f"    ledger: {_plain(dp['ledger'])}")
        if dp.get("limits"):  # the DP layer's own trust assumptions, beside the others
            trust_lines.insert(0, f"  trust (differential privacy): {dp['limits']}")
    elif dp:
        out.append(f"  differential privacy: {dp}")
    part = r.get("participants")
    if isinstance(part, dict):
        if "registered" in part:
            # no "dropped" key: the round's record does not say (an older journal), which is not "nobody"
            dropped = (", ".join(f"{d['client']} (at {d['stage']})" for d in part["dropped"]) or "none"
                       if "dropped" in part else "not recorded")
            out.append(f"  registered: {part['registered']}; summed: {part.get('included', '-')}; dropped: {dropped}"
                       + (f"; sent masked input: {part['sent_masked_input']}" if "sent_masked_input" in part else ""))
        for rnd in part.get("rounds", []):
            extra = f", {rnd['noise_contributors']} noise shares" if "noise_contributors" in rnd else ""
            if "threshold" in rnd:
                extra += (f", threshold t = {rnd['threshold']} of {rnd['neighbours'] + 1} ({rnd['neighbours']} "
                          "neighbours and the client itself)" if "neighbours" in rnd else
                          f", threshold t = {rnd['threshold']}"
                          + (f" of {len(rnd['sampled'])}" if isinstance(rnd.get("sampled"), list) else ""))
            skipped = f", skipped: {rnd['skipped']}" if rnd.get("skipped") else ""
            if "included" not in rnd:  # central DP with a secret sample: only whether the round was released
                out.append(f"  round {rnd['round']}: {'skipped' if rnd.get('skipped') else 'released'}")
                continue
            out.append(f"  round {rnd['round']}: summed {rnd['included']}, dropped {rnd['dropped']}{extra}{skipped}")
        if part.get("withheld"):
            out.append(f"  withheld: {part['withheld']}")
        out += _unknown(part, _PARTICIPANT_KEYS, "  ")
    if r.get("aborted"):
        out.append(f"  aborted after {r['aborted']['stage']}: {r['aborted']['reason']}")
    out += _unknown(r, _TOP_KEYS, "  ")
    return out + trust_lines


# the keys render() shows in its own way; any other key is printed by _unknown
_TOP_KEYS = {"job_id", "round", "run", "released", "state", "outcome", "layers", "inputs", "outputs",
             "opened_to_nodes", "coordinator_saw", "dealer_saw", "trust_assumptions", "differential_privacy",
             "participants", "aborted"}
_RELEASE_KEYS = {"output", "statistic", "source", "epsilon", "delta", "sensitivity", "noise_scale",
                 "datasets", "ledger_remaining", "ledger_remaining_note"}  # datasets: named by ledger_remaining
_DP_KEYS = {"mechanism", "releases", "epsilon", "delta", "planned_epsilon", "realised_epsilon", "unit", "guarantee",
            "accountant", "delta_small_rounds", "skipped_rounds", "note", "shortfall", "ledger", "limits",
            "exact_outputs", "epsilon_against_clients"}  # exact_outputs: named by the note
_PARTICIPANT_KEYS = {"registered", "included", "dropped", "sent_masked_input", "rounds", "withheld"}
_LEDGER_KEYS = {"dataset", "spent_by_this_model", "spent_by_this_run", "remaining", "overruns"}


def _ledger(led: dict[str, Any]) -> list[str]:
    """A FedAvg run's ledger state: what the run spent, what is left, and what rounds short of noise added."""
    parts = [f"spent by this model {_budget(led['spent_by_this_model'])}"] if "spent_by_this_model" in led else []
    if "spent_by_this_run" in led:
        parts.append(f"by this run {_budget(led['spent_by_this_run'])}" if parts else
                     f"spent by this run {_budget(led['spent_by_this_run'])}")
    if "remaining" in led:
        parts.append(f"remaining {_budget(led['remaining'])}")
    out = [f"    ledger {led.get('dataset', '?')}: " + ("; ".join(parts) or "-")]
    for o in led.get("overruns") or []:
        out.append(f"      overrun: {_plain(o)}" if not isinstance(o, dict) else
                   f"      overrun: {o.get('release', '?')} round {o.get('round', '?')} spent epsilon "
                   f"{_plain(o.get('epsilon', '?'))} more than charged (rounds short of noise)")
    return out + _unknown(led, _LEDGER_KEYS, "      ")


def _budget(value: Any) -> str:
    """[epsilon, delta] as words; anything else as it is."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return f"epsilon {value[0]:g}, delta {value[1]:g}"
    return _plain(value)


def _unknown(d: dict[str, Any], known: set[str], indent: str) -> list[str]:
    return [f"{indent}{k.replace('_', ' ')}: {_plain(v)}" for k, v in d.items() if k not in known]


def _plain(value: Any) -> str:
    """A JSON value on one line: numbers with :g, lists joined by commas (empty: none), objects as key value."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{k} {_plain(v)}" for k, v in value.items()) or "none"
    return str(value)


__all__ = ["add_arguments", "receipt_main", "render"]
