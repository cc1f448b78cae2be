"""`mpcnet ledger show|budget`: read and configure the epsilon ledger (mpcnet/ledger.py)."""

from __future__ import annotations

import argparse
import json
import sqlite3
import time

from mpcnet.errors import InvalidInput, MpcnetError
from mpcnet.ledger import EpsilonLedger, check_chosen_location, shown_balance


LEDGER_HELP = "SQLite file (default MPCNET_LEDGER or ~/.mpcnet/epsilon-ledger.sqlite)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ledger", default=None, help=LEDGER_HELP)
    sub = p.add_subparsers(dest="ledger_command", metavar="{show,budget}", required=True)
    show = sub.add_parser("show", help="budgets, spending and every release")
    # also after the subcommand (`mpcnet ledger show --ledger F`), where people type it; SUPPRESS keeps a value
    # given before the subcommand when none is given after
    show.add_argument("--ledger", default=argparse.SUPPRESS, help=LEDGER_HELP)
    show.add_argument("--dataset", default=None)
    show.add_argument("--json", action="store_true")
    budget = sub.add_parser("budget", help="set a dataset's (epsilon, delta) budget")
    budget.add_argument("--ledger", default=argparse.SUPPRESS, help=LEDGER_HELP)
    budget.add_argument("--dataset", required=True)
    budget.add_argument("--epsilon", type=float, required=True)
    budget.add_argument("--delta", type=float, required=True)


def ledger_main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    console = Console()
    errors = Console(stderr=True, soft_wrap=True)  # a refusal is one line on stderr, even through a pipe
    try:
        if args.ledger_command == "budget":
            check_chosen_location(args.ledger)
        elif args.ledger is not None and not args.ledger.strip():
            raise InvalidInput("--ledger is empty: give the ledger's file, or leave --ledger out for the default")
        with EpsilonLedger(args.ledger, create=args.ledger_command == "budget") as ledger:
            if args.ledger_command == "budget":
                ledger.set_budget(args.dataset, args.epsilon, args.delta)
                eps, dl = ledger.remaining(args.dataset)
                console.print(f"dataset {args.dataset}: budget epsilon {args.epsilon:g}, delta {args.delta:g}; "
                              f"{eps:g} / {dl:g} left")
                return 0
            known = ledger.datasets()
            if args.dataset and args.dataset not in known:
                errors.print(f"[red]mpcnet ledger: no dataset {args.dataset!r} in {ledger.path} (it has: "
                              f"{', '.join(known) or 'none'})[/]")
                return 2
            datasets = [args.dataset] if args.dataset else known
            # everything read (and checked) before anything is printed: an edited row refuses the whole ledger
            held = {d: (ledger.budget(d), ledger.spent(d), ledger.releases(d)) for d in datasets}
            if args.json:
                print(json.dumps({d: {"budget": b, "spent": spent, "releases": [r.__dict__ for r in releases]}
                                  for d, (b, spent, releases) in held.items()}, indent=1))
                return 0
            for d, (b, (eps, dl), releases) in held.items():
                if b:
                    eps_left, dl_left = shown_balance(b[0] - eps, b[1] - dl)
                    head = (f"budget epsilon {b[0]:g}, delta {b[1]:g}; spent {eps:g}, {dl:g}; left {eps_left:g}, "
                            f"{dl_left:g}")
                else:
                    head = f"no budget; spent {eps:g}, {dl:g}"
                t = Table(title=f"{d}: {head}")
                for col in ("#", "when (UTC)", "release", "mechanism", "epsilon", "delta", "parameters"):
                    t.add_column(col, overflow="fold")
                for r in releases:
                    t.add_row(str(r.id), time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.at)), r.name, r.mechanism,
                              f"{r.epsilon:g}", f"{r.delta:g}", json.dumps(r.params, sort_keys=True))
                console.print(t)
            if not datasets:
                console.print(f"the ledger {ledger.path} is empty")
            return 0
    except MpcnetError as exc:
        errors.print(f"[red]mpcnet ledger: {exc}[/]")
        return 2
    except sqlite3.Error as exc:  # a fallback: the ledger wraps SQLite's errors as LedgerUnusable
        errors.print(f"[red]mpcnet ledger: {args.ledger or 'the ledger'} cannot be read as an epsilon ledger: "
                      f"{exc}[/]")
        return 2


__all__ = ["add_arguments", "ledger_main"]
