"""`mpcnet agent`: a long-running SecAgg client for a scaled container service.

``docker compose up --scale client=N`` starts N identical containers; none
knows its client id in advance.  They share a rounds directory (a volume)
with the operator's one-shot ``mpcnet round create --tokens-out
DIR/<round>.tokens.json``.  Each agent watches the directory, and for every
new round claims one free seat by creating ``<round>.seat-<id>`` with
O_CREAT|O_EXCL (atomic on one file system, so two agents never take the same
id), reads that id's token and takes part on a Session stream (its presence)
so that a killed container is a dropout at once.  How the round ended for
the seat is written to ``<round>.seat-<id>.json`` (state, stage, included
ids; never the aggregate, which the agent does not ask for).  One seat per
agent per round; an agent touches ``--heartbeat`` every poll, which is what
``mpcnet health --heartbeat`` checks.

``--drill-hooks`` (docker-compose.drills.yml only): a drill may put
``<round>.drill.json`` {"hold": {"stage": S, "seats": [ids], "max_s": 120}}
beside the tokens file; an agent holding one of those seats stops when
stage S's request arrives, writes ``<round>.seat-<id>.held`` and waits (at
most max_s, then it goes on) so that the drill can ``docker kill`` or
partition it at exactly that stage.  Without the flag the file is ignored.

Decision: seat claiming by file is for one host (compose, a one-node swarm);
agents spread over machines get their id and token from their operator
(``mpcnet client --ids ... --tokens-file``) instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable

from mpcnet.errors import InvalidInput, MpcnetError
from mpcnet.secagg.stage import Stage
from mpcnet.secagg_client import ClientOutcome, client_tls, file_inputs, run_client, seeded_inputs
from mpcnet.transport.tls import TlsFiles

log = logging.getLogger("mpcnet.agent")
TOKENS_SUFFIX = ".tokens.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--coordinator", default=os.environ.get("MPCNET_COORDINATOR"), help="host:port (or "
                   "MPCNET_COORDINATOR)")
    p.add_argument("--rounds-dir", required=True, help="directory where `mpcnet round create --tokens-out` puts "
                   "<round>.tokens.json files")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input-seed", help="derive the input from this seed and the claimed client id (demos, tests)")
    src.add_argument("--input-file", help='JSON {"<id>": [number, ...]}')
    p.add_argument("--poll", type=float, default=0.5, help="seconds between looks at the rounds directory")
    p.add_argument("--max-round-age", type=float, default=600.0,
                   help="ignore token files older than this (s): a restarted agent does not join old rounds")
    p.add_argument("--heartbeat", default=None, help="file touched every poll (for `mpcnet health --heartbeat`)")
    p.add_argument("--timeout", type=float, default=30.0, help="deadline of the join call (s)")
    p.add_argument("--max-rounds", type=int, default=0, help="exit after this many rounds (0 = run until SIGTERM)")
    p.add_argument("--tls-dir", default=None, help="certificate directory (or MPCNET_TLS_DIR)")
    p.add_argument("--tls-name", default=None, help="client certificate name (or MPCNET_TLS_NAME; default main)")
    p.add_argument("--drill-hooks", action="store_true", help="obey <round>.drill.json hold requests (drills only)")


def claim_seat(rounds_dir: Path, round_id: str, client_ids: list[int], who: str) -> int | None:
    """The first free seat of ``round_id`` (atomic O_EXCL create), or None when every seat is taken."""
    for cid in sorted(client_ids):
        try:
            fd = os.open(rounds_dir / f"{round_id}.seat-{cid}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(who)
        return cid
    return None


def drill_hold(rounds_dir: Path, round_id: str, cid: int, who: str) -> Callable[[Stage], Awaitable[None]]:
    """The ``--drill-hooks`` hold: freeze this seat at the stage ``<round>.drill.json`` names."""
    async def hold(stage: Stage) -> None:
        try:
            spec = json.loads((rounds_dir / f"{round_id}.drill.json").read_text()).get("hold", {})
        except (OSError, ValueError, AttributeError):
            return
        if spec.get("stage") != stage.value or cid not in spec.get("seats", []):
            return
        (rounds_dir / f"{round_id}.seat-{cid}.held").write_text(who)
        log.warning("round %s seat %d: held at %s for a drill", round_id, cid, stage.value)
        await asyncio.sleep(min(float(spec.get("max_s", 120.0)), 600.0))
    return hold


def new_rounds(rounds_dir: Path, seen: set[str], max_age_s: float) -> list[tuple[str, dict[int, str]]]:
    """Rounds whose token files appeared since the last look (complete files only: `round create` renames)."""
    found = []
    now = time.time()
    for path in sorted(rounds_dir.glob("*" + TOKENS_SUFFIX)):
        round_id = path.name[: -len(TOKENS_SUFFIX)]
        if round_id in seen:
            continue
        seen.add(round_id)
        try:
            if now - path.stat().st_mtime > max_age_s:
                continue
            tokens = {int(k): str(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("skipping %s: not a tokens file (%s)", path.name, type(exc).__name__)
            continue
        found.append((round_id, tokens))
    return found


async def run_agent(args: argparse.Namespace, tls: TlsFiles | None) -> int:
    rounds_dir = Path(args.rounds_dir)
    rounds_dir.mkdir(parents=True, exist_ok=True)
    inputs = seeded_inputs(args.input_seed) if args.input_seed is not None else file_inputs(args.input_file)
    who = f"{socket.gethostname()}:{os.getpid()}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # rounds present at start-up are judged by age only; a seat file of ours from a previous life is not reused
    seen: set[str] = set()
    rounds = 0
    log.info("agent %s watching %s for rounds on %s", who, rounds_dir, args.coordinator)
    while not stop.is_set():
        if args.heartbeat:
            Path(args.heartbeat).touch()
        for round_id, tokens in new_rounds(rounds_dir, seen, args.max_round_age):
            cid = claim_seat(rounds_dir, round_id, list(tokens), who)
            if cid is None:
                log.info("round %s: every seat is taken", round_id)
                continue
            log.info("round %s: took seat %d", round_id, cid)
            outcome: ClientOutcome = await run_client(args.coordinator, round_id, cid, inputs, token=tokens[cid],
                                                      rpc_timeout_s=args.timeout, tls=tls,
                                                      hold=drill_hold(rounds_dir, round_id, cid, who)
                                                      if args.drill_hooks else None)
            (rounds_dir / f"{round_id}.seat-{cid}.json").write_text(json.dumps(outcome.summary(), sort_keys=True))
            log.info("round %s seat %d: %s %s", round_id, cid, outcome.state, outcome.reason)
            rounds += 1
            if args.heartbeat:
                Path(args.heartbeat).touch()
        if args.max_rounds and rounds >= args.max_rounds:
            break
        try:
            await asyncio.wait_for(stop.wait(), args.poll)
        except TimeoutError:
            pass
    return 0


def agent_main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=os.environ.get("MPCNET_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s agent %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        if not args.coordinator:
            raise InvalidInput("no coordinator address: pass --coordinator or set MPCNET_COORDINATOR")
        tls = client_tls(args.tls_dir, args.tls_name)
    except MpcnetError as exc:
        print(f"mpcnet agent: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run_agent(args, tls))


__all__ = ["add_arguments", "agent_main", "claim_seat", "new_rounds"]
