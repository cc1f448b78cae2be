from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SecretSpec(_message.Message):
    __slots__ = ("name", "shape", "frac_bits", "owner", "bound", "nonnegative", "dp_only")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    FRAC_BITS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    NONNEGATIVE_FIELD_NUMBER: _ClassVar[int]
    DP_ONLY_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    frac_bits: int
    owner: str
    bound: float
    nonnegative: bool
    dp_only: bool
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., frac_bits: _Optional[int] = ..., owner: _Optional[str] = ..., bound: _Optional[float] = ..., nonnegative: _Optional[bool] = ..., dp_only: _Optional[bool] = ...) -> None: ...

class TensorChunk(_message.Message):
    __slots__ = ("data", "total_elements", "part")
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    total_elements: int
    part: int
    def __init__(self, data: _Optional[bytes] = ..., total_elements: _Optional[int] = ..., part: _Optional[int] = ...) -> None: ...

class Operation(_message.Message):
    __slots__ = ("code", "out", "args", "public_value", "counts", "sensitivity")
    CODE_FIELD_NUMBER: _ClassVar[int]
    OUT_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_VALUE_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    SENSITIVITY_FIELD_NUMBER: _ClassVar[int]
    code: str
    out: str
    args: _containers.RepeatedScalarFieldContainer[str]
    public_value: float
    counts: _containers.RepeatedScalarFieldContainer[str]
    sensitivity: float
    def __init__(self, code: _Optional[str] = ..., out: _Optional[str] = ..., args: _Optional[_Iterable[str]] = ..., public_value: _Optional[float] = ..., counts: _Optional[_Iterable[str]] = ..., sensitivity: _Optional[float] = ...) -> None: ...

class OutputSpec(_message.Message):
    __slots__ = ("name", "readers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    READERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    readers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., readers: _Optional[_Iterable[str]] = ...) -> None: ...

class Program(_message.Message):
    __slots__ = ("ops", "outputs")
    OPS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ops: _containers.RepeatedCompositeFieldContainer[Operation]
    outputs: _containers.RepeatedCompositeFieldContainer[OutputSpec]
    def __init__(self, ops: _Optional[_Iterable[_Union[Operation, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[OutputSpec, _Mapping]]] = ...) -> None: ...

class RegisterPartyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RegisterPartyResponse(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class GetClusterRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterInfo(_message.Message):
    __slots__ = ("nodes", "frac_bits", "max_elements")
    NODES_FIELD_NUMBER: _ClassVar[int]
    FRAC_BITS_FIELD_NUMBER: _ClassVar[int]
    MAX_ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeAddress]
    frac_bits: int
    max_elements: int
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeAddress, _Mapping]]] = ..., frac_bits: _Optional[int] = ..., max_elements: _Optional[int] = ...) -> None: ...

class NodeAddress(_message.Message):
    __slots__ = ("id", "address")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    id: int
    address: str
    def __init__(self, id: _Optional[int] = ..., address: _Optional[str] = ...) -> None: ...

class CreateJobRequest(_message.Message):
    __slots__ = ("name", "parties")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    parties: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., parties: _Optional[_Iterable[str]] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("job_id", "name", "state", "parties", "inputs", "outputs", "error", "receipt_json")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_JSON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    state: str
    parties: _containers.RepeatedScalarFieldContainer[str]
    inputs: _containers.RepeatedCompositeFieldContainer[SecretSpec]
    outputs: _containers.RepeatedCompositeFieldContainer[SecretSpec]
    error: str
    receipt_json: str
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[str] = ..., parties: _Optional[_Iterable[str]] = ..., inputs: _Optional[_Iterable[_Union[SecretSpec, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[SecretSpec, _Mapping]]] = ..., error: _Optional[str] = ..., receipt_json: _Optional[str] = ...) -> None: ...

class DeclareInputRequest(_message.Message):
    __slots__ = ("job_id", "secret")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    secret: SecretSpec
    def __init__(self, job_id: _Optional[str] = ..., secret: _Optional[_Union[SecretSpec, _Mapping]] = ...) -> None: ...

class DeclareInputResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunJobRequest(_message.Message):
    __slots__ = ("job_id", "program")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    program: Program
    def __init__(self, job_id: _Optional[str] = ..., program: _Optional[_Union[Program, _Mapping]] = ...) -> None: ...

class RunJobResponse(_message.Message):
    __slots__ = ("job", "preprocessing_s", "online_s", "total_s", "layers", "bytes_exchanged", "nodes")
    JOB_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_S_FIELD_NUMBER: _ClassVar[int]
    ONLINE_S_FIELD_NUMBER: _ClassVar[int]
    TOTAL_S_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    BYTES_EXCHANGED_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    job: JobInfo
    preprocessing_s: float
    online_s: float
    total_s: float
    layers: int
    bytes_exchanged: int
    nodes: _containers.RepeatedCompositeFieldContainer[NodeReport]
    def __init__(self, job: _Optional[_Union[JobInfo, _Mapping]] = ..., preprocessing_s: _Optional[float] = ..., online_s: _Optional[float] = ..., total_s: _Optional[float] = ..., layers: _Optional[int] = ..., bytes_exchanged: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[NodeReport, _Mapping]]] = ...) -> None: ...

class NodeReport(_message.Message):
    __slots__ = ("node_id", "preprocessing_s", "online_s", "bytes_sent", "peak_rss_kb")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_S_FIELD_NUMBER: _ClassVar[int]
    ONLINE_S_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    PEAK_RSS_KB_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    preprocessing_s: float
    online_s: float
    bytes_sent: int
    peak_rss_kb: int
    def __init__(self, node_id: _Optional[int] = ..., preprocessing_s: _Optional[float] = ..., online_s: _Optional[float] = ..., bytes_sent: _Optional[int] = ..., peak_rss_kb: _Optional[int] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class EnrollRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    def __init__(self, node_id: _Optional[int] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("seed", "epoch", "n_nodes")
    SEED_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    N_NODES_FIELD_NUMBER: _ClassVar[int]
    seed: bytes
    epoch: str
    n_nodes: int
    def __init__(self, seed: _Optional[bytes] = ..., epoch: _Optional[str] = ..., n_nodes: _Optional[int] = ...) -> None: ...

class MaterialSpec(_message.Message):
    __slots__ = ("kind", "shape_a", "shape_b", "product", "shift")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SHAPE_A_FIELD_NUMBER: _ClassVar[int]
    SHAPE_B_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    SHIFT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    shape_a: _containers.RepeatedScalarFieldContainer[int]
    shape_b: _containers.RepeatedScalarFieldContainer[int]
    product: str
    shift: int
    def __init__(self, kind: _Optional[str] = ..., shape_a: _Optional[_Iterable[int]] = ..., shape_b: _Optional[_Iterable[int]] = ..., product: _Optional[str] = ..., shift: _Optional[int] = ...) -> None: ...

class CreateBatchRequest(_message.Message):
    __slots__ = ("job_id", "items")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    items: _containers.RepeatedCompositeFieldContainer[MaterialSpec]
    def __init__(self, job_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[MaterialSpec, _Mapping]]] = ...) -> None: ...

class CreateBatchResponse(_message.Message):
    __slots__ = ("batch_id", "node_epochs")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    node_epochs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, batch_id: _Optional[str] = ..., node_epochs: _Optional[_Iterable[str]] = ...) -> None: ...

class FetchCorrectionsRequest(_message.Message):
    __slots__ = ("batch_id", "node_id")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    node_id: int
    def __init__(self, batch_id: _Optional[str] = ..., node_id: _Optional[int] = ...) -> None: ...

class PartyEntry(_message.Message):
    __slots__ = ("name", "token_sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    token_sha256: bytes
    def __init__(self, name: _Optional[str] = ..., token_sha256: _Optional[bytes] = ...) -> None: ...

class OpenJobRequest(_message.Message):
    __slots__ = ("job_id", "parties", "nodes", "frac_bits")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    FRAC_BITS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    parties: _containers.RepeatedCompositeFieldContainer[PartyEntry]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeAddress]
    frac_bits: int
    def __init__(self, job_id: _Optional[str] = ..., parties: _Optional[_Iterable[_Union[PartyEntry, _Mapping]]] = ..., nodes: _Optional[_Iterable[_Union[NodeAddress, _Mapping]]] = ..., frac_bits: _Optional[int] = ...) -> None: ...

class OpenJobResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InputChunk(_message.Message):
    __slots__ = ("job_id", "secret", "seed", "chunk")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    secret: str
    seed: bytes
    chunk: TensorChunk
    def __init__(self, job_id: _Optional[str] = ..., secret: _Optional[str] = ..., seed: _Optional[bytes] = ..., chunk: _Optional[_Union[TensorChunk, _Mapping]] = ...) -> None: ...

class ProvideInputResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ("job_id", "program", "plan_digest", "batch_id", "node_epochs", "deadline_s")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    PLAN_DIGEST_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    program: Program
    plan_digest: str
    batch_id: str
    node_epochs: _containers.RepeatedScalarFieldContainer[str]
    deadline_s: float
    def __init__(self, job_id: _Optional[str] = ..., program: _Optional[_Union[Program, _Mapping]] = ..., plan_digest: _Optional[str] = ..., batch_id: _Optional[str] = ..., node_epochs: _Optional[_Iterable[str]] = ..., deadline_s: _Optional[float] = ...) -> None: ...

class PrepareResponse(_message.Message):
    __slots__ = ("preprocessing_s",)
    PREPROCESSING_S_FIELD_NUMBER: _ClassVar[int]
    preprocessing_s: float
    def __init__(self, preprocessing_s: _Optional[float] = ...) -> None: ...

class ExecuteResponse(_message.Message):
    __slots__ = ("report", "layers")
    REPORT_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    report: NodeReport
    layers: int
    def __init__(self, report: _Optional[_Union[NodeReport, _Mapping]] = ..., layers: _Optional[int] = ...) -> None: ...

class ExchangeChunk(_message.Message):
    __slots__ = ("job_id", "layer", "sender", "chunk")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    layer: int
    sender: int
    chunk: TensorChunk
    def __init__(self, job_id: _Optional[str] = ..., layer: _Optional[int] = ..., sender: _Optional[int] = ..., chunk: _Optional[_Union[TensorChunk, _Mapping]] = ...) -> None: ...

class ExchangeAck(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RevealRequest(_message.Message):
    __slots__ = ("job_id", "secret")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    secret: str
    def __init__(self, job_id: _Optional[str] = ..., secret: _Optional[str] = ...) -> None: ...

class AbortJobRequest(_message.Message):
    __slots__ = ("job_id", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AbortJobResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EnsureEnrolledRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EnsureEnrolledResponse(_message.Message):
    __slots__ = ("epoch",)
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: str
    def __init__(self, epoch: _Optional[str] = ...) -> None: ...
