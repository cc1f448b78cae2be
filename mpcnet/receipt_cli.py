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
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a hand-edited or foreign file
            where = args.file or args.job or args.round_id
            print(f"mpcnet receipt: {where}{f' ({title})' if title else ''} is not a receipt this version can show: "
                  f"{type(exc).__name__} {exc} (--json prints it as it is)", file=sys.stderr)
            return 2
        if title:
            print(f"== {title}")
        for line in lines:
            print(line)
    return 0


def _from_file(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path} is not JSON ({exc})") from None
    except RecursionError:  # arrays nested thousands deep
        raise InvalidInput(f"{path} is not a receipt: JSON nested too deeply") from None
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
    """What render() relies on: the lists are lists (a string there would print one character a line), and a
    receipt says what protected the result."""
    if "layers" not in r and "trust_assumptions" not in r:
        raise ValueError("it names neither layers nor trust assumptions")
    for key in ("layers", "trust_assumptions"):
        value = r.get(key, [])
        if not isinstance(value, (list, str)) or (key == "layers" and not isinstance(value, list)):
            raise TypeError(f"{key!r} is a {type(value).__name__}, not a list")


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
                                       "nodes are told to run; this one never got that far)")
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
    """A receipt as lines for a person: what was released, the layers, DP, who took part, trust."""
    out: list[str] = []
    what = r.get("job_id") or r.get("round") or r.get("run") or "result"
    out.append(f"privacy receipt of {what}" + (f": {r['released']}" if r.get("released") else ""))
    if r.get("outcome"):
        out.append(f"  outcome: {r['outcome']}")
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
    dp = r.get("differential_privacy")
    if isinstance(dp, dict):
        out.append(f"  differential privacy: {dp.get('mechanism', '?')}")
        for rel in dp.get("releases", []):
            left = (", ".join(f"{d} {v:g} left" for d, v in rel.get("ledger_remaining", {}).items())
                    or rel.get("ledger_remaining_note", "-"))
            out.append(f"    {rel['output']} ({rel['statistic']} of {rel['source']}): epsilon {rel['epsilon']:g}, "
                       f"delta {rel['delta']:g}, sensitivity {rel['sensitivity']:g}, noise scale "
                       f"{rel['noise_scale']:.4g}; ledger: {left}")
        if "epsilon" in dp and dp["epsilon"] is None:
            out.append("    epsilon unbounded (no differential privacy)")
        elif "epsilon" in dp:
            out.append(f"    epsilon {dp['epsilon']:g}, delta {dp.get('delta', 0):g}"
                       + (f" (planned {dp.get('planned_epsilon', dp['epsilon']):g}, realised {dp['realised_epsilon']:.4g})"
                          if "realised_epsilon" in dp else ""))
        for key in ("unit", "guarantee", "accountant", "delta_small_rounds", "skipped_rounds", "note", "shortfall"):
            if dp.get(key):
                out.append(f"    {key}: {dp[key]}")
        if dp.get("ledger"):
            led = dp["ledger"]
            out.append(f"    ledger {led.get('dataset')}: remaining {led.get('remaining')}")
    elif dp:
        out.append(f"  differential privacy: {dp}")
    part = r.get("participants")
    if isinstance(part, dict):
        if "registered" in part:
            out.append(f"  registered: {part['registered']}; summed: {part.get('included', '-')}; dropped: "
                       + (", ".join(f"{d['client']} (at {d['stage']})" for d in part.get("dropped", [])) or "none"))
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
    if r.get("aborted"):
        out.append(f"  aborted after {r['aborted']['stage']}: {r['aborted']['reason']}")
    trust = r.get("trust_assumptions")
    for t in ([trust] if isinstance(trust, str) else trust or []):
        out.append(f"  trust: {t}")
    return out


__all__ = ["add_arguments", "receipt_main", "render"]
