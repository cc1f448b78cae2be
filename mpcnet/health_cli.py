"""`mpcnet health`: the container health check.

``--role R`` asks the gRPC health service of this container's own role
(address from the role's ``listen``; ``0.0.0.0`` is asked on 127.0.0.1),
over mTLS with the role's own certificate when ``MPCNET_TLS_DIR`` is set, and
expects the server to present that same identity.  ``--heartbeat FILE``
checks a long-running process that touches FILE (``mpcnet agent``) instead.
Exit 0 healthy, 1 not (the reason on stderr, one line).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--role", choices=["coordinator", "dealer", "node"], help="check this container's role")
    what.add_argument("--heartbeat", help="check that this file was touched within --max-age seconds")
    parser.add_argument("--address", default=None, help="host:port to ask (default: the role's listen address)")
    parser.add_argument("--config", default=None, help="TOML config (or MPCNET_CONFIG)")
    parser.add_argument("--timeout", type=float, default=3.0, help="deadline of the check (s)")
    parser.add_argument("--max-age", type=float, default=30.0, help="--heartbeat: oldest acceptable touch (s)")


def _local(address: str) -> str:
    host, _, port = address.rpartition(":")
    return f"127.0.0.1:{port}" if host in ("0.0.0.0", "", "[::]", "::") else address


def health_main(args: argparse.Namespace) -> int:
    # a NaN bound would pass every heartbeat: a misconfigured check must fail, not report healthy
    if not (0 < args.max_age < math.inf and 0 < args.timeout < math.inf):
        print(f"unhealthy: configuration: --max-age {args.max_age:g} and --timeout {args.timeout:g} must be "
              "finite seconds > 0", file=sys.stderr)
        return 1  # docker reserves exit status 2 of a health check
    if args.heartbeat:
        try:
            age = time.time() - Path(args.heartbeat).stat().st_mtime
        except OSError as exc:
            print(f"unhealthy: heartbeat {args.heartbeat}: {exc.strerror}", file=sys.stderr)
            return 1
        if age > args.max_age:
            print(f"unhealthy: heartbeat {args.heartbeat} is {age:.0f}s old (> {args.max_age:g}s)", file=sys.stderr)
            return 1
        return 0
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from mpcnet.config import ConfigError, load_config
    from mpcnet.transport.rpc import sync_channel

    role = args.role
    try:
        cfg = load_config(args.config, role=role)
        # the same fallback the roles use (nodes/*.py): listen, else the role's own cluster address
        own = {"coordinator": cfg.coordinator, "dealer": cfg.dealer}.get(role) or (
            cfg.node_address(cfg.node_id) if role == "node" and cfg.node_id else "")
        address = _local(args.address or cfg.listen or own)
        if not address:
            raise ConfigError(f"no address for the {role}: pass --address or set MPCNET_LISTEN")
        tls = cfg.tls_for(role)
    except ConfigError as exc:
        print(f"unhealthy: configuration: {exc}", file=sys.stderr)
        return 1
    expect = tls.identity if tls else None
    try:
        with sync_channel(address, tls, expect) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""),
                                                              timeout=args.timeout)
    except grpc.RpcError as exc:
        print(f"unhealthy: {role} at {address}: {exc.code().name} {exc.details() or ''}".rstrip(), file=sys.stderr)
        return 1
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"unhealthy: {role} at {address} reports {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}",
              file=sys.stderr)
        return 1
    return 0


__all__ = ["add_arguments", "health_main"]


if __name__ == "__main__":  # `python3 -m mpcnet.health_cli`: the compose health check, without the CLI's imports
    _parser = argparse.ArgumentParser(prog="mpcnet health")
    add_arguments(_parser)
    sys.exit(health_main(_parser.parse_args()))
