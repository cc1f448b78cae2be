"""Conversions between the SecAgg protobuf messages and the pure core's types.

The protobuf carries the round parameters as fields and every protocol
message as its canonical bytes (:mod:`mpcnet.secagg.encoding`); this module
is the one place that maps the two.  Grpc-free (only generated protobuf
classes).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import numpy.typing as npt

from mpcnet.core.ring import RingArray
from mpcnet.secagg import advertise_keys, consistency_check, masked_input, share_keys, unmasking
from mpcnet.secagg.errors import ParamsError
from mpcnet.secagg.graph import GraphKind
from mpcnet.secagg.params import SecAggParams
from mpcnet.secagg.quantization import Quantizer, WeightedEncoder
from mpcnet.secagg.stage import Stage
from mpcnet.v1 import secagg_pb2 as spb

DEFAULT_BITS = 32
MAX_DEADLINE_S = 3600.0  # the longest stage or join deadline a coordinator accepts

REQUEST_TYPES: dict[Stage, type] = {
    Stage.ADVERTISE_KEYS: advertise_keys.AdvertiseKeysRequest,
    Stage.SHARE_KEYS: share_keys.ShareKeysRequest,
    Stage.MASKED_INPUT_COLLECTION: masked_input.MaskedInputRequest,
    Stage.CONSISTENCY_CHECK: consistency_check.ConsistencyCheckRequest,
    Stage.UNMASKING: unmasking.UnmaskingRequest,
}
RESPONSE_TYPES: dict[Stage, type] = {
    Stage.ADVERTISE_KEYS: advertise_keys.AdvertiseKeysResponse,
    Stage.SHARE_KEYS: share_keys.ShareKeysResponse,
    Stage.MASKED_INPUT_COLLECTION: masked_input.MaskedInputResponse,
    Stage.CONSISTENCY_CHECK: consistency_check.ConsistencyCheckResponse,
    Stage.UNMASKING: unmasking.UnmaskingResponse,
}


def parse_stage(name: str) -> Stage:
    try:
        stage = Stage(name)
    except ValueError:
        raise ParamsError(f"unknown stage {name!r}; stages are "
                          f"{', '.join(s.value for s in Stage if s is not Stage.SETUP)}") from None
    if stage is Stage.SETUP:
        raise ParamsError("'setup' is not a stage a client answers; join with an empty stage_answered")
    return stage


def params_from_proto(p: spb.SecAggRoundParams) -> SecAggParams:
    """Build (and so validate) the core parameters; raises ParamsError with the reason."""
    if p.graph == spb.SECAGG_GRAPH_SECAGGPLUS:
        kind = GraphKind.REGULAR
    elif p.graph in (spb.SECAGG_GRAPH_UNSPECIFIED, spb.SECAGG_GRAPH_COMPLETE):
        kind = GraphKind.COMPLETE
    else:
        raise ParamsError(f"unknown graph kind {p.graph}")
    return SecAggParams(round_id=p.round_id, client_ids=tuple(p.client_ids), threshold=p.threshold,
                        vector_length=p.vector_length, bits=p.bits or DEFAULT_BITS, graph_kind=kind,
                        degree=p.degree, graph_seed=bytes(p.graph_seed) or bytes(32), active=p.active,
                        verify_keys=tuple(bytes(k) for k in p.verify_keys))


def params_to_proto(params: SecAggParams, stage_deadline_s: float, join_deadline_s: float) -> spb.SecAggRoundParams:
    graph = spb.SECAGG_GRAPH_SECAGGPLUS if params.graph_kind is GraphKind.REGULAR else spb.SECAGG_GRAPH_COMPLETE
    return spb.SecAggRoundParams(
        round_id=params.round_id, client_ids=list(params.client_ids), threshold=params.threshold,
        bits=params.bits, vector_length=params.vector_length, graph=graph, degree=params.degree,
        graph_seed=params.graph_seed, active=params.active, verify_keys=list(params.verify_keys),
        stage_deadline_s=stage_deadline_s, join_deadline_s=join_deadline_s)


def word_bytes(bits: int) -> int:
    """Bytes per element of an aggregate on the wire: 4 for bits <= 32, else 8."""
    return 4 if bits <= 32 else 8


def vector_to_bytes(vec: RingArray, bits: int = 64) -> bytes:
    """Little-endian words of :func:`word_bytes` (``bits``) bytes."""
    return np.ascontiguousarray(vec, dtype="<u4" if word_bytes(bits) == 4 else "<u8").tobytes()


def vector_from_bytes(data: bytes, width: int = 8) -> RingArray:
    if width not in (4, 8):
        raise ParamsError(f"ring vector words are 4 or 8 bytes, not {width}")
    if len(data) % width:
        raise ParamsError(f"a ring vector of {width}-byte words must be a multiple of {width} bytes")
    return np.frombuffer(data, dtype="<u4" if width == 4 else "<u8").astype(np.uint64)


def done_message(total: RingArray, bits: int, included: Sequence[int],
                 dropped: Sequence[tuple[int, str]]) -> spb.SecAggDone:
    return spb.SecAggDone(sum=vector_to_bytes(total, bits), word_bytes=word_bytes(bits), included=list(included),
                          dropped=[spb.SecAggDropout(client_id=c, stage=s) for c, s in dropped])


def aggregate_of(done: spb.SecAggDone) -> RingArray:
    """The aggregate of a ``SecAggDone`` (``word_bytes`` 0, from an older server, means 8)."""
    return vector_from_bytes(bytes(done.sum), done.word_bytes or 8)


RING, REAL_SUM, FEDAVG = "ring", "real_sum", "fedavg"
_ENCODINGS = {spb.SECAGG_ENCODING_UNSPECIFIED: RING, spb.SECAGG_ENCODING_RING: RING,
              spb.SECAGG_ENCODING_REAL_SUM: REAL_SUM, spb.SECAGG_ENCODING_FEDAVG: FEDAVG}


@dataclass(frozen=True, slots=True)
class ValueEncoding:
    """What a round's ring vectors mean (``SecAggRoundParams.quantization``), checked against its parameters.

    ``ring``: integers in [0, 2^bits).  ``real_sum``: a :class:`Quantizer` (clip, head-room bound >= clients).
    ``fedavg``: a :class:`WeightedEncoder` (clip, bound on the total weight); the ring vector is the float
    vector plus one weight element.
    """

    kind: str
    bits: int
    vector_length: int  # ring elements per client
    clip: float = 0.0
    bound: int = 0

    @property
    def float_length(self) -> int:
        return self.vector_length - 1 if self.kind == FEDAVG else self.vector_length

    def quantizer(self) -> Quantizer:
        if self.kind != REAL_SUM:
            raise ParamsError(f"a {self.kind} round has no real-sum quantizer")
        return Quantizer(self.clip, self.bound, self.bits)

    def weighted(self) -> WeightedEncoder:
        if self.kind != FEDAVG:
            raise ParamsError(f"a {self.kind} round has no FedAvg encoder")
        return WeightedEncoder(self.clip, self.bound, self.bits)


def encoding_from_proto(p: spb.SecAggRoundParams) -> ValueEncoding:
    """The round's value encoding; raises ParamsError when it cannot work with the round's bits and clients."""
    q = p.quantization
    kind = _ENCODINGS.get(q.encoding)
    if kind is None:
        raise ParamsError(f"unknown quantization encoding {q.encoding}")
    bits, n = p.bits or DEFAULT_BITS, len(p.client_ids)
    if kind == RING:
        if q.clip or q.bound:
            raise ParamsError("clip and bound are for the real_sum and fedavg encodings only")
        return ValueEncoding(RING, bits, p.vector_length)
    if not (np.isfinite(q.clip) and q.clip > 0):
        raise ParamsError(f"the {kind} encoding needs a positive finite clip bound")
    if kind == REAL_SUM:
        bound = q.bound or n
        if bound < n:
            raise ParamsError(f"quantization bound {bound} is below the {n} clients: the sum could wrap mod 2^{bits}")
        enc = ValueEncoding(REAL_SUM, bits, p.vector_length, float(q.clip), bound)
        enc.quantizer()  # the head-room rule: at least 2 levels for `bound` clients in 2^bits
        return enc
    if not q.bound:
        raise ParamsError("the fedavg encoding needs bound = a public bound on the total sample count")
    if p.vector_length < 2:
        raise ParamsError("a fedavg round needs vector_length >= 2 (the floats plus the weight element)")
    enc = ValueEncoding(FEDAVG, bits, p.vector_length, float(q.clip), int(q.bound))
    enc.weighted()
    return enc


def dequantize(enc: ValueEncoding, total: RingArray, count: int) -> tuple[npt.NDArray[np.float64], int]:
    """Decode an aggregate: real_sum -> (float sum, count); fedavg -> (weighted mean, total weight)."""
    if enc.kind == REAL_SUM:
        return enc.quantizer().dequantize_sum(total, count), count
    if enc.kind == FEDAVG:
        return enc.weighted().decode(total)
    raise ParamsError("a ring round has no float result: decode its sum with mpcnet.secagg.quantization.decode_ints")


def will_proof(token_hash: bytes, round_id: str, client_id: int) -> str:
    """What a client's MQTT last will carries to show it speaks for ``client_id`` (hex HMAC; not the token)."""
    msg = b"mpcnet-will\x00" + round_id.encode() + b"\x00" + str(client_id).encode()
    return hmac.new(token_hash, msg, hashlib.sha256).hexdigest()


def topic_level(round_id: str) -> str:
    """A round id as one event-topic level (a round id may hold "/", a topic level may not)."""
    return round_id.replace("/", "%2F")
