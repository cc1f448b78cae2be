"""Prometheus metrics of one role process (prometheus-client), served on ``[metrics] listen``.

One :class:`RoleMetrics` per process, with its own registry (no module-level
globals: many roles fit in one test process).  What is counted:

* ``mpcnet_rpc_total{method, code}`` and ``mpcnet_rpc_seconds{method}``:
  every RPC this role served (an interceptor, all roles);
* ``mpcnet_bytes_sent_total``: bytes of openings a node sent to its peers;
* ``mpcnet_triples_served_total``: elements of preprocessing material the
  dealer issued;
* ``mpcnet_secagg_rounds_total{outcome}`` and
  ``mpcnet_secagg_dropouts_total{stage}``: the coordinator's SecAgg rounds.

Labels are method names, status codes, stages and outcomes only; never ids
of parties or any value.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from mpcnet.transport.handlers import Finish, WrappingInterceptor, wrap_handler

log = logging.getLogger("mpcnet.metrics")


class RoleMetrics:
    def __init__(self, role: str) -> None:
        self.role = role
        self.registry = CollectorRegistry()
        self.rpcs = Counter("mpcnet_rpc", "RPCs served", ["method", "code"], registry=self.registry)
        self.rpc_seconds = Histogram("mpcnet_rpc_seconds", "RPC handling time", ["method"], registry=self.registry,
                                     buckets=(0.001, 0.005, 0.02, 0.1, 0.5, 2, 10, 60, 600))
        self.bytes_sent = Counter("mpcnet_bytes_sent", "bytes of openings sent to peer nodes",
                                  registry=self.registry)
        self.triples_served = Counter("mpcnet_triples_served", "elements of preprocessing material issued",
                                      registry=self.registry)
        self.rounds = Counter("mpcnet_secagg_rounds", "SecAgg rounds finished", ["outcome"], registry=self.registry)
        self.dropouts = Counter("mpcnet_secagg_dropouts", "SecAgg clients dropped", ["stage"],
                                registry=self.registry)
        self.port = 0

    def serve(self, listen: str) -> int:
        """Start the /metrics HTTP endpoint on ``listen`` (host:port; port 0 picks one); returns the port."""
        host, _, port = listen.rpartition(":")
        server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=self.registry)
        self.port = int(server.server_port)
        log.info("%s: Prometheus metrics on http://%s:%d/metrics", self.role, host or "127.0.0.1", self.port)
        return self.port


class MetricsInterceptor(WrappingInterceptor):
    """Count and time every RPC by method and final status code."""

    def __init__(self, metrics: RoleMetrics) -> None:
        super().__init__()
        self.metrics = metrics

    def wrap(self, method: str, handler: Any) -> Any:
        metrics = self.metrics

        async def start(context: grpc.aio.ServicerContext) -> Finish:
            started = time.perf_counter()

            def finish(failed: bool) -> None:
                code = context.code() if hasattr(context, "code") else None
                name = code.name if isinstance(code, grpc.StatusCode) else ("UNKNOWN" if failed else "OK")
                metrics.rpcs.labels(method, name).inc()
                metrics.rpc_seconds.labels(method).observe(time.perf_counter() - started)

            return finish

        return wrap_handler(handler, start)


def role_metrics(role: str, cfg: Any) -> RoleMetrics:
    """The role's metrics, served over HTTP when ``cfg.metrics_listen`` is set."""
    metrics = RoleMetrics(role)
    if cfg.metrics_listen:
        metrics.serve(cfg.metrics_listen)
    return metrics
