"""The dealer: preprocessing material for the compute nodes.

Trusted third party of the semi-honest model: it sees the triples in the
clear, compute nodes never do.  It hands each node a 256-bit seed at
enrolment; per batch it only streams correction arrays to the last node
(node N), so its traffic does not grow with N.  A batch id is issued once
and its corrections are delivered once, then forgotten.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from pathlib import Path
from dataclasses import dataclass
from typing import AsyncIterator

import grpc
import numpy as np

from mpcnet.transport.metrics import RoleMetrics, role_metrics
from mpcnet.transport.mqtt_bus import close_bus, open_bus
from mpcnet.config import Config, ConfigError
from mpcnet.journal import DealerLedger
from mpcnet.core import prg
from mpcnet.core.beaver import ProductKind
from mpcnet.core.preprocessing import MaterialItem, MaterialKind, dealer_corrections
from mpcnet.errors import AlreadyExists, FailedPrecondition, InvalidInput, NotFound, PermissionDenied, ResourceExhausted
from mpcnet.transport.rpc import RoleServer, servicer_errors, stream_servicer_errors
from mpcnet.transport.tensors import array_chunks
from mpcnet.v1 import mpc_pb2 as pb
from mpcnet.v1 import mpc_pb2_grpc as pbg

log = logging.getLogger("mpcnet.dealer")


def material_from_proto(spec: pb.MaterialSpec) -> MaterialItem:
    try:
        kind = MaterialKind(spec.kind)
        product = ProductKind(spec.product or "elementwise")
        shape_a = tuple(int(s) for s in spec.shape_a)
        shape_b = tuple(int(s) for s in spec.shape_b)
        if any(s < 0 for s in shape_a + shape_b):
            raise ValueError("negative dimension")
        return MaterialItem(kind, shape_a, shape_b, product, int(spec.shift))
    except ValueError as exc:
        raise InvalidInput(f"malformed material spec: {exc}") from None


def material_to_proto(item: MaterialItem) -> pb.MaterialSpec:
    return pb.MaterialSpec(kind=item.kind.value, shape_a=item.shape_a, shape_b=item.shape_b,
                           product=item.product.value, shift=item.shift)


@dataclass
class _Batch:
    job_id: str
    corrections: np.ndarray
    created: float


class DealerService(pbg.DealerServicer):
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.metrics: RoleMetrics | None = None
        self.n = cfg.n_nodes
        self.instance = secrets.token_hex(4)
        self.seeds: dict[int, tuple[bytes, str]] = {}
        self.enrolments = itertools.count(1)
        self.batch_counter = itertools.count(1)
        self.batches: dict[str, _Batch] = {}
        self.delivered: set[str] = set()
        self.served_elements = 0
        # state_dir: the ledger of issued batches survives a restart (mpcnet/journal.py): one batch per job, ever,
        # and a batch issued before a restart is never delivered after it (its corrections were in memory only)
        self.ledger = DealerLedger(Path(cfg.state_dir) / "dealer.sqlite") if cfg.state_dir else None
        if self.ledger is not None:
            self.delivered.update(self.ledger.batch_ids())
            log.info("ledger %s: %d batches issued before", self.ledger.path, len(self.delivered))

    @servicer_errors
    async def Enroll(self, request: pb.EnrollRequest, context: grpc.aio.ServicerContext) -> pb.EnrollResponse:
        node_id = request.node_id
        if not 1 <= node_id <= self.n:
            raise InvalidInput(f"node id {node_id} outside 1..{self.n}")
        seed = prg.new_seed()
        epoch = f"{self.instance}:{next(self.enrolments)}"
        self.seeds[node_id] = (seed, epoch)
        log.info("node %d enrolled (epoch %s)", node_id, epoch)
        return pb.EnrollResponse(seed=seed, epoch=epoch, n_nodes=self.n)

    @servicer_errors
    async def CreateBatch(self, request: pb.CreateBatchRequest,
                          context: grpc.aio.ServicerContext) -> pb.CreateBatchResponse:
        missing = [i for i in range(1, self.n + 1) if i not in self.seeds]
        if missing:
            raise FailedPrecondition(f"dealer: node(s) {missing} have not enrolled with this dealer")
        items = [material_from_proto(s) for s in request.items]
        total = sum(it.elements for it in items)
        if total > 8 * self.cfg.max_elements:
            raise ResourceExhausted(f"dealer: batch of {total} elements exceeds the limit")
        self.expire_batches()
        if self.ledger is not None:
            earlier = self.ledger.issued_for(request.job_id)
            if earlier is not None:
                raise AlreadyExists(f"dealer: job {request.job_id} already had batch {earlier}; one batch per job, "
                                    "material is never issued twice")
        batch_id = f"{self.instance}-{next(self.batch_counter)}-{secrets.token_hex(8)}"
        seeds = [self.seeds[i][0] for i in range(1, self.n + 1)]
        epochs = [self.seeds[i][1] for i in range(1, self.n + 1)]
        corr = await asyncio.to_thread(dealer_corrections, seeds, batch_id, items)
        flat = [a.ravel() for item in corr for a in item]
        vector = np.concatenate(flat) if flat else np.zeros(0, dtype=np.uint64)
        if self.ledger is not None:  # before the batch exists anywhere: what was handed out is on record
            self.ledger.record(batch_id, request.job_id, len(items))
        self.batches[batch_id] = _Batch(request.job_id, vector, time.time())
        self.served_elements += total
        if self.metrics is not None:
            self.metrics.triples_served.inc(total)
        log.info("batch %s for job %s: %d items, %d correction elements", batch_id, request.job_id,
                 len(items), vector.size)
        return pb.CreateBatchResponse(batch_id=batch_id, node_epochs=epochs)

    def expire_batches(self) -> None:
        """Drop corrections nobody fetched within the job deadline (e.g. the job failed before Prepare)."""
        cutoff = time.time() - (self.cfg.job_timeout_s + self.cfg.stage_timeout_s)
        for batch_id in [b for b, batch in self.batches.items() if batch.created < cutoff]:
            del self.batches[batch_id]
            self.delivered.add(batch_id)  # never deliverable later either

    @stream_servicer_errors
    async def FetchCorrections(self, request: pb.FetchCorrectionsRequest,
                               context: grpc.aio.ServicerContext) -> AsyncIterator[pb.TensorChunk]:
        if request.node_id != self.n:
            raise PermissionDenied(f"dealer: only node {self.n} receives corrections; node {request.node_id} "
                                   "expands its material from its seed")
        if request.batch_id in self.delivered:
            raise AlreadyExists(f"dealer: batch {request.batch_id} was already delivered; material is never "
                                "handed out twice")
        batch = self.batches.pop(request.batch_id, None)
        if batch is None:
            raise NotFound(f"dealer: unknown batch {request.batch_id}")
        self.delivered.add(request.batch_id)
        for chunk in array_chunks(batch.corrections):
            yield chunk


async def serve(cfg: Config) -> None:
    listen = cfg.listen or cfg.dealer
    metrics = role_metrics("dealer", cfg)
    server = RoleServer("dealer", listen, cfg.cluster_secret, cfg.tls_for("dealer"), metrics)
    dealer = DealerService(cfg)
    dealer.metrics = metrics
    pbg.add_DealerServicer_to_server(dealer, server.server)
    port = await server.start()
    bus = open_bus(cfg.mqtt, cfg.cluster_name, "dealer", cfg.tls_name or "main")  # presence, with a last will
    server.install_signal_handlers()
    await server.set_serving(True, ("", "mpcnet.v1.Dealer"))
    log.info("dealer serving on port %d for %d nodes", port, cfg.n_nodes)
    try:
        await server.wait_for_stop()
    finally:
        log.info("dealer shutting down")
        await server.stop()
        if dealer.ledger is not None:
            dealer.ledger.close()
        await close_bus(bus)


def main(argv: list[str] | None = None) -> int:
    from nodes.common import role_main
    return role_main("dealer", serve, argv)


if __name__ == "__main__":
    raise SystemExit(main())
