"""`mpcnet certs init|issue|show`: the command-line face of :mod:`mpcnet.certs`."""

from __future__ import annotations

import argparse
import json
import sys

from mpcnet import certs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="certs_command", metavar="init|issue|show|bootstrap", required=True)
    i = sub.add_parser("init", help="create the cluster CA (ca.crt, ca.key) in --dir")
    i.add_argument("--dir", default="certs", help="certificate directory (default ./certs)")
    i.add_argument("--days", type=int, default=3650)
    i.add_argument("--force", action="store_true", help="replace an existing CA")
    s = sub.add_parser("issue", help="issue ROLE NAME: <role>-<name>.crt/.key signed by the CA in --dir")
    s.add_argument("role", choices=certs.ROLES)
    s.add_argument("name", help="node: its id (1, 2, ...); coordinator and dealer: main; client: any name")
    s.add_argument("--dir", default="certs")
    s.add_argument("--days", type=int, default=365)
    s.add_argument("--host", action="append", default=[],
                   help="extra DNS name or IP address for the certificate (repeatable)")
    b = sub.add_parser("bootstrap", help="make what is missing of a one-machine cluster's CA, certificates and "
                       "cluster secret (docker-compose's certs service); existing files are kept")
    b.add_argument("--dir", default="certs")
    b.add_argument("--nodes", type=int, default=3, help="compute nodes 1..N (default 3)")
    b.add_argument("--clients", default="main", help="comma-separated client certificate names (default main)")
    w = sub.add_parser("show", help="print a certificate's identity and validity")
    w.add_argument("file")


def certs_main(args: argparse.Namespace) -> int:
    try:
        if getattr(args, "days", 1) < 1:  # 0 would make a certificate that expires as it is made
            raise certs.CertError(f"--days {args.days}: a certificate is valid for at least 1 day")
        if getattr(args, "nodes", 2) < 2:
            raise certs.CertError(f"--nodes {args.nodes}: an MPC cluster has at least 2 compute nodes")
        if args.certs_command == "init":
            path = certs.init_ca(args.dir, days=args.days, force=args.force)
            print(f"CA certificate {path}; keep {path.parent / 'ca.key'} private (only `issue` needs it)")
        elif args.certs_command == "issue":
            crt, key = certs.issue(args.dir, args.role, args.name, hosts=args.host, days=args.days)
            print(f"{crt} and {key} (identity {certs.Identity(args.role, args.name).dns}); give that host "
                  f"these two files and {crt.parent / 'ca.crt'}")
        elif args.certs_command == "bootstrap":
            clients = [c.strip() for c in args.clients.split(",") if c.strip()]
            made = certs.bootstrap(args.dir, args.nodes, clients)
            print(f"{args.dir}: made {', '.join(made)}" if made else f"{args.dir}: complete, nothing to make")
        else:
            print(json.dumps(certs.describe(args.file)))
    except (certs.CertError, OSError, ValueError) as exc:
        print(f"mpcnet certs: {exc}", file=sys.stderr)
        return 2
    return 0
