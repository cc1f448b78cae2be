"""Federated averaging: R rounds of sample clients -> local training -> sample-size-weighted mean of the updates.

The new global model is w + sum_k n_k * d_k / sum_k n_k over the clients whose update made it into the
aggregate, with d_k = clip_L2(w_k - w, C).  The weighted mean is computed by an :class:`Aggregator`:

* :class:`PlainAggregator` -- numpy in the clear: the insecure reference the benchmarks compare with;
* :class:`SecAggAggregator` -- a SecAgg round per FedAvg round on a live coordinator with the FEDAVG
  quantization (each client sends n_k * q(d_k) and n_k, masked; the coordinator only ever sees the sum).
  Clients that drop are SecAgg dropouts; a round below threshold aborts and is skipped (logged, the model
  unchanged).

The loop itself is pure (no sockets): the SecAgg aggregator is where the network is.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import numpy.typing as npt

from mpcnet.errors import InvalidInput, MpcnetError, is_whole
from mpcnet.fl.data import Dataset
from mpcnet.fl.distributed_dp import DistributedDp
from mpcnet.fl.models import LocalTrainer, Model, accuracy
from mpcnet.fl.privacy import CentralDp, gaussian_noise, small_round_delta
from mpcnet.fl.sampling import Draws

log = logging.getLogger("mpcnet.fedavg")
Vector = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Update:
    client: int
    delta: Vector  # already clipped; integer-valued when ``integer`` (distributed DP: scaled, rounded, noised)
    samples: int
    integer: bool = False  # aggregate exactly as integers (SecAgg's RING encoding), not as quantized reals


@dataclass
class RoundOutcome:
    round: int
    sampled: list[int]
    included: list[int]
    dropped: list[int]
    skipped: str = ""  # why the round left the model unchanged ("" = applied)
    mean: Vector | None = field(default=None, repr=False)
    total_samples: int = 0
    seconds: float = 0.0
    noise_contributors: int = 0  # distributed DP: clients whose noise share is in the aggregate


class Aggregator(Protocol):
    """Computes a round's weighted mean.  An aggregator may set ``min_clients`` (default 1): a run whose rounds
    sample fewer clients is refused before it starts."""
    name: str

    def aggregate(self, round_no: int, updates: Sequence[Update], drop: Sequence[int]) -> RoundOutcome: ...


def clip_l2(v: Vector, bound: float) -> Vector:
    with np.errstate(over="ignore"):
        norm = float(np.linalg.norm(v))
    if math.isinf(norm) and np.all(np.isfinite(v)):
        # the squares of a finite update past ~1e154 overflow: through v / max|v|, or bound / inf would zero it
        unit = v / np.max(np.abs(v))
        return unit * (bound / float(np.linalg.norm(unit)))
    return v if norm <= bound or norm == 0 else v * (bound / norm)


def weighted_mean(weights: Sequence[float], vectors: Sequence[Vector]) -> Vector:
    """sum_k w_k v_k / sum_k w_k, summed in the order given (callers that must agree bit for bit pass the same
    order)."""
    return np.sum([w * v for w, v in zip(weights, vectors)], axis=0) / sum(weights)


def clear_round(round_no: int, updates: Sequence[Update], drop: Sequence[int]) -> tuple[RoundOutcome, list[Update]]:
    """The outcome of an averaging in the clear before its mean (who took part, who dropped) and the updates that
    stayed; skipped when none did."""
    gone = set(drop)
    kept = [u for u in updates if u.client not in gone]
    out = RoundOutcome(round_no, [u.client for u in updates], [u.client for u in kept], sorted(gone))
    if not kept:
        out.skipped = "every sampled client dropped"
    return out, kept


class PlainAggregator:
    """The weighted mean in the clear (no privacy: the reference)."""

    name = "plain"

    def aggregate(self, round_no: int, updates: Sequence[Update], drop: Sequence[int]) -> RoundOutcome:
        out, kept = clear_round(round_no, updates, drop)
        if out.skipped:
            return out
        out.mean = weighted_mean([u.samples for u in kept], [u.delta for u in kept])
        out.total_samples = sum(u.samples for u in kept)
        return out


def secagg_threshold(n: int, graph: str, fraction: float) -> int:
    """The Shamir threshold of a FedAvg round of ``n`` clients: ``fraction`` of each client's share holders (all
    n on the complete graph; on SecAgg+'s, its neighbours and itself), at least 2."""
    from mpcnet.secagg.graph import default_degree
    holders = n if graph == "full" or n < 4 else default_degree(n) + 1
    return max(2, min(holders, math.ceil(fraction * holders)))


class SecAggAggregator:
    """One SecAgg round (FEDAVG quantization) per FedAvg round on the coordinator at ``address``.

    The clients run in this process (each its own channel, keys and presence stream: a simulation of many
    devices); the coordinator sees masked vectors and the sum only.  ``drop``: clients that leave before
    answering masked_input_collection (their update is not in the sum).  ``max_total_samples`` is the public
    bound W >= sum n_k the quantization needs (the training set size)."""

    name = "secagg"
    min_clients = 2  # one client's "sum" is its own update

    def __init__(self, address: str, operator_metadata: tuple[tuple[str, str], ...], clip: float,
                 max_total_samples: int, threshold_fraction: float = 2 / 3, bits: int = 32,
                 tls: Any = None, admin_tls: Any = None, stage_deadline_s: float = 30.0,
                 graph: str = "full") -> None:
        self.address, self.md, self.clip, self.max_total = address, operator_metadata, clip, max_total_samples
        self.threshold_fraction, self.bits, self.tls, self.admin_tls = threshold_fraction, bits, tls, admin_tls
        self.stage_deadline_s = stage_deadline_s
        if graph not in ("full", "sparse"):
            raise InvalidInput("graph must be full (SecAgg) or sparse (SecAgg+)")
        if not 0 < stage_deadline_s <= 3600:  # NaN fails too
            raise InvalidInput(f"stage_deadline_s {stage_deadline_s!r}: seconds in (0, 3600]")
        if not (is_whole(max_total_samples) and max_total_samples >= 1):
            raise InvalidInput(f"max_total_samples {max_total_samples!r}: a whole number >= 1 (the training set's "
                               "size: the quantization's public bound on the samples summed)")
        if not 0 < threshold_fraction <= 1:
            raise InvalidInput(f"threshold_fraction {threshold_fraction!r}: the share of a round's clients that must "
                               "survive, in (0, 1]")
        self.graph = graph
        self.tag = secrets.token_hex(3)
        self._rounds_run = 0  # round ids stay unique when one aggregator serves several runs
        self._withholds_membership = False  # the coordinator was seen to keep rounds' members off its bus

    @property
    def max_vector_length(self) -> int:
        """The longest vector one SecAgg round takes (one masked vector fits one gRPC message)."""
        from mpcnet.secagg.params import max_vector_length
        return max_vector_length(self.bits)

    def quantization_slack(self, dim: int) -> float:
        """How far the FEDAVG quantization can move one real-valued update in L2 norm: its stochastic rounding
        moves each of the ``dim`` coordinates by less than one step.  Central DP clips this much below C, so that
        the update as summed still has norm at most C."""
        from mpcnet.secagg.quantization import WeightedEncoder
        return math.sqrt(dim) * WeightedEncoder(self.clip, self.max_total, self.bits).step

    def check_reachable(self, timeout_s: float = 10.0) -> None:
        """Raise the MpcnetError a round would meet if the coordinator is unreachable or refuses the operator's
        credentials, before anything is spent (epsilon) on a run that cannot start.  The probe is a CreateRound
        whose vector is longer than any round takes: the coordinator checks the credentials first, then whether it
        can keep the sum from the clients (sum_to_operator_only needs its cluster secret), then refuses the
        parameters (INVALID_ARGUMENT, the healthy answer) and creates nothing."""
        import grpc

        from mpcnet.transport.rpc import from_rpc_error, sync_channel
        from mpcnet.transport.tls import Identity
        from mpcnet.v1 import secagg_pb2 as spb
        from mpcnet.v1 import secagg_pb2_grpc as spbg
        # refused either way, so no round is made: INVALID_ARGUMENT (its length) is the healthy answer, and a
        # coordinator without a cluster secret answers FAILED_PRECONDITION first (it cannot keep a FedAvg round's
        # sum from the clients)
        probe = spb.SecAggRoundParams(round_id=f"fedavg-probe-{self.tag}", client_ids=[1, 2], threshold=2,
                                      vector_length=2**32 - 1, sum_to_operator_only=True)
        with sync_channel(self.address, self.admin_tls, Identity("coordinator", "main")) as channel:
            try:
                spbg.SecAggStub(channel).CreateRound(spb.SecAggCreateRoundRequest(params=probe), timeout=timeout_s,
                                                     metadata=self.md)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise from_rpc_error(exc, f"SecAgg coordinator at {self.address}") from None
            else:
                raise InvalidInput(f"SecAgg coordinator at {self.address} accepted a round of 2^32 - 1 elements: it "
                                   "is not a coordinator this client can drive")
        if self.tls is None:
            return
        # the clients' own certificate too (every client call's handshake): the result of a round that does not
        # exist, NOT_FOUND being the healthy answer
        with sync_channel(self.address, self.tls, Identity("coordinator", "main")) as channel:
            try:
                spbg.SecAggStub(channel).GetResult(spb.SecAggGetResultRequest(round_id=probe.round_id),
                                                   timeout=timeout_s)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise from_rpc_error(exc, f"SecAgg coordinator at {self.address} (with the clients' "
                                              "certificate)") from None

    def aggregate(self, round_no: int, updates: Sequence[Update], drop: Sequence[int]) -> RoundOutcome:
        import grpc

        from mpcnet.secagg.quantization import decode_ints, encode_ints
        from mpcnet.secagg.stage import Stage
        from mpcnet.secagg_client import dequantize_result, run_client
        from mpcnet.secagg_wire import aggregate_of
        from mpcnet.transport.rpc import from_rpc_error, sync_channel
        from mpcnet.transport.tls import Identity
        from mpcnet.v1 import secagg_pb2 as spb
        from mpcnet.v1 import secagg_pb2_grpc as spbg

        ids = [u.client for u in updates]
        by_id = {u.client: u for u in updates}
        n = len(ids)
        t = secagg_threshold(n, self.graph, self.threshold_fraction)
        out = RoundOutcome(round_no, ids, [], [])
        if n < 2:
            out.skipped = f"{n} client(s) sampled: SecAgg needs at least 2"
            return out
        dim = len(updates[0].delta)
        integer = updates[0].integer
        held = sum(u.samples for u in updates)
        if not integer and held > self.max_total:
            raise InvalidInput(f"round {round_no}: the sampled clients hold {held} "
                               f"samples, more than the aggregator's max_total_samples {self.max_total} (the "
                               "quantization's range is set by it: give the training set's size)")
        if integer:  # distributed DP: exact integer sums mod 2^bits (two's complement), no count element
            quant = spb.SecAggQuantization(encoding=spb.SECAGG_ENCODING_RING)
        else:
            quant = spb.SecAggQuantization(encoding=spb.SECAGG_ENCODING_FEDAVG, clip=self.clip, bound=self.max_total)
        self._rounds_run += 1
        params = spb.SecAggRoundParams(
            round_id=f"fedavg-{self.tag}-{self._rounds_run}-r{round_no}", client_ids=ids, threshold=t,
            vector_length=dim if integer else dim + 1,
            bits=self.bits, stage_deadline_s=self.stage_deadline_s,
            graph=spb.SECAGG_GRAPH_SECAGGPLUS if self.graph == "sparse" else spb.SECAGG_GRAPH_COMPLETE,
            join_deadline_s=self.stage_deadline_s, quantization=quant,
            # the FedAvg server hands out the next model; the clients never need the round's sum, and under
            # central DP it must stay with the trusted server (it is the un-noised aggregate)
            sum_to_operator_only=True,
            # the round's members are the FedAvg server's to report (its receipt); under central DP with sampling
            # they are the secret Poisson sample, which the event bus would otherwise publish
            withhold_membership=True)
        with sync_channel(self.address, self.admin_tls, Identity("coordinator", "main")) as channel:
            stub = spbg.SecAggStub(channel)

            def create(request: Any, what: str) -> Any:
                try:
                    return stub.CreateRound(spb.SecAggCreateRoundRequest(params=request), timeout=30,
                                            metadata=self.md)
                except grpc.RpcError as exc:
                    raise from_rpc_error(exc, f"SecAgg coordinator at {self.address} ({what})") from None

            if not self._withholds_membership:
                # A coordinator older than the flag ignores it, and creating the round would already publish its
                # members (the secret sample): asked first with a round of stand-in ids nobody joins
                probe = spb.SecAggRoundParams(round_id=f"fedavg-{self.tag}-probe", client_ids=[1, 2], threshold=2,
                                              vector_length=1, stage_deadline_s=1.0, join_deadline_s=1.0,
                                              sum_to_operator_only=True, withhold_membership=True)
                if not create(probe, "CreateRound of a probe").params.withhold_membership:
                    raise MpcnetError(f"SecAgg coordinator at {self.address} would publish FedAvg rounds' members "
                                      "on its event bus (it does not know withhold_membership: upgrade it); no round "
                                      "of this run was created")
                self._withholds_membership = True
            reply = create(params, "CreateRound")
            if not reply.params.sum_to_operator_only:  # a coordinator older than the flag ignores it
                raise MpcnetError(f"SecAgg coordinator at {self.address} would give round {reply.round_id}'s sum to "
                                  "its clients (it does not know sum_to_operator_only: upgrade it); no client joined")

            def inputs(cid: int, _p: Any, enc: Any) -> Any:
                u = by_id[cid]
                if integer:
                    return encode_ints(u.delta.astype(np.int64), self.bits)
                return enc.weighted().encode(u.delta, u.samples)

            gone = set(drop)

            async def clients() -> list[Any]:
                return list(await asyncio.gather(*(
                    run_client(self.address, reply.round_id, cid, inputs, token=reply.client_tokens[cid],
                               tls=self.tls, stop_at=Stage.MASKED_INPUT_COLLECTION if cid in gone else None)
                    for cid in ids)))

            outcomes = asyncio.run(asyncio.wait_for(clients(), 10 * self.stage_deadline_s))
            failed = [o for o in outcomes if o.state == "error"]
            if failed and len(failed) == len(outcomes):  # not a dropout: every client here failed the same way
                raise MpcnetError(f"round {round_no}: every client failed before the SecAgg round could finish; "
                                  f"client {failed[0].client_id} at {failed[0].stage or 'join'}: {failed[0].reason}")
            try:
                res = stub.GetResult(spb.SecAggGetResultRequest(round_id=reply.round_id), timeout=30,
                                     metadata=self.md)
            except grpc.RpcError as exc:
                raise from_rpc_error(exc, f"SecAgg coordinator at {self.address} (GetResult)") from None
        if res.state != "done":
            out.dropped = sorted(gone)
            out.skipped = f"SecAgg round {res.state}: {res.aborted.reason}" if res.state == "aborted" else res.state
            if failed:  # what the clients themselves ran into, which the coordinator never heard
                out.skipped += (f" ({len(failed)} client(s) failed; client {failed[0].client_id}: "
                                f"{failed[0].reason})")
            return out
        out.included = sorted(res.done.included)
        out.dropped = sorted(d.client_id for d in res.done.dropped)
        if integer:
            total_ints = decode_ints(aggregate_of(res.done), self.bits).astype(np.float64)
            out.mean, out.total_samples = total_ints / len(out.included), len(out.included)
        else:
            out.mean, out.total_samples = dequantize_result(reply.params, res.done)
        return out


@dataclass(frozen=True)
class FedAvgConfig:
    rounds: int = 10
    clients_per_round: int = 0  # 0 = every client every round
    clip: float = 5.0  # L2 bound C on each client's update (also the quantization's element clip)
    dropout: float = 0.0  # fraction of each round's sample that leaves mid-round (simulated)
    seed: str = "mpcnet-fl"
    # central DP (mpcnet/fl/privacy.py): Poisson sampling at dp.sampling_rate instead of clients_per_round (drawn
    # from OS entropy when there is noise: a sample anyone can recompute from the seed gives no amplification),
    # N(0, (z C)^2) on the sum of weighted updates, the public constant q * N as denominator
    dp: CentralDp | None = None
    # distributed DP (mpcnet/fl/distributed_dp.py): each client scales, rounds and adds Skellam noise before
    # masking; the sum is divided by gamma and the fixed number sampled.  Exclusive with ``dp``.
    ddp: DistributedDp | None = None
    # Under DP each client's update is weighted min(n_k / weight_cap, 1).  The cap must be public and fixed
    # before looking at the data: one derived from the clients' sizes (their mean, say) would change every
    # client's weight when one client joins, and one client would then move the sum by far more than C.  0 (the
    # default) weights every client 1.  The denominator is a public constant either way (q N, or the number
    # sampled).  Without DP the average is weighted by sample counts and the cap is not used.
    weight_cap: int = 0

    def __post_init__(self) -> None:
        for name in ("rounds", "clients_per_round", "weight_cap"):
            if not is_whole(getattr(self, name)):  # 2.5, NaN, inf, True: a TypeError deep in the run, or a zero weight
                raise InvalidInput(f"{name} must be a whole number, got {getattr(self, name)!r}")
        if self.rounds < 1:
            raise InvalidInput(f"rounds must be >= 1, got {self.rounds}")
        if self.clients_per_round < 0 or self.weight_cap < 0:
            raise InvalidInput("clients per round and the weight cap must be >= 0 (0: every client, weight 1)")
        if not isinstance(self.seed, str):
            raise InvalidInput(f"seed must be a string, got {type(self.seed).__name__}")
        if self.dp is not None and not isinstance(self.dp, CentralDp):
            raise InvalidInput("dp must be a CentralDp (mpcnet.fl.privacy.calibrate) or None")
        if self.ddp is not None and not isinstance(self.ddp, DistributedDp):
            raise InvalidInput("ddp must be a DistributedDp (mpcnet.fl.distributed_dp.calibrate_distributed) or None")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise InvalidInput(f"the clip (L2 bound on each update) must be finite and > 0, got {self.clip:g}")
        if not 0 <= self.dropout < 1:
            raise InvalidInput(f"dropout is the fraction of each round's clients that leave mid-round: in [0, 1), "
                               f"got {self.dropout:g}")


@dataclass
class History:
    aggregator: str
    accuracy: list[float] = field(default_factory=list)  # test accuracy after each round (index 0: initial)
    rounds: list[RoundOutcome] = field(default_factory=list)
    params: Vector | None = field(default=None, repr=False)


def check_run(config: FedAvgConfig, aggregator: Aggregator, n_clients: int, dim: int | None = None,
              part_sizes: Sequence[int] | None = None) -> float:
    """Every check :func:`run_fedavg` makes before its first round, on its own: a caller that spends something
    before the run (epsilon) calls it first, so that a run refused here has spent nothing.  ``dim``: the model's
    number of parameters, if known (for central DP's clip under quantization); ``part_sizes``: each client's
    number of samples, if known (a client without any is refused).  Returns what rounds too small to aggregate
    add to central DP's delta (:func:`skipped_rounds_delta`; 0 without central DP)."""
    if part_sizes is not None:
        empty = [k for k, size in enumerate(part_sizes, start=1) if size == 0]
        if empty:  # SecAgg's FedAvg encoding needs a weight n_k >= 1: such a client would be a silent dropout
            raise InvalidInput(f"client(s) {empty[:10]} hold no training samples: give every client at least one "
                               "(split_dirichlet's min_size)")
    per_round = config.clients_per_round or n_clients
    if not 1 <= per_round <= n_clients:
        raise InvalidInput(f"clients per round must be in [1, {n_clients}] (the run has {n_clients} clients), got "
                           f"{per_round}")
    fewest = getattr(aggregator, "min_clients", 1)
    if config.dp is None and per_round < fewest:  # (under Poisson sampling a small round is skipped and logged)
        raise InvalidInput(f"{aggregator.name} needs at least {fewest} clients in a round; this run samples "
                           f"{per_round} a round (plain averaging takes one)")
    if config.dp is not None and n_clients < fewest:  # Poisson sampling: every round would be skipped
        raise InvalidInput(f"{aggregator.name} needs at least {fewest} clients in a round; this run has "
                           f"{n_clients} in all, so every round would be skipped (plain averaging takes one)")
    dp, ddp = config.dp, config.ddp
    if dp is not None and ddp is not None:
        raise InvalidInput("choose central DP or distributed DP, not both")
    if dp is not None and config.clients_per_round:
        raise InvalidInput(f"clients per round {config.clients_per_round} with central DP: it samples each client "
                           "with probability sampling_rate (Poisson sampling, what its accounting assumes); leave "
                           "clients_per_round at 0, or use distributed DP for a fixed number per round")
    for which, calibration in (("DP", dp), ("distributed-DP", ddp)):
        if calibration is not None and calibration.rounds < config.rounds:
            raise InvalidInput(f"the {which} calibration covers {calibration.rounds} rounds, the run has "
                               f"{config.rounds}: it would spend more than epsilon {calibration.epsilon:g}; "
                               f"calibrate for {config.rounds} rounds")
    agg_clip = getattr(aggregator, "clip", None)
    if ddp is None and agg_clip is not None and agg_clip < config.clip:
        raise InvalidInput(f"the aggregator quantizes updates of L2 norm up to {agg_clip:g}, the run clips them at "
                           f"{config.clip:g}: larger updates would saturate; give both the same clip")
    if ddp is not None and ddp.clip != config.clip:
        raise InvalidInput(f"the distributed-DP calibration is for clip {ddp.clip}, the run clips at {config.clip}")
    agg_bits = getattr(aggregator, "bits", None)
    if ddp is not None and agg_bits is not None and agg_bits < ddp.bits:
        # the calibration's scale keeps the noisy sum inside Z_(2^ddp.bits): a narrower ring would wrap it
        raise InvalidInput(f"the distributed-DP calibration needs {ddp.bits}-bit sums, the aggregator uses "
                           f"{agg_bits}-bit SecAgg")
    if dp is not None and dp.clip != config.clip:
        raise InvalidInput(f"the DP calibration is for clip {dp.clip}, the run clips at {config.clip}")
    if ddp is not None:
        _check_noise_contributors(config, aggregator, per_round, ddp.min_contributors, ddp.epsilon)
    if ddp is not None and ddp.max_clients and per_round > ddp.max_clients:  # the sum could wrap around the ring
        raise InvalidInput(f"the distributed-DP calibration leaves ring room for sums of {ddp.max_clients} clients, "
                           f"the run sums up to {per_round} a round: calibrate with max_clients={per_round}")
    if ddp is not None and dim is not None and ddp.dim != dim:
        raise InvalidInput(f"the distributed-DP calibration is for {ddp.dim} parameters, the model has {dim}: "
                           "calibrate for this model")
    limit = getattr(aggregator, "max_vector_length", None)
    if dim is not None and isinstance(limit, int) and dim + (ddp is None) > limit:
        raise InvalidInput(f"a model of {dim} parameters is too large for one {aggregator.name} round: at most "
                           f"{limit - (ddp is None)} at {getattr(aggregator, 'bits', 32)}-bit masks (one masked "
                           "vector must fit one gRPC message); use a smaller model, or plain averaging")
    if dp is None:  # a fixed number leaves every round: a run whose every round is skipped is known now
        n_drop = planned_drops(config.dropout, per_round)
        why = round_must_abort(aggregator, per_round, n_drop)
        if why:
            raise InvalidInput(f"with {per_round} clients a round and dropout {config.dropout:g}, {n_drop} leave "
                               f"every round and {per_round - n_drop} remain: {aggregator.name} would skip every "
                               f"round ({why}); lower the dropout or sample more clients")
    if dim is not None:
        _check_dp_clip(config, aggregator, dim)
    extra = skipped_rounds_delta(config, aggregator, n_clients)
    if dp is not None and extra > dp.delta / 10:
        raise InvalidInput(
            f"with {n_clients} clients, sampling rate {dp.sampling_rate:g} and dropout {config.dropout:g}, "
            f"{aggregator.name} would skip a round too small to aggregate often enough to add {extra:.2g} to delta "
            f"{dp.delta:g} (more than a tenth of it; skipping depends on who was sampled): raise the sampling "
            "rate or the number of clients, or lower the dropout")
    return extra


def _check_noise_contributors(config: FedAvgConfig, aggregator: Aggregator, per_round: int, t: int,
                              epsilon: float) -> None:
    """Distributed DP is calibrated for sums of at least ``t`` clients' noise shares.  The planned dropout is a
    fixed number per round, so a run whose every round would sum fewer, or abort, is known before it starts: it
    is refused here, before the epsilon is charged, rather than found out round by round."""
    n_drop = planned_drops(config.dropout, per_round)
    kept = per_round - n_drop
    fraction = getattr(aggregator, "threshold_fraction", None)
    if getattr(aggregator, "graph", None) == "full" and fraction is not None and per_round >= 2:
        threshold = secagg_threshold(per_round, "full", float(fraction))
        if threshold < t:
            raise InvalidInput(f"{aggregator.name}'s threshold {threshold} of {per_round} completes rounds that sum "
                               f"fewer than the t = {t} clients' noise the distributed-DP calibration assumes: "
                               "calibrate for that threshold, or raise the aggregator's threshold fraction")
        if round_too_small(aggregator, per_round, n_drop):
            raise InvalidInput(f"with {per_round} clients a round and dropout {config.dropout:g}, {n_drop} leave "
                               f"every round and {kept} survive, fewer than {aggregator.name}'s threshold "
                               f"{threshold}: every round would abort while the epsilon is charged; lower the "
                               "dropout")
    if kept < t:
        raise InvalidInput(f"with {per_round} clients a round and dropout {config.dropout:g}, every round would sum "
                           f"only {kept} clients' noise, fewer than the t = {t} the distributed-DP noise is "
                           f"calibrated for: the run would spend more than epsilon {epsilon:g}; lower the dropout")


def dp_clip(config: FedAvgConfig, aggregator: Aggregator, dim: int) -> float:
    """The L2 bound each update is clipped to: C, or under central DP C less what the aggregator's quantization
    can add (its ``quantization_slack``), so that the sum the noise covers moves by at most C per client."""
    slack = getattr(aggregator, "quantization_slack", None)
    if config.dp is None or slack is None:
        return config.clip
    return config.clip - float(slack(dim))


def _check_dp_clip(config: FedAvgConfig, aggregator: Aggregator, dim: int) -> float:
    clip = dp_clip(config, aggregator, dim)
    if clip <= 0:
        raise InvalidInput(f"the aggregator's quantization can move a {dim}-parameter update by "
                           f"{config.clip - clip:.3g} in L2 norm, as much as the clip {config.clip:g}: central DP "
                           "could not bound it; give SecAgg a smaller max_total_samples or a larger clip")
    return clip


def planned_drops(dropout: float, sampled: int) -> int:
    """How many of a round's ``sampled`` clients leave without central DP: ``dropout * sampled``, halves rounded up
    (Python's round() would send 0.5 to 0 and 2.5 to 2; the product is first rounded to 9 decimals, so that 0.29 *
    50 = 14.499999999999998 counts as the half it is)."""
    return math.floor(round(dropout * sampled, 9) + 0.5)


def round_must_abort(aggregator: Aggregator, sampled: int, dropped: int) -> str:
    """Why a round of ``sampled`` clients, ``dropped`` of whom leave, is skipped whoever they are ("" when it may
    complete): exactly :func:`round_too_small` for plain averaging and the complete graph.  On SecAgg+ which
    clients drop decides; certain are fewer survivors in all than one neighbourhood's threshold t, and survivors
    too few to give every one of the ``sampled`` neighbourhoods t: in a regular graph of degree k each survivor
    is in k + 1 closed neighbourhoods, so kept * (k + 1) < t * sampled leaves some neighbourhood short."""
    graph, fraction = getattr(aggregator, "graph", None), getattr(aggregator, "threshold_fraction", None)
    if graph is None or fraction is None or graph == "full" or sampled < 4:
        return "too few survivors to aggregate" if round_too_small(aggregator, sampled, dropped) else ""
    from mpcnet.secagg.graph import default_degree
    t, kept = secagg_threshold(sampled, graph, fraction), sampled - dropped
    if kept < t:
        return f"fewer than the threshold {t} survive"
    degree = default_degree(sampled)
    if kept * (degree + 1) < t * sampled:
        return (f"some client's neighbourhood (degree {degree}) would keep fewer than the threshold {t}, whichever "
                "clients drop")
    return ""


def round_too_small(aggregator: Aggregator, sampled: int, dropped: int) -> bool:
    """Whether ``aggregator`` skips a round of ``sampled`` clients of whom ``dropped`` leave (SecAgg: too few to
    run, or fewer survivors than its threshold; conservative on SecAgg+, where the drops might all fall in one
    neighbourhood).  An empty sample is not skipped under DP: it releases the noise alone."""
    if sampled == 0:
        return False
    if sampled < getattr(aggregator, "min_clients", 1):
        return True
    graph, fraction = getattr(aggregator, "graph", None), getattr(aggregator, "threshold_fraction", None)
    if graph is None or fraction is None:  # averaging in the clear: skipped only when everyone left
        return dropped >= sampled
    from mpcnet.secagg.graph import default_degree
    holders = sampled if graph == "full" or sampled < 4 else default_degree(sampled) + 1
    return dropped > holders - secagg_threshold(sampled, graph, fraction)


def skipped_rounds_delta(config: FedAvgConfig, aggregator: Aggregator, n_clients: int) -> float:
    """Central DP: what rounds too small to aggregate add to the run's delta (privacy.small_round_delta); 0
    without central DP."""
    if config.dp is None:
        return 0.0
    return small_round_delta(config.dp, n_clients, lambda s, d: round_too_small(aggregator, s, d), config.dropout)


def run_fedavg(model: Model, trainer: LocalTrainer, data: Dataset, parts: Sequence[npt.NDArray[np.int64]],
               config: FedAvgConfig, aggregator: Aggregator,
               on_round: Callable[[RoundOutcome, float], None] | None = None) -> History:
    """R rounds of FedAvg; clients are numbered 1..len(parts) (client k holds ``data.x_train[parts[k-1]]``)."""
    parts = _checked_parts(parts, data)
    check_run(config, aggregator, len(parts), getattr(model, "n_params", None), [len(p) for p in parts])
    shape = (getattr(model, "n_features", None), getattr(model, "n_classes", None))
    if None not in shape and shape != (data.n_features, data.n_classes):
        raise InvalidInput(f"the model takes {shape[0]} features and {shape[1]} classes, the data has "
                           f"{data.n_features} features and {data.n_classes} classes")
    dp, ddp = config.dp, config.ddp
    # Central DP's amplification by sampling holds only against someone who cannot tell who was sampled: its
    # sample (and which sampled clients drop) comes from OS entropy, not from the seed, which is public (it is in
    # the run's JSON).  Everything else -- and every run without central DP noise -- stays reproducible from the
    # seed.
    # With no noise (epsilon = inf) there is no amplification to protect: seeded, so that a run is reproducible and
    # its secure and plain runs see the same clients (their gap is then SecAgg's quantization alone).
    draws = Draws.secure() if dp is not None and dp.noise_multiplier > 0 else Draws.seeded(config.seed, "fedavg")
    params = np.asarray(model.init(Draws.seeded(config.seed, "init")), dtype=np.float64)
    n_params = getattr(model, "n_params", None)
    if params.ndim != 1 or not np.all(np.isfinite(params)) or (n_params is not None and len(params) != n_params):
        raise InvalidInput(f"the model's init() gave parameters of shape {params.shape}: a flat, finite vector"
                           + (f" of its n_params {n_params}" if n_params is not None else ""))
    clients = list(range(1, len(parts) + 1))
    per_round = config.clients_per_round or len(clients)
    hist = History(aggregator.name, [accuracy(model, params, data.x_test, data.y_test)])
    weight = dp_weights(parts, config.weight_cap)
    clip = _check_dp_clip(config, aggregator, len(params))
    for r in range(1, config.rounds + 1):
        t0 = time.monotonic()
        if dp is None:
            sampled = sorted(np.array(clients)[draws.permutation(len(clients))[:per_round]].tolist())
        else:  # Poisson sampling: what the accountant's amplification assumes
            sampled = [c for c, u in zip(clients, draws.uniform(len(clients))) if u < dp.sampling_rate]
        updates = []
        for cid in sampled:
            idx = parts[cid - 1]
            # a copy: a trainer that updates its input in place (torch.from_numpy + optimizer.step) would otherwise
            # train the global model itself, in the clear, past the aggregator, the clip and the noise
            try:
                trained = trainer.train(params.copy(), data.x_train[idx], data.y_train[idx],
                                        Draws.seeded(config.seed, f"client/{cid}/round/{r}"))
            except MpcnetError:
                raise
            except Exception as exc:  # the user's training loop: say whose and when
                raise InvalidInput(f"client {cid}, round {r}: the trainer raised {type(exc).__name__}: {exc}") \
                    from exc
            local = _checked(trained, params, cid, r)
            d = clip_l2(local - params, clip)
            # under DP each client adds w_k * d_k (norm <= C) with weight 1: the aggregate is the plain sum
            if ddp is not None:  # ... scaled, rounded and noised on the client, before it is masked
                updates.append(Update(cid, ddp.encode(weight[cid] * d).astype(np.float64), 1, integer=True))
            elif dp is not None:
                updates.append(Update(cid, weight[cid] * d, 1))
            else:
                updates.append(Update(cid, d, len(idx)))
        if dp is None:  # a fixed share of the sample drops: reproducible, and public like the sample size
            n_drop = planned_drops(config.dropout, len(sampled))
            drop = sorted(np.array(sampled)[draws.permutation(len(sampled))[:n_drop]].tolist()) if n_drop else []
        else:  # each sampled client drops on its own (what small_round_delta assumes), unseen like the sample
            drop = [c for c, u in zip(sampled, draws.uniform(len(sampled))) if u < config.dropout]
        if updates:
            out = aggregator.aggregate(r, updates, drop)
        elif dp is not None:  # the accounted mechanism releases the noise alone: an empty round is not skipped
            out = RoundOutcome(r, [], [], [])
            out.mean, out.total_samples = np.zeros_like(params), 0
        else:
            out = RoundOutcome(r, [], [], [], skipped="no client sampled")
        _check_outcome(out, params, aggregator, r, sampled, dp is not None or ddp is not None)
        if dp is not None and out.mean is not None and not out.skipped:
            total = out.mean * out.total_samples  # the sum of w_k d_k over the included clients
            # a public constant (zero-out neighbours have the same N), never the sampled clients' weights
            out.mean = (total + gaussian_noise(len(total), dp.noise_std)) / (dp.sampling_rate * len(clients))
        if ddp is not None and out.mean is not None and not out.skipped:
            total = np.round(out.mean * out.total_samples)  # the noisy integer sum (exact for SecAgg)
            out.noise_contributors = len(out.included)
            out.mean = ddp.decode(total) / max(1, len(sampled))  # the fixed, public number sampled per round
        out.seconds = time.monotonic() - t0
        if out.mean is not None and not out.skipped:
            params = params + out.mean
        else:
            log.warning("FedAvg round %d skipped: %s", r, out.skipped)
        hist.rounds.append(out)
        hist.accuracy.append(accuracy(model, params, data.x_test, data.y_test))
        if on_round is not None:
            on_round(out, hist.accuracy[-1])
    hist.params = params
    return hist


def dp_weights(parts: Sequence[npt.NDArray[np.int64]], weight_cap: int = 0) -> dict[int, float]:
    """Each client's weight under DP: min(n_k / weight_cap, 1) for a public cap, 1 without one (weight_cap 0).
    Never a function of the other clients' data (see FedAvgConfig.weight_cap)."""
    return {cid: min(len(p) / weight_cap, 1.0) if weight_cap else 1.0 for cid, p in enumerate(parts, start=1)}


def _checked_parts(parts: Sequence[Any], data: Dataset) -> list[npt.NDArray[np.int64]]:
    """Each client's training rows as distinct indices into ``data``'s training set, no row held by two clients:
    a row held by k clients is protected only at about k times the epsilon the receipt names (the unit of
    privacy is one client), and a boolean mask or a negative index would be read as something else."""
    _check_dataset(data)
    n = len(data.y_train)
    out = []
    for k, part in enumerate(parts, start=1):
        try:
            idx = np.asarray(part)
        except Exception:  # noqa: BLE001 - whatever it is, it is no index array
            idx = np.asarray(None)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise InvalidInput(f"client {k}: its part must be a 1-D array of integer row indices (a boolean mask: "
                               f"np.flatnonzero(mask)), got {idx.dtype} of shape {idx.shape}")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise InvalidInput(f"client {k}: row indices must be in [0, {n}) (the training set's rows)")
        out.append(idx)
    if out and any(len(p) for p in out):
        held = np.bincount(np.concatenate(out), minlength=n)
        if held.max() > 1:
            row = int(np.argmax(held))
            raise InvalidInput(f"training row {row} is held {int(held[row])} times (by one client twice, or by "
                               "several): each row belongs to one client once; the privacy unit is one client")
    return out


def _check_dataset(data: Dataset) -> None:
    """A hand-built Dataset: what the models and accuracy rely on, refused in words rather than numpy's."""
    for name in ("x_train", "x_test"):
        x = getattr(data, name)
        if not isinstance(x, np.ndarray) or x.ndim != 2 or x.dtype.kind not in "iuf" or not np.all(np.isfinite(x)):
            raise InvalidInput(f"the dataset's {name} must be a finite real 2-D numpy array (rows x features)")
    for name, x_name in (("y_train", "x_train"), ("y_test", "x_test")):
        y = getattr(data, name)
        if not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype.kind not in "iu" or (y.size and y.min() < 0):
            raise InvalidInput(f"the dataset's {name} must be a 1-D array of class labels 0, 1, ...")
        if len(y) != len(getattr(data, x_name)):
            raise InvalidInput(f"the dataset has {len(getattr(data, x_name))} {x_name} rows and {len(y)} labels")
    if data.x_train.shape[1] != data.x_test.shape[1] or not len(data.y_test):
        raise InvalidInput("the dataset's test set must be non-empty, with as many features as its training set")


def _check_outcome(out: Any, params: Vector, aggregator: Aggregator, r: int, sampled: Sequence[int],
                   dp: bool) -> None:
    """What an aggregator -- possibly the user's own -- returned: a mean of the model's shape, finite, over clients
    of the sample (under DP the noise is calibrated to that: each included client adds at most one weighted,
    clipped update)."""
    who = f"aggregator {getattr(aggregator, 'name', type(aggregator).__name__)}, round {r}"
    if not isinstance(out, RoundOutcome):
        raise InvalidInput(f"{who}: returned a {type(out).__name__}, not a RoundOutcome")
    if out.mean is None or out.skipped:
        return
    mean = np.asarray(out.mean)
    if mean.shape != params.shape or mean.dtype.kind not in "iuf" or not np.all(np.isfinite(mean)):
        raise InvalidInput(f"{who}: the mean must be a finite vector of the model's {params.shape[0]} parameters, "
                           f"got {mean.dtype} of shape {mean.shape}")
    if not set(out.included) <= set(sampled):
        raise InvalidInput(f"{who}: included clients that were not sampled")
    if dp and out.total_samples != len(out.included):  # the sum is mean * total_samples: one update each
        raise InvalidInput(f"{who}: under DP each included client adds one update of weight 1; total_samples "
                           f"{out.total_samples} for {len(out.included)} included")


def _checked(local: Any, params: Vector, cid: int, r: int) -> Vector:
    """A trainer's result as the float64 parameter vector it must be (a list or float32 is fine): a wrong length
    would otherwise broadcast into a garbage model, and NaN would spread through the average."""
    kind = np.asarray(local).dtype.kind
    if kind not in "iuf":  # complex (its imaginary part would be dropped), bool, strings, objects
        raise InvalidInput(f"client {cid}, round {r}: the trainer returned {np.asarray(local).dtype} values; the "
                           "parameters are real numbers")
    out = np.asarray(local, dtype=np.float64)
    if out.shape != params.shape:
        raise InvalidInput(f"client {cid}, round {r}: the trainer returned parameters of shape {out.shape}; the "
                           f"model has {params.shape[0]} (a flat vector)")
    if not np.all(np.isfinite(out)):
        raise InvalidInput(f"client {cid}, round {r}: the trainer returned non-finite parameters (NaN or infinity): "
                           "did its training diverge? (a smaller learning rate)")
    return out


def centralised(model: Model, trainer: LocalTrainer, data: Dataset, seed: str = "mpcnet-fl") -> float:
    """The reference: the same model and trainer on the pooled training data."""
    params = trainer.train(model.init(Draws.seeded(seed, "init")), data.x_train, data.y_train,
                           Draws.seeded(seed, "central"))
    return accuracy(model, params, data.x_test, data.y_test)


__all__ = ["Aggregator", "FedAvgConfig", "History", "PlainAggregator", "RoundOutcome", "SecAggAggregator", "Update",
           "centralised", "check_run", "clear_round", "clip_l2", "dp_clip", "dp_weights", "planned_drops",
           "round_must_abort", "round_too_small", "run_fedavg", "secagg_threshold", "skipped_rounds_delta",
           "weighted_mean"]
