"""The `mpcnet` command: run a role, the demo or a benchmark."""

from __future__ import annotations

import argparse
import importlib
import os
import sys


# Subcommands whose module defines add_arguments(parser) and a handler taking the parsed arguments whole:
# name -> (module, handler, help).
MODULE_COMMANDS = {
    "agent": ("mpcnet.client_agent", "agent_main", "long-running SecAgg client: claims a seat in each new round of "
              "a rounds directory (the scaled compose client service)"),
    "health": ("mpcnet.health_cli", "health_main", "container health check: this role's gRPC health service, or a "
               "heartbeat"),
    "watch": ("mpcnet.watch", "watch_main", "live progress of SecAgg rounds and presence from the MQTT event bus"),
    "certs": ("mpcnet.certs_cli", "certs_main", "make the cluster CA and per-role certificates for mutual TLS"),
    "round": ("mpcnet.secagg_admin", "round_main", "create a SecAgg round on a coordinator, or show its outcome"),
    "fedavg": ("mpcnet.fl.cli", "fedavg_main", "federated averaging on a demo dataset through SecAgg, against "
               "plain averaging and centralised training"),
    "fedavg-sweep": ("mpcnet.fl.sweep", "sweep_main", "accuracy per round for several epsilons (table, JSON, PNG "
                     "plot); a study on the public demo data: it spends nothing from the ledger"),
    "ledger": ("mpcnet.ledger_cli", "ledger_main", "the epsilon ledger: privacy budgets and every DP release"),
    "receipt": ("mpcnet.receipt_cli", "receipt_main", "the privacy receipt of an MPC job, a SecAgg round or a FedAvg "
                "run"),
}
ARGS_HANDLERS = {"client": ("mpcnet.secagg_client", "client_main"),
                 **{name: (module, handler) for name, (module, handler, _) in MODULE_COMMANDS.items()}}


def client_counts(text: str) -> list[int]:
    """``--fedavg-clients``: comma-separated client counts, each at least 2 (SecAgg sums two or more)."""
    try:
        counts = [int(c) for c in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated whole numbers, e.g. 20,100") from None
    if any(c < 2 for c in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: every client count must be at least 2 (SecAgg sums two or more)")
    return counts


def main(argv: list[str] | None = None) -> int:
    """Run ``mpcnet <command>``; bad input (:class:`~mpcnet.errors.InvalidInput`, or configuration or certificate
    material that cannot be used) is a one-line message, exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from mpcnet.certs import CertError
    from mpcnet.config import ConfigError
    from mpcnet.errors import InvalidInput
    try:
        return _main(argv)
    except (InvalidInput, ConfigError, CertError) as exc:
        print(f"mpcnet {argv[0] if argv else ''}: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mpcnet", description="mpcnet: privacy-preserving computation over gRPC")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for role in ("coordinator", "dealer", "node"):
        sub.add_parser(role, help=f"run the {role} (see `mpcnet {role} --help`)", add_help=False)
    d = sub.add_parser("demo", help="start a local cluster, run the demo workload, check against numpy")
    d.add_argument("--coordinator", default=None, help="run the MPC part of the demo against this running "
                   "cluster instead of starting local processes")
    d.add_argument("--tls-dir", default=None, help="with --coordinator: certificates of the parties "
                   "(client-hospital-a/b/c) for mTLS (or MPCNET_TLS_DIR)")
    b = sub.add_parser("bench", help="benchmark against MPyC (mul, dot), Flower's SecAgg+ (secagg) or plain "
                       "averaging (fedavg) in the same run")
    b.add_argument("workload", choices=["mul", "dot", "secagg", "fedavg"])
    b.add_argument("--size", type=int, default=1_000_000)
    b.add_argument("--repeats", type=int, default=3, help="mul, dot: mpcnet repetitions (best is reported with the median); fedavg: how many "
                   "times the kinds of round take turns")
    b.add_argument("--no-mpyc", action="store_true", help="skip the MPyC side (no ratio)")
    b.add_argument("--out", default=None, help="results directory (default benchmarks/results)")
    fb = b.add_argument_group("fedavg (time per round through SecAgg against plain averaging)")
    fb.add_argument("--fedavg-clients", type=client_counts, default="20,100", help="client counts, comma-separated")
    fb.add_argument("--rounds", type=int, default=3)
    fb.add_argument("--epochs", type=int, default=5, help="local epochs per round")
    fb.add_argument("--model", choices=["logreg", "mlp"], default="mlp")
    fb.add_argument("--hidden", type=int, default=64, help="MLP hidden units (the update's size grows with it)")
    sa = b.add_argument_group("secagg (one SecAgg round, mpcnet vs Flower 1.42 SecAgg+)")
    sa.add_argument("--clients", type=int, default=20)
    sa.add_argument("--dim", type=int, default=10_000, help="vector length")
    sa.add_argument("--dropout", type=float, default=0.1, help="fraction of clients that die after ShareKeys")
    sa.add_argument("--graph", choices=["full", "sparse"], default="sparse", help="complete graph or SecAgg+")
    sa.add_argument("--client-procs", type=int, default=4, help="client processes the clients are spread over")
    sa.add_argument("--no-flower", action="store_true", help="skip the Flower side (no ratio)")
    sa.add_argument("--flower-python", default=None, help="interpreter with flwr 1.42 (default .venv-flower/bin/python)")
    sa.add_argument("--stage-deadline", type=float, default=120.0,
                    help="per-stage deadline of the round (s): how long a connected but silent client is "
                         "waited for (a crashed one is seen at once)")
    sa.add_argument("--join-deadline", type=float, default=120.0, help="advertise_keys deadline (s)")
    sa.add_argument("--flower-timeout", type=float, default=1800.0, help="time limit of the Flower run (s)")
    c = sub.add_parser("client", help="run one or many SecAgg clients in this process")
    c.add_argument("--coordinator", default=os.environ.get("MPCNET_COORDINATOR"), help="host:port (or MPCNET_COORDINATOR)")
    c.add_argument("--round", required=True, dest="round_id", help="the round id CreateRound returned")
    c.add_argument("--ids", required=True, help="comma-separated client ids to run, e.g. 1,2,3")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--input-seed", help="derive each input from this seed and the client id (tests, demos)")
    src.add_argument("--input-file", help='JSON {"<id>": [number, ...]} of the clients\' inputs '
                     '(FedAvg rounds: {"<id>": {"vector": [...], "weight": n}})')
    c.add_argument("--tokens-file", default=None,
                   help='JSON {"<id>": "<token>"} from CreateRound (or MPCNET_CLIENT_TOKENS with the same JSON)')
    c.add_argument("--signing-keys-file", default=None,
                   help='active rounds: JSON {"<id>": "<Ed25519 signing key, 64 hex>"}')
    c.add_argument("--verify-keys-file", default=None,
                   help='active rounds: JSON {"<id>": "<Ed25519 verify key, 64 hex>"} of EVERY client of the round, '
                   "from the operator (the PKI): the coordinator's copy is not trusted")
    c.add_argument("--timeout", type=float, default=30.0, help="deadline of the join call (seconds)")
    c.add_argument("--die-at", default=None, help="TEST ONLY: SIGKILL this process right before answering STAGE")
    c.add_argument("--tls-dir", default=None, help="certificate directory (ca.crt, client-NAME.crt/.key) for mTLS "
                   "(or MPCNET_TLS_DIR)")
    c.add_argument("--tls-name", default=None, help="this process's client certificate name (default main)")
    c.add_argument("--mqtt", default=None, help="MQTT broker host:port (or MPCNET_MQTT): presence with a last will, "
                   "so the coordinator sees this process die at once")
    c.add_argument("--cluster-name", default=None, help="event topic cluster level (or MPCNET_CLUSTER_NAME; local)")
    c.add_argument("--no-attend", action="store_true",
                   help="answer with Next calls and hold no gRPC presence stream (dropouts then rely on MQTT or "
                   "the stage deadline)")
    c.add_argument("--no-session", action="store_true",
                   help="answer with one Next call per stage plus an Attend presence stream, instead of one Session "
                   "stream (the same protocol; more gRPC calls)")
    for name, (module, _, text) in MODULE_COMMANDS.items():
        importlib.import_module(module).add_arguments(sub.add_parser(name, help=text))
    dr = sub.add_parser("drill", help="fault drills on a local or compose cluster: exact answer or clean abort, "
                        "verdict table")
    dr.add_argument("scenarios", nargs="*", default=["all"], help="scenario names (default all; see "
                    "mpcnet/drills.py, mpcnet/drill_compose.py)")
    dr.add_argument("--quick", action="store_true", help="the short set (CI): fewer SecAgg stages and scenarios")
    dr.add_argument("--out", default=None, help="verdict JSON directory (default drills/results)")
    dr.add_argument("--compose", action="store_true", help="against docker-compose.yml + docker-compose.drills.yml "
                    "(container and network faults through the Docker SDK; needs `make image`)")
    dr.add_argument("--project", default="mpcnet-drill", help="compose project (started when not running)")
    dr.add_argument("--keep", action="store_true", help="leave a compose project this drill started running")
    cf = sub.add_parser("conformance", help="check a live deployment of the proto/mpcnet/v1 contract (docs/conformance.md)")
    cf.add_argument("--target", required=True, help="coordinator host:port")
    cf.add_argument("--tls-dir", default=os.environ.get("MPCNET_TLS_DIR"),
                    help="ca.crt and client-main (and, for the SecAgg group, coordinator-main) certificates")
    cf.add_argument("--secret-file", default=os.environ.get("MPCNET_CLUSTER_SECRET_FILE"),
                    help="the cluster secret, for the operator calls of the SecAgg group (skipped without it)")
    cf.add_argument("--timeout", type=float, default=30.0, help="deadline of each call (s)")
    cf.add_argument("--json", default=None, help="also write the checks to this JSON file")
    sub.add_parser("version", help="print the version")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "coordinator":
        from nodes.coordinator import main as run
        return run(rest)
    if cmd == "dealer":
        from nodes.dealer import main as run
        return run(rest)
    if cmd == "node":
        from nodes.node import main as run
        return run(rest)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from mpcnet.demo import run_demo, run_remote_demo
        if args.coordinator:
            return run_remote_demo(args.coordinator, args.tls_dir or os.environ.get("MPCNET_TLS_DIR"))
        return run_demo()
    if args.command == "bench" and args.workload == "fedavg":
        from mpcnet.bench.fedavg_bench import run_fedavg_bench
        return run_fedavg_bench(args.fedavg_clients, rounds=args.rounds,
                                model_kind=args.model, hidden=args.hidden, epochs=args.epochs, graph=args.graph,
                                out_dir=args.out, repeats=args.repeats)
    if args.command == "bench" and args.workload == "secagg":
        from mpcnet.bench.secagg_runner import run_secagg_bench
        return run_secagg_bench(args.clients, args.dim, args.dropout, args.graph, client_procs=args.client_procs,
                                with_flower=not args.no_flower, out_dir=args.out,
                                stage_deadline_s=args.stage_deadline, join_deadline_s=args.join_deadline,
                                flower_python=args.flower_python, flower_timeout_s=args.flower_timeout)
    if args.command == "bench":
        from mpcnet.bench.runner import run_bench
        return run_bench(args.workload, args.size, repeats=args.repeats, with_mpyc=not args.no_mpyc, out_dir=args.out)
    if args.command in ARGS_HANDLERS:
        module, function = ARGS_HANDLERS[args.command]
        handler = getattr(importlib.import_module(module), function)
        return int(handler(args))
    if args.command == "conformance":
        from mpcnet.conformance import run_conformance
        return run_conformance(args.target, args.tls_dir, args.secret_file, args.timeout, args.json)
    if args.command == "drill" and args.compose:
        from mpcnet.drill_compose import run_compose_drills
        return run_compose_drills(args.scenarios, quick=args.quick, out_dir=args.out, project=args.project,
                                  keep=args.keep)
    if args.command == "drill":
        from mpcnet.drills import run_drills
        return run_drills(args.scenarios, quick=args.quick, out_dir=args.out)
    if args.command == "version":
        from mpcnet import __version__
        print(__version__)
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
