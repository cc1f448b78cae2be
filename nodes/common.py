"""Process entry-point plumbing shared by the roles."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any, Callable, Coroutine

from mpcnet.config import Config, ConfigError, load_config


def setup_logging(level: str, role: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def role_main(role: str, serve: Callable[[Config], Coroutine[Any, Any, None]], argv: list[str] | None = None,
              with_id: bool = False) -> int:
    parser = argparse.ArgumentParser(prog=f"mpcnet {role}", description=f"Run the mpcnet {role}.")
    parser.add_argument("--config", help="TOML configuration file (or MPCNET_CONFIG)")
    parser.add_argument("--listen", help="host:port to serve on")
    if with_id:
        parser.add_argument("--id", type=int, dest="node_id", help="node id, 1..N")
        parser.add_argument("--state-dir", help="directory for the node's journal")
    args = parser.parse_args(argv)
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
