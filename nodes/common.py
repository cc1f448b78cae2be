"""Process entry-point plumbing shared by the roles."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any, Callable, Coroutine

from mpcnet.config import Config, ConfigError, load_config


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line (MPCNET_LOG_FORMAT=json): ts, role, level, logger, msg."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        import json
        return json.dumps({"ts": round(record.created, 3), "role": self.role, "level": record.levelname,
                           "logger": record.name, "msg": record.getMessage()}, sort_keys=True)


def setup_logging(level: str, role: str) -> None:
    if os.environ.get("MPCNET_LOG_FORMAT", "").lower() == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLogFormatter(role))
        logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
        return
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def die_with_parent() -> None:
    """If started by a launcher that set MPCNET_PARENT_PID (LocalCluster), get SIGTERM when it dies.

    Linux prctl(PR_SET_PDEATHSIG), set in the role itself after exec (a preexec_fn is not safe
    in a launcher with threads); if the launcher is already gone, exit at once.
    """
    parent = os.environ.get("MPCNET_PARENT_PID")
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() != int(parent):
        raise SystemExit(0)


def role_main(role: str, serve: Callable[[Config], Coroutine[Any, Any, None]], argv: list[str] | None = None,
              with_id: bool = False) -> int:
    parser = argparse.ArgumentParser(prog=f"mpcnet {role}", description=f"Run the mpcnet {role}.")
    parser.add_argument("--config", help="TOML configuration file (or MPCNET_CONFIG)")
    parser.add_argument("--listen", help="host:port to serve on")
    if with_id:
        parser.add_argument("--id", type=int, dest="node_id", help="node id, 1..N")
        parser.add_argument("--state-dir", help="directory for the node's journal")
    args = parser.parse_args(argv)
    die_with_parent()
    try:
        cfg = load_config(args.config, role=role, listen=args.listen,
                          node_id=getattr(args, "node_id", None), state_dir=getattr(args, "state_dir", None))
    except ConfigError as exc:
        print(f"mpcnet {role}: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(cfg.log_level, f"{role}{cfg.node_id or ''}")
    try:
        asyncio.run(serve(cfg))
    except ConfigError as exc:
        print(f"mpcnet {role}: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"mpcnet {role}: {exc}", file=sys.stderr)
        return 1
    return 0
