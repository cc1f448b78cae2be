"""Conversions between the SecAgg protobuf messages and the pure core's types.

The protobuf carries the round parameters as fields and every protocol
message as its canonical bytes (:mod:`mpcnet.secagg.encoding`); this module
is the one place that maps the two.  Grpc-free (only generated protobuf
classes).
"""

from __future__ import annotations

import numpy as np

from mpcnet.core.ring import RingArray
from mpcnet.secagg import advertise_keys, consistency_check, masked_input, share_keys, unmasking
from mpcnet.secagg.errors import ParamsError
from mpcnet.secagg.graph import GraphKind
from mpcnet.secagg.params import SecAggParams
from mpcnet.secagg.stage import Stage
from mpcnet.v1 import secagg_pb2 as spb

DEFAULT_BITS = 32

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


def vector_to_bytes(vec: RingArray) -> bytes:
    return np.ascontiguousarray(vec, dtype="<u8").tobytes()


def vector_from_bytes(data: bytes) -> RingArray:
    if len(data) % 8:
        raise ParamsError("a ring vector must be a multiple of 8 bytes")
    return np.frombuffer(data, dtype="<u8").astype(np.uint64)
