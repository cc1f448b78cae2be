"""`mpcnet round create|result`: create a SecAgg round on a coordinator and read its outcome.

``create`` calls ``CreateRound`` as a cluster role (it needs the cluster
secret: ``--config`` with ``[cluster] secret_file``, or
``MPCNET_CLUSTER_SECRET``), writes the clients' bearer tokens to
``--tokens-out`` (mode 0600; hand each client its own) and prints one JSON
line with the round id and the parameters the server will run.  ``result``
prints the round's state, the included clients and the dropouts; with
``--sum-out FILE`` it writes the aggregate (a JSON list of the ring
integers mod 2^bits; quantized rounds decode it with
``mpcnet.secagg_client.dequantize_result``) -- it never goes to the terminal.
With ``--sum-to-operator-only`` the round's clients learn who was included
and who dropped but not the sum (FedAvg's rounds are created so).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import grpc

from mpcnet.certs import CertError, Identity
from mpcnet.config import ConfigError, load_config
from mpcnet.errors import InvalidInput, MpcnetError, check_output_file
from mpcnet.secagg.crypto import MAX_CLIENT_ID
from mpcnet.secagg_wire import aggregate_of
from mpcnet.transport.rpc import CLUSTER_AUTH_KEY, from_rpc_error, sync_channel
from mpcnet.transport.tls import TlsFiles
from mpcnet.v1 import secagg_pb2 as spb
from mpcnet.v1 import secagg_pb2_grpc as spbg

MAX_UINT32 = 2**32 - 1  # the proto's integer fields


def parse_ids(text: str) -> list[int]:
    """``1-8`` or ``1,2,5-7`` -> sorted distinct ids."""
    ids: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo or hi - lo > 100_000:
                    raise ValueError
                ids.extend(range(lo, hi + 1))
            else:
                ids.append(int(part))
    except ValueError:
        raise InvalidInput(f"--clients must be ids or ranges like 1-8,10, got {text!r}") from None
    if len(set(ids)) != len(ids):
        raise InvalidInput("--clients names a client id twice")
    outside = [i for i in ids if not 1 <= i <= MAX_CLIENT_ID]
    if outside:
        raise InvalidInput(f"--clients: client ids are 1 to {MAX_CLIENT_ID} (2^31 - 1), got {outside[0]}")
    return sorted(ids)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="round_command", metavar="create|result", required=True)
    for name, text in (("create", "create a round (needs the cluster secret)"),
                       ("result", "show a round's outcome")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", default=None, help="TOML config (coordinator address, [cluster] secret_file)")
        p.add_argument("--coordinator", default=None, help="host:port (default: config / MPCNET_COORDINATOR)")
        p.add_argument("--timeout", type=float, default=30.0, help="RPC deadline (s)")
        p.add_argument("--tls-dir", default=None, help="certificate directory for mTLS (default: config / "
                       "MPCNET_TLS_DIR); creating rounds needs the coordinator's own certificate")
        if name == "create":
            p.add_argument("--clients", required=True, help="client ids, e.g. 1-100 or 1,2,5-9")
            p.add_argument("--threshold", type=int, required=True, help="Shamir threshold t")
            p.add_argument("--dim", type=int, required=True, help="vector length")
            p.add_argument("--bits", type=int, default=32, help="masks in Z_(2^bits) (default 32)")
            p.add_argument("--graph", choices=["full", "sparse"], default="full", help="SecAgg or SecAgg+")
            p.add_argument("--degree", type=int, default=0, help="SecAgg+ degree (0 = O(log n) default)")
            p.add_argument("--stage-deadline", type=float, default=0.0, help="per-stage deadline (s)")
            p.add_argument("--join-deadline", type=float, default=0.0, help="advertise_keys deadline (s)")
            p.add_argument("--round-id", default="", help="round id (default: the server picks one)")
            p.add_argument("--sum-to-operator-only", action="store_true",
                           help="the sum goes to the operator only (clients learn who was included, not the sum)")
            p.add_argument("--tokens-out", required=True, help="file for the clients' bearer tokens (JSON)")
        else:
            p.add_argument("--round", required=True, dest="round_id")
            p.add_argument("--sum-out", default=None, help="write the aggregate here as JSON")


def operator_connection(args: argparse.Namespace) -> tuple[str, tuple[tuple[str, str], ...], TlsFiles | None]:
    """(coordinator address, cluster-secret metadata, operator TLS) for an operator command's ``--config``,
    ``--coordinator`` and ``--tls-dir`` (operator calls use the coordinator's own certificate)."""
    cfg = load_config(args.config)
    if not cfg.cluster_secret:
        raise InvalidInput("no cluster secret: pass --config with [cluster] secret_file, or set "
                           "MPCNET_CLUSTER_SECRET")
    tls_dir = args.tls_dir or cfg.tls_dir
    tls = TlsFiles.load(tls_dir, "coordinator", cfg.tls_name or "main") if tls_dir else None
    return args.coordinator or cfg.coordinator, ((CLUSTER_AUTH_KEY, cfg.cluster_secret),), tls


def _check_args(args: argparse.Namespace) -> None:
    """What the coordinator would refuse anyway, or could not be sent or saved: refused before the call, so that
    no round is created whose tokens cannot be written."""
    if not 0 < args.timeout < math.inf:
        raise InvalidInput(f"--timeout {args.timeout:g}: the call's deadline must be > 0 seconds")
    if args.round_command == "create":
        check_output_file("--tokens-out", args.tokens_out)
    elif args.sum_out:
        check_output_file("--sum-out", args.sum_out)
    if args.round_command != "create":
        return
    parse_ids(args.clients)
    for flag, value, lo, hi in (("--threshold", args.threshold, 1, MAX_UINT32), ("--dim", args.dim, 1, MAX_UINT32),
                                ("--bits", args.bits, 1, 64), ("--degree", args.degree, 0, MAX_UINT32)):
        if not lo <= value <= hi:
            raise InvalidInput(f"{flag} {value}: must be from {lo} to {hi}")
    for flag, seconds in (("--stage-deadline", args.stage_deadline), ("--join-deadline", args.join_deadline)):
        if not 0 <= seconds < math.inf:
            raise InvalidInput(f"{flag} {seconds:g}: seconds >= 0 (0: the coordinator's default)")


def round_main(args: argparse.Namespace) -> int:
    try:
        _check_args(args)
        address, metadata, tls = operator_connection(args)
        with sync_channel(address, tls, Identity("coordinator", "main")) as channel:
            stub = spbg.SecAggStub(channel)
            try:
                if args.round_command == "create":
                    return _create(stub, args, metadata)
                return _result(stub, args, metadata)
            except grpc.RpcError as exc:
                raise from_rpc_error(exc, f"SecAgg coordinator at {address}") from None
    except (MpcnetError, ConfigError, CertError) as exc:
        print(f"mpcnet round: {exc}", file=sys.stderr)
        return 2


def _create(stub: spbg.SecAggStub, args: argparse.Namespace, metadata: tuple[tuple[str, str], ...]) -> int:
    graph = spb.SECAGG_GRAPH_SECAGGPLUS if args.graph == "sparse" else spb.SECAGG_GRAPH_COMPLETE
    params = spb.SecAggRoundParams(round_id=args.round_id, client_ids=parse_ids(args.clients),
                                   threshold=args.threshold, vector_length=args.dim, bits=args.bits, graph=graph,
                                   degree=args.degree, stage_deadline_s=args.stage_deadline,
                                   join_deadline_s=args.join_deadline,
                                   sum_to_operator_only=args.sum_to_operator_only)
    reply = stub.CreateRound(spb.SecAggCreateRoundRequest(params=params), timeout=args.timeout, metadata=metadata)
    out = Path(args.tokens_out)
    # written aside and renamed: `mpcnet agent` picks token files up as soon as they appear
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({str(k): v for k, v in sorted(reply.client_tokens.items())}, fh)
    os.replace(tmp, out)
    p = reply.params
    print(json.dumps({"round": reply.round_id, "clients": len(p.client_ids), "threshold": p.threshold,
                      "bits": p.bits, "vector_length": p.vector_length,
                      "graph": "sparse" if p.graph == spb.SECAGG_GRAPH_SECAGGPLUS else "full", "degree": p.degree,
                      "stage_deadline_s": p.stage_deadline_s, "join_deadline_s": p.join_deadline_s,
                      "sum_to_operator_only": p.sum_to_operator_only, "tokens_file": str(out)}))
    return 0


def _result(stub: spbg.SecAggStub, args: argparse.Namespace, metadata: tuple[tuple[str, str], ...]) -> int:
    res = stub.GetResult(spb.SecAggGetResultRequest(round_id=args.round_id), timeout=args.timeout, metadata=metadata)
    line: dict[str, object] = {"round": res.round_id, "state": res.state, "stage": res.stage}
    if res.state == "done":
        line["included"] = list(res.done.included)
        line["dropped"] = [{"client": d.client_id, "stage": d.stage} for d in res.done.dropped]
        if args.sum_out:
            Path(args.sum_out).write_text(json.dumps(aggregate_of(res.done).tolist()))
            line["sum_file"] = args.sum_out
    elif res.state == "aborted":
        line["reason"] = res.aborted.reason
    if res.receipt_json:
        line["receipt"] = json.loads(res.receipt_json)
    print(json.dumps(line))
    return 0 if res.state == "done" else 3 if res.state == "aborted" else 4


__all__ = ["round_main", "add_arguments", "operator_connection", "parse_ids"]
