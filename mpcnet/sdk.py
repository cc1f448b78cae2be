"""The Python SDK: connect, share, run, reveal.

    import numpy as np
    import mpcnet
    from mpcnet import Program

    bob = mpcnet.connect("127.0.0.1:7100", party="bob")
    alice = mpcnet.connect("127.0.0.1:7100", party="alice")
    job = alice.create_job(parties=["bob"])
    alice.share(job, "x", np.array([1.5, 2.0]))        # floats: fixed point
    bob.share(job, "y", np.array([4.0, -1.0]))
    alice.run(job, Program().mul("z", "x", "y").output("z", to=["alice"]))
    print(alice.reveal(job, "z"))                      # [ 6. -2.]

Integer arrays (numpy integer dtype) are shared exactly as integers; float
arrays as fixed point with the cluster's fractional bits.  An input is split
with seed compression: nodes 1..N-1 receive a 256-bit seed each, node N the
correction, so no node ever receives a whole value.  Every call has a
deadline; failures raise :class:`mpcnet.errors.MpcnetError` subclasses whose
message names the job, secret, node and stage.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import grpc
import numpy as np
import numpy.typing as npt

from mpcnet.certs import Identity
from mpcnet.core import fixedpoint
from mpcnet.core.program import Program
from mpcnet.core.sharing import input_label, reconstruct, share_seeded
from mpcnet.errors import InvalidInput
from mpcnet.transport.rpc import PARTY_TOKEN_KEY, from_rpc_error, sync_channel
from mpcnet.transport.tensors import ArrayAssembler, array_chunks
from mpcnet.transport.tls import TlsFiles
from mpcnet.wire import program_to_proto
from mpcnet.v1 import mpc_pb2 as pb
from mpcnet.v1 import mpc_pb2_grpc as pbg


@dataclass(frozen=True)
class RunResult:
    job_id: str
    layers: int
    preprocessing_s: float
    online_s: float
    total_s: float
    bytes_exchanged: int
    peak_rss_kb: tuple[int, ...]
    receipt: dict[str, Any]


class Party:
    """A registered input/output party connected to a cluster."""

    def __init__(self, coordinator: str, name: str, timeout_s: float = 30.0, job_timeout_s: float = 900.0,
                 tls: TlsFiles | None = None) -> None:
        self.name = name
        self.timeout = timeout_s
        self.job_timeout = job_timeout_s
        self.tls = tls
        self._channels: list[grpc.Channel] = []
        self.coordinator = pbg.CoordinatorStub(self._channel(coordinator, Identity("coordinator", "main")))
        try:
            grpc.channel_ready_future(self._channels[0]).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            self.close()
            raise from_rpc_error(_Unavailable(), f"coordinator at {coordinator}") from None
        self.token = self._call("coordinator", self.coordinator.RegisterParty,
                                pb.RegisterPartyRequest(name=name), metadata=False).token
        cluster = self._call("coordinator", self.coordinator.GetCluster, pb.GetClusterRequest())
        self.frac_bits = cluster.frac_bits
        self.node_ids = [n.id for n in cluster.nodes]
        self.nodes = {n.id: pbg.NodeStub(self._channel(n.address, Identity("node", str(n.id))))
                      for n in cluster.nodes}
        self._pool = ThreadPoolExecutor(max_workers=max(2, len(self.nodes)))

    def _channel(self, address: str, expect: Identity) -> grpc.Channel:
        ch = sync_channel(address, self.tls, expect)
        self._channels.append(ch)
        return ch

    @property
    def _md(self) -> tuple[tuple[str, str], ...]:
        return ((PARTY_TOKEN_KEY, self.token),)

    def _call(self, who: str, method: Any, request: Any, timeout: float | None = None, metadata: bool = True) -> Any:
        try:
            return method(request, timeout=timeout or self.timeout, metadata=self._md if metadata else None)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, who) from None

    def close(self) -> None:
        if hasattr(self, "_pool"):
            self._pool.shutdown(wait=False)
        for ch in self._channels:
            ch.close()

    def __enter__(self) -> "Party":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the four verbs ------------------------------------------------------------
    def create_job(self, parties: Iterable[str] = (), name: str = "job") -> str:
        """Create a job shared with ``parties`` (this party is always included)."""
        info = self._call("coordinator", self.coordinator.CreateJob,
                          pb.CreateJobRequest(name=name, parties=list(parties)))
        return str(info.job_id)

    def share(self, job_id: str, name: str, values: npt.ArrayLike, integer: bool | None = None,
              bound: float | None = None, *, nonnegative: bool = False, dp_only: bool = False) -> None:
        """Secret-share ``values`` as input ``name`` of ``job_id``.

        ``bound`` is a public bound on |values| that the cluster uses to refuse
        programs that could overflow.  Default: the smallest power of two
        >= max|values|, which tells the nodes and coordinator the magnitude
        (to a power of two) of the input; pass a fixed bound to reveal nothing
        about the data.  Values above an explicit bound are refused here.

        ``nonnegative``: declare every value in [0, bound] (checked here).  ``dp_only``: this input may be
        released only through dp_sum / dp_mean / dp_count (differential privacy); the job refuses any other
        output that depends on it.  A DP-only input needs an explicit ``bound``: a bound derived from the data
        would leak through the noise scale.
        """
        try:
            arr = np.asarray(values)
            if arr.dtype.kind == "b":
                arr = arr.astype(np.int64)
            if integer is None:
                integer = arr.dtype.kind in "iu"
            ring = fixedpoint.encode_integers(arr) if integer else fixedpoint.encode(arr, self.frac_bits)
        except fixedpoint.FixedPointRangeError as exc:
            raise InvalidInput(f"secret '{name}': {exc}") from None
        except (TypeError, ValueError):
            # numpy's own message may quote the value: say only what kind of input it was.
            kind = getattr(values, "dtype", type(values).__name__)
            raise InvalidInput(f"secret '{name}': cannot encode {kind} data as numbers") from None
        peak = float(np.max(np.abs(arr))) if arr.size else 0.0
        if dp_only and bound is None:
            raise InvalidInput(f"secret '{name}': a DP-only input needs an explicit bound (bound=...): the noise is "
                               "calibrated to it, so it must not come from the data")
        if nonnegative and arr.size and float(np.min(arr)) < 0:
            raise InvalidInput(f"secret '{name}': declared nonnegative, but holds negative values")
        if bound is None:
            bound = 2.0 ** math.ceil(math.log2(peak)) if peak > 1 else 1.0
        elif not bound > 0 or peak > bound:
            raise InvalidInput(f"secret '{name}': values exceed the declared bound (or the bound is not positive)")
        spec = pb.SecretSpec(name=name, shape=ring.shape, frac_bits=0 if integer else self.frac_bits,
                             bound=float(bound), nonnegative=nonnegative, dp_only=dp_only)
        self._call("coordinator", self.coordinator.DeclareInput, pb.DeclareInputRequest(job_id=job_id, secret=spec))
        sharing = share_seeded(ring, len(self.node_ids), input_label(job_id, name))
        last = self.node_ids[-1]

        def send(node_id: int) -> None:
            stub = self.nodes[node_id]
            if node_id != last:
                msgs: Iterator[pb.InputChunk] = iter([pb.InputChunk(job_id=job_id, secret=name,
                                                                    seed=sharing.seeds[node_id - 1])])
            else:
                msgs = (pb.InputChunk(job_id=job_id, secret=name, chunk=c) if i == 0 else pb.InputChunk(chunk=c)
                        for i, c in enumerate(array_chunks(sharing.correction)))
            self._call(f"node {node_id} (input '{name}')", stub.ProvideInput, msgs)

        for f in [self._pool.submit(send, i) for i in self.node_ids]:
            f.result()

    def run(self, job_id: str, program: Program) -> RunResult:
        """Run ``program`` on the job's inputs; returns timings and the privacy receipt."""
        resp = self._call(f"coordinator (RunJob of job '{job_id}')", self.coordinator.RunJob,
                          pb.RunJobRequest(job_id=job_id, program=program_to_proto(program)),
                          timeout=self.job_timeout)
        return RunResult(job_id, resp.layers, resp.preprocessing_s, resp.online_s, resp.total_s,
                         resp.bytes_exchanged, tuple(n.peak_rss_kb for n in resp.nodes),
                         json.loads(resp.job.receipt_json or "{}"))

    def reveal(self, job_id: str, name: str) -> npt.NDArray[Any]:
        """Collect every node's share of output ``name`` and reconstruct it."""
        info = self._call("coordinator", self.coordinator.GetJob, pb.GetJobRequest(job_id=job_id))
        spec = next((o for o in info.outputs if o.name == name), None)
        if spec is None:
            raise InvalidInput(f"job '{job_id}' has no output '{name}' (state {info.state})")
        shape = tuple(spec.shape)
        size = int(np.prod(shape, dtype=np.int64)) if shape else 1

        def fetch(node_id: int) -> np.ndarray:
            asm = ArrayAssembler(size, size, f"node {node_id} share of '{name}'")
            try:
                for chunk in self.nodes[node_id].Reveal(pb.RevealRequest(job_id=job_id, secret=name),
                                                        timeout=self.job_timeout, metadata=self._md):
                    asm.add(chunk)
            except grpc.RpcError as exc:
                raise from_rpc_error(exc, f"node {node_id} (reveal '{name}')") from None
            return asm.result(shape)

        shares = [f.result() for f in [self._pool.submit(fetch, i) for i in self.node_ids]]
        value = reconstruct(shares)
        if spec.frac_bits == 0:
            return value.view(np.int64)
        return fixedpoint.decode(value, spec.frac_bits)

    def job(self, job_id: str) -> pb.JobInfo:
        return self._call("coordinator", self.coordinator.GetJob, pb.GetJobRequest(job_id=job_id))


class _Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "not reachable within the connect timeout"


def connect(coordinator: str, party: str, timeout_s: float = 30.0, job_timeout_s: float = 900.0,
            tls_dir: str | None = None, tls_name: str | None = None) -> Party:
    """Register ``party`` with the coordinator and connect to the cluster's nodes.

    ``tls_dir``: a certificate directory holding ``ca.crt`` and this party's ``client-<tls_name>.crt/.key``
    (``tls_name`` defaults to ``party``); every channel is then mutual TLS and checks that the coordinator and
    each node present their own certificates."""
    tls = TlsFiles.load(tls_dir, "client", tls_name or party) if tls_dir else None
    return Party(coordinator, party, timeout_s, job_timeout_s, tls)
