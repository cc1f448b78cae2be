from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SecAggEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SECAGG_ENCODING_UNSPECIFIED: _ClassVar[SecAggEncoding]
    SECAGG_ENCODING_RING: _ClassVar[SecAggEncoding]
    SECAGG_ENCODING_REAL_SUM: _ClassVar[SecAggEncoding]
    SECAGG_ENCODING_FEDAVG: _ClassVar[SecAggEncoding]

class SecAggGraph(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SECAGG_GRAPH_UNSPECIFIED: _ClassVar[SecAggGraph]
    SECAGG_GRAPH_COMPLETE: _ClassVar[SecAggGraph]
    SECAGG_GRAPH_SECAGGPLUS: _ClassVar[SecAggGraph]
SECAGG_ENCODING_UNSPECIFIED: SecAggEncoding
SECAGG_ENCODING_RING: SecAggEncoding
SECAGG_ENCODING_REAL_SUM: SecAggEncoding
SECAGG_ENCODING_FEDAVG: SecAggEncoding
SECAGG_GRAPH_UNSPECIFIED: SecAggGraph
SECAGG_GRAPH_COMPLETE: SecAggGraph
SECAGG_GRAPH_SECAGGPLUS: SecAggGraph

class SecAggQuantization(_message.Message):
    __slots__ = ("encoding", "clip", "bound")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    CLIP_FIELD_NUMBER: _ClassVar[int]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    encoding: SecAggEncoding
    clip: float
    bound: int
    def __init__(self, encoding: _Optional[_Union[SecAggEncoding, str]] = ..., clip: _Optional[float] = ..., bound: _Optional[int] = ...) -> None: ...

class SecAggRoundParams(_message.Message):
    __slots__ = ("round_id", "client_ids", "threshold", "bits", "vector_length", "graph", "degree", "graph_seed", "active", "verify_keys", "stage_deadline_s", "join_deadline_s", "quantization", "sum_to_operator_only", "withhold_membership")
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IDS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    VECTOR_LENGTH_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    DEGREE_FIELD_NUMBER: _ClassVar[int]
    GRAPH_SEED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    VERIFY_KEYS_FIELD_NUMBER: _ClassVar[int]
    STAGE_DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    JOIN_DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    SUM_TO_OPERATOR_ONLY_FIELD_NUMBER: _ClassVar[int]
    WITHHOLD_MEMBERSHIP_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    client_ids: _containers.RepeatedScalarFieldContainer[int]
    threshold: int
    bits: int
    vector_length: int
    graph: SecAggGraph
    degree: int
    graph_seed: bytes
    active: bool
    verify_keys: _containers.RepeatedScalarFieldContainer[bytes]
    stage_deadline_s: float
    join_deadline_s: float
    quantization: SecAggQuantization
    sum_to_operator_only: bool
    withhold_membership: bool
    def __init__(self, round_id: _Optional[str] = ..., client_ids: _Optional[_Iterable[int]] = ..., threshold: _Optional[int] = ..., bits: _Optional[int] = ..., vector_length: _Optional[int] = ..., graph: _Optional[_Union[SecAggGraph, str]] = ..., degree: _Optional[int] = ..., graph_seed: _Optional[bytes] = ..., active: _Optional[bool] = ..., verify_keys: _Optional[_Iterable[bytes]] = ..., stage_deadline_s: _Optional[float] = ..., join_deadline_s: _Optional[float] = ..., quantization: _Optional[_Union[SecAggQuantization, _Mapping]] = ..., sum_to_operator_only: _Optional[bool] = ..., withhold_membership: _Optional[bool] = ...) -> None: ...

class SecAggCreateRoundRequest(_message.Message):
    __slots__ = ("params",)
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    params: SecAggRoundParams
    def __init__(self, params: _Optional[_Union[SecAggRoundParams, _Mapping]] = ...) -> None: ...

class SecAggCreateRoundReply(_message.Message):
    __slots__ = ("round_id", "params", "client_tokens")
    class ClientTokensEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    params: SecAggRoundParams
    client_tokens: _containers.ScalarMap[int, str]
    def __init__(self, round_id: _Optional[str] = ..., params: _Optional[_Union[SecAggRoundParams, _Mapping]] = ..., client_tokens: _Optional[_Mapping[int, str]] = ...) -> None: ...

class SecAggNextRequest(_message.Message):
    __slots__ = ("round_id", "client_id", "stage_answered", "response", "want_result")
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_ANSWERED_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    WANT_RESULT_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    client_id: int
    stage_answered: str
    response: bytes
    want_result: bool
    def __init__(self, round_id: _Optional[str] = ..., client_id: _Optional[int] = ..., stage_answered: _Optional[str] = ..., response: _Optional[bytes] = ..., want_result: _Optional[bool] = ...) -> None: ...

class SecAggStageRequest(_message.Message):
    __slots__ = ("stage", "payload")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    stage: str
    payload: bytes
    def __init__(self, stage: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class SecAggDone(_message.Message):
    __slots__ = ("sum", "included", "dropped", "word_bytes")
    SUM_FIELD_NUMBER: _ClassVar[int]
    INCLUDED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    WORD_BYTES_FIELD_NUMBER: _ClassVar[int]
    sum: bytes
    included: _containers.RepeatedScalarFieldContainer[int]
    dropped: _containers.RepeatedCompositeFieldContainer[SecAggDropout]
    word_bytes: int
    def __init__(self, sum: _Optional[bytes] = ..., included: _Optional[_Iterable[int]] = ..., dropped: _Optional[_Iterable[_Union[SecAggDropout, _Mapping]]] = ..., word_bytes: _Optional[int] = ...) -> None: ...

class SecAggAborted(_message.Message):
    __slots__ = ("stage", "reason", "dropped", "masked_input_from", "participants_recorded")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    MASKED_INPUT_FROM_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_RECORDED_FIELD_NUMBER: _ClassVar[int]
    stage: str
    reason: str
    dropped: _containers.RepeatedCompositeFieldContainer[SecAggDropout]
    masked_input_from: _containers.RepeatedScalarFieldContainer[int]
    participants_recorded: bool
    def __init__(self, stage: _Optional[str] = ..., reason: _Optional[str] = ..., dropped: _Optional[_Iterable[_Union[SecAggDropout, _Mapping]]] = ..., masked_input_from: _Optional[_Iterable[int]] = ..., participants_recorded: _Optional[bool] = ...) -> None: ...

class SecAggDropout(_message.Message):
    __slots__ = ("client_id", "stage")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    client_id: int
    stage: str
    def __init__(self, client_id: _Optional[int] = ..., stage: _Optional[str] = ...) -> None: ...

class SecAggNextReply(_message.Message):
    __slots__ = ("request", "done", "aborted", "params")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    ABORTED_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    request: SecAggStageRequest
    done: SecAggDone
    aborted: SecAggAborted
    params: SecAggRoundParams
    def __init__(self, request: _Optional[_Union[SecAggStageRequest, _Mapping]] = ..., done: _Optional[_Union[SecAggDone, _Mapping]] = ..., aborted: _Optional[_Union[SecAggAborted, _Mapping]] = ..., params: _Optional[_Union[SecAggRoundParams, _Mapping]] = ...) -> None: ...

class SecAggGetResultRequest(_message.Message):
    __slots__ = ("round_id",)
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    def __init__(self, round_id: _Optional[str] = ...) -> None: ...

class SecAggGetResultReply(_message.Message):
    __slots__ = ("round_id", "state", "stage", "done", "aborted", "receipt_json")
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    ABORTED_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_JSON_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    state: str
    stage: str
    done: SecAggDone
    aborted: SecAggAborted
    receipt_json: str
    def __init__(self, round_id: _Optional[str] = ..., state: _Optional[str] = ..., stage: _Optional[str] = ..., done: _Optional[_Union[SecAggDone, _Mapping]] = ..., aborted: _Optional[_Union[SecAggAborted, _Mapping]] = ..., receipt_json: _Optional[str] = ...) -> None: ...

class SecAggAttendRequest(_message.Message):
    __slots__ = ("round_id", "client_id")
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    client_id: int
    def __init__(self, round_id: _Optional[str] = ..., client_id: _Optional[int] = ...) -> None: ...

class SecAggPresence(_message.Message):
    __slots__ = ("state", "stage")
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    state: str
    stage: str
    def __init__(self, state: _Optional[str] = ..., stage: _Optional[str] = ...) -> None: ...
