from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

AUDIT_OUTCOME_ERROR: AuditOutcome
AUDIT_OUTCOME_OK: AuditOutcome
AUDIT_OUTCOME_UNSPECIFIED: AuditOutcome
CALIBRATION_FORMAT_KSERVE_JSON: CalibrationFormat
CALIBRATION_FORMAT_NPY: CalibrationFormat
CALIBRATION_FORMAT_NPZ: CalibrationFormat
CALIBRATION_FORMAT_UNSPECIFIED: CalibrationFormat
COMPRESSION_METHOD_FP16: CompressionMethod
COMPRESSION_METHOD_INT8_DYNAMIC: CompressionMethod
COMPRESSION_METHOD_INT8_WEIGHTS: CompressionMethod
COMPRESSION_METHOD_PRUNE: CompressionMethod
COMPRESSION_METHOD_UNSPECIFIED: CompressionMethod
DEPLOYMENT_CHANGE_TYPE_DELETED: DeploymentChangeType
DEPLOYMENT_CHANGE_TYPE_UNSPECIFIED: DeploymentChangeType
DEPLOYMENT_CHANGE_TYPE_UPSERTED: DeploymentChangeType
DESCRIPTOR: _descriptor.FileDescriptor
VERSION_STATUS_FAILED: VersionStatus
VERSION_STATUS_PENDING: VersionStatus
VERSION_STATUS_READY: VersionStatus
VERSION_STATUS_UNSPECIFIED: VersionStatus

class AuditEvent(_message.Message):
    __slots__ = ["action", "error_code", "id", "outcome", "resource", "subject", "tenant", "time", "trace_id"]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    action: str
    error_code: str
    id: str
    outcome: AuditOutcome
    resource: str
    subject: str
    tenant: str
    time: _timestamp_pb2.Timestamp
    trace_id: str
    def __init__(self, id: _Optional[str] = ..., tenant: _Optional[str] = ..., subject: _Optional[str] = ..., action: _Optional[str] = ..., resource: _Optional[str] = ..., outcome: _Optional[_Union[AuditOutcome, str]] = ..., error_code: _Optional[str] = ..., trace_id: _Optional[str] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CalibrationFile(_message.Message):
    __slots__ = ["data", "format", "input_name"]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    INPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    format: CalibrationFormat
    input_name: str
    def __init__(self, input_name: _Optional[str] = ..., format: _Optional[_Union[CalibrationFormat, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class CalibrationSource(_message.Message):
    __slots__ = ["description", "dims", "kind", "sample_count", "seed"]
    class DimsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    description: str
    dims: _containers.ScalarMap[str, int]
    kind: str
    sample_count: int
    seed: int
    def __init__(self, kind: _Optional[str] = ..., sample_count: _Optional[int] = ..., seed: _Optional[int] = ..., dims: _Optional[_Mapping[str, int]] = ..., description: _Optional[str] = ...) -> None: ...

class CallerLimits(_message.Message):
    __slots__ = ["burst", "max_concurrency", "requests_per_second"]
    BURST_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    burst: int
    max_concurrency: int
    requests_per_second: float
    def __init__(self, requests_per_second: _Optional[float] = ..., burst: _Optional[int] = ..., max_concurrency: _Optional[int] = ...) -> None: ...

class CompressProgress(_message.Message):
    __slots__ = ["fraction", "phase"]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    fraction: float
    phase: str
    def __init__(self, phase: _Optional[str] = ..., fraction: _Optional[float] = ...) -> None: ...

class CompressVersionRequest(_message.Message):
    __slots__ = ["alias", "calibration", "description", "dims", "gates", "method", "ref", "sample_count", "seed", "sparsity", "target_model"]
    class DimsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SPARSITY_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODEL_FIELD_NUMBER: _ClassVar[int]
    alias: str
    calibration: _containers.RepeatedCompositeFieldContainer[CalibrationFile]
    description: str
    dims: _containers.ScalarMap[str, int]
    gates: CompressionGates
    method: CompressionMethod
    ref: str
    sample_count: int
    seed: int
    sparsity: float
    target_model: str
    def __init__(self, ref: _Optional[str] = ..., target_model: _Optional[str] = ..., method: _Optional[_Union[CompressionMethod, str]] = ..., sparsity: _Optional[float] = ..., calibration: _Optional[_Iterable[_Union[CalibrationFile, _Mapping]]] = ..., dims: _Optional[_Mapping[str, int]] = ..., sample_count: _Optional[int] = ..., seed: _Optional[int] = ..., gates: _Optional[_Union[CompressionGates, _Mapping]] = ..., alias: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class CompressVersionResponse(_message.Message):
    __slots__ = ["progress", "version"]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    progress: CompressProgress
    version: ModelVersion
    def __init__(self, progress: _Optional[_Union[CompressProgress, _Mapping]] = ..., version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class CompressionGates(_message.Message):
    __slots__ = ["max_abs_error", "min_cosine", "min_top1_agreement"]
    MAX_ABS_ERROR_FIELD_NUMBER: _ClassVar[int]
    MIN_COSINE_FIELD_NUMBER: _ClassVar[int]
    MIN_TOP1_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    max_abs_error: float
    min_cosine: float
    min_top1_agreement: float
    def __init__(self, min_cosine: _Optional[float] = ..., max_abs_error: _Optional[float] = ..., min_top1_agreement: _Optional[float] = ...) -> None: ...

class CompressionLatency(_message.Message):
    __slots__ = ["batch_size", "p50_after_ms", "p50_before_ms", "runs"]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    P50_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    P50_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    batch_size: int
    p50_after_ms: float
    p50_before_ms: float
    runs: int
    def __init__(self, batch_size: _Optional[int] = ..., p50_before_ms: _Optional[float] = ..., p50_after_ms: _Optional[float] = ..., runs: _Optional[int] = ...) -> None: ...

class CompressionOpCount(_message.Message):
    __slots__ = ["count", "op", "reason"]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    count: int
    op: str
    reason: str
    def __init__(self, op: _Optional[str] = ..., count: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class CompressionReport(_message.Message):
    __slots__ = ["calibration", "latency", "measured_on", "method", "ops_left", "ops_rewritten", "outputs", "parameters", "size_after_bytes", "size_before_bytes"]
    class ParametersEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    MEASURED_ON_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    OPS_LEFT_FIELD_NUMBER: _ClassVar[int]
    OPS_REWRITTEN_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SIZE_AFTER_BYTES_FIELD_NUMBER: _ClassVar[int]
    SIZE_BEFORE_BYTES_FIELD_NUMBER: _ClassVar[int]
    calibration: CalibrationSource
    latency: _containers.RepeatedCompositeFieldContainer[CompressionLatency]
    measured_on: str
    method: str
    ops_left: _containers.RepeatedCompositeFieldContainer[CompressionOpCount]
    ops_rewritten: _containers.RepeatedCompositeFieldContainer[CompressionOpCount]
    outputs: _containers.RepeatedCompositeFieldContainer[OutputAccuracy]
    parameters: _containers.ScalarMap[str, str]
    size_after_bytes: int
    size_before_bytes: int
    def __init__(self, method: _Optional[str] = ..., parameters: _Optional[_Mapping[str, str]] = ..., size_before_bytes: _Optional[int] = ..., size_after_bytes: _Optional[int] = ..., ops_rewritten: _Optional[_Iterable[_Union[CompressionOpCount, _Mapping]]] = ..., ops_left: _Optional[_Iterable[_Union[CompressionOpCount, _Mapping]]] = ..., calibration: _Optional[_Union[CalibrationSource, _Mapping]] = ..., outputs: _Optional[_Iterable[_Union[OutputAccuracy, _Mapping]]] = ..., latency: _Optional[_Iterable[_Union[CompressionLatency, _Mapping]]] = ..., measured_on: _Optional[str] = ...) -> None: ...

class CreateDeploymentRequest(_message.Message):
    __slots__ = ["name", "spec"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: DeploymentSpec
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[_Union[DeploymentSpec, _Mapping]] = ...) -> None: ...

class CreateDeploymentResponse(_message.Message):
    __slots__ = ["deployment"]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class CreateModelRequest(_message.Message):
    __slots__ = ["description", "name", "tags"]
    class TagsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    description: str
    name: str
    tags: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CreateModelResponse(_message.Message):
    __slots__ = ["model"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class DataKeyVersionCount(_message.Message):
    __slots__ = ["files", "key_name", "key_version", "versions"]
    FILES_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    files: int
    key_name: str
    key_version: int
    versions: int
    def __init__(self, key_name: _Optional[str] = ..., key_version: _Optional[int] = ..., versions: _Optional[int] = ..., files: _Optional[int] = ...) -> None: ...

class DeleteAliasRequest(_message.Message):
    __slots__ = ["alias", "model"]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    alias: str
    model: str
    def __init__(self, model: _Optional[str] = ..., alias: _Optional[str] = ...) -> None: ...

class DeleteAliasResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class DeleteDeploymentRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteDeploymentResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class Deployment(_message.Message):
    __slots__ = ["canary_version", "create_time", "generation", "name", "resolved_version", "shadow_version", "spec", "tenant", "update_time"]
    CANARY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_VERSION_FIELD_NUMBER: _ClassVar[int]
    SHADOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    canary_version: ModelVersion
    create_time: _timestamp_pb2.Timestamp
    generation: int
    name: str
    resolved_version: ModelVersion
    shadow_version: ModelVersion
    spec: DeploymentSpec
    tenant: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., tenant: _Optional[str] = ..., spec: _Optional[_Union[DeploymentSpec, _Mapping]] = ..., resolved_version: _Optional[_Union[ModelVersion, _Mapping]] = ..., generation: _Optional[int] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., canary_version: _Optional[_Union[ModelVersion, _Mapping]] = ..., shadow_version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class DeploymentChange(_message.Message):
    __slots__ = ["deployment", "reason", "type"]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    reason: str
    type: DeploymentChangeType
    def __init__(self, type: _Optional[_Union[DeploymentChangeType, str]] = ..., deployment: _Optional[_Union[Deployment, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class DeploymentSnapshot(_message.Message):
    __slots__ = ["deployments"]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    def __init__(self, deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ...) -> None: ...

class DeploymentSpec(_message.Message):
    __slots__ = ["caller_limit_overrides", "caller_limits", "canary", "default_priority_level", "default_queue_policy", "instance_count", "max_batch_size", "max_queue_delay_us", "max_queue_size", "model_ref", "preferred_batch_sizes", "priority_levels", "priority_queue_policies", "response_cache_bytes", "sequence_idle_timeout_ms", "sequence_state", "shadow", "tune_preferred_batch_size"]
    class CallerLimitOverridesEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: CallerLimits
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[CallerLimits, _Mapping]] = ...) -> None: ...
    class PriorityQueuePoliciesEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: QueuePolicy
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[QueuePolicy, _Mapping]] = ...) -> None: ...
    CALLER_LIMITS_FIELD_NUMBER: _ClassVar[int]
    CALLER_LIMIT_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_PRIORITY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_QUEUE_POLICY_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_DELAY_US_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MODEL_REF_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_BATCH_SIZES_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_LEVELS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_QUEUE_POLICIES_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_IDLE_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_STATE_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    TUNE_PREFERRED_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    caller_limit_overrides: _containers.MessageMap[str, CallerLimits]
    caller_limits: CallerLimits
    canary: TrafficTarget
    default_priority_level: int
    default_queue_policy: QueuePolicy
    instance_count: int
    max_batch_size: int
    max_queue_delay_us: int
    max_queue_size: int
    model_ref: str
    preferred_batch_sizes: _containers.RepeatedScalarFieldContainer[int]
    priority_levels: int
    priority_queue_policies: _containers.MessageMap[int, QueuePolicy]
    response_cache_bytes: int
    sequence_idle_timeout_ms: int
    sequence_state: _containers.RepeatedCompositeFieldContainer[SequenceStateMapping]
    shadow: TrafficTarget
    tune_preferred_batch_size: bool
    def __init__(self, model_ref: _Optional[str] = ..., max_batch_size: _Optional[int] = ..., max_queue_delay_us: _Optional[int] = ..., instance_count: _Optional[int] = ..., max_queue_size: _Optional[int] = ..., sequence_state: _Optional[_Iterable[_Union[SequenceStateMapping, _Mapping]]] = ..., sequence_idle_timeout_ms: _Optional[int] = ..., preferred_batch_sizes: _Optional[_Iterable[int]] = ..., tune_preferred_batch_size: bool = ..., canary: _Optional[_Union[TrafficTarget, _Mapping]] = ..., shadow: _Optional[_Union[TrafficTarget, _Mapping]] = ..., response_cache_bytes: _Optional[int] = ..., priority_levels: _Optional[int] = ..., default_priority_level: _Optional[int] = ..., default_queue_policy: _Optional[_Union[QueuePolicy, _Mapping]] = ..., priority_queue_policies: _Optional[_Mapping[int, QueuePolicy]] = ..., caller_limits: _Optional[_Union[CallerLimits, _Mapping]] = ..., caller_limit_overrides: _Optional[_Mapping[str, CallerLimits]] = ...) -> None: ...

class DownloadHeader(_message.Message):
    __slots__ = ["version"]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: ModelVersion
    def __init__(self, version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class DownloadVersionRequest(_message.Message):
    __slots__ = ["chunk_size_bytes", "ref", "tenant"]
    CHUNK_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    chunk_size_bytes: int
    ref: str
    tenant: str
    def __init__(self, ref: _Optional[str] = ..., chunk_size_bytes: _Optional[int] = ..., tenant: _Optional[str] = ...) -> None: ...

class DownloadVersionResponse(_message.Message):
    __slots__ = ["chunk", "header"]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    header: DownloadHeader
    def __init__(self, header: _Optional[_Union[DownloadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class GetDataKeyStatusRequest(_message.Message):
    __slots__ = ["below_key_version"]
    BELOW_KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    below_key_version: int
    def __init__(self, below_key_version: _Optional[int] = ...) -> None: ...

class GetDataKeyStatusResponse(_message.Message):
    __slots__ = ["below_key_version", "counts", "files_below", "key_name", "latest_key_version", "versions_below"]
    BELOW_KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    FILES_BELOW_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    LATEST_KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_BELOW_FIELD_NUMBER: _ClassVar[int]
    below_key_version: int
    counts: _containers.RepeatedCompositeFieldContainer[DataKeyVersionCount]
    files_below: int
    key_name: str
    latest_key_version: int
    versions_below: int
    def __init__(self, key_name: _Optional[str] = ..., latest_key_version: _Optional[int] = ..., below_key_version: _Optional[int] = ..., versions_below: _Optional[int] = ..., files_below: _Optional[int] = ..., counts: _Optional[_Iterable[_Union[DataKeyVersionCount, _Mapping]]] = ...) -> None: ...

class GetDeploymentRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetDeploymentResponse(_message.Message):
    __slots__ = ["deployment"]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ["model"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class GetVersionRequest(_message.Message):
    __slots__ = ["ref"]
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class GetVersionResponse(_message.Message):
    __slots__ = ["version"]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: ModelVersion
    def __init__(self, version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class Lineage(_message.Message):
    __slots__ = ["parent", "source_uri"]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URI_FIELD_NUMBER: _ClassVar[int]
    parent: ParentVersion
    source_uri: str
    def __init__(self, source_uri: _Optional[str] = ..., parent: _Optional[_Union[ParentVersion, _Mapping]] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ["action", "page_size", "page_token", "since", "subject"]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    action: str
    page_size: int
    page_token: str
    since: _timestamp_pb2.Timestamp
    subject: str
    def __init__(self, since: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., subject: _Optional[str] = ..., action: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ["events", "next_page_token"]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListDeploymentsRequest(_message.Message):
    __slots__ = ["model", "page_size", "page_token"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    model: str
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class ListDeploymentsResponse(_message.Message):
    __slots__ = ["deployments", "next_page_token"]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    next_page_token: str
    def __init__(self, deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ["name_prefix", "page_size", "page_token", "tags"]
    class TagsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_PREFIX_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    name_prefix: str
    page_size: int
    page_token: str
    tags: _containers.ScalarMap[str, str]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., name_prefix: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ["models", "next_page_token"]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListVersionsRequest(_message.Message):
    __slots__ = ["model", "page_size", "page_token", "status", "tags"]
    class TagsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    model: str
    page_size: int
    page_token: str
    status: VersionStatus
    tags: _containers.ScalarMap[str, str]
    def __init__(self, model: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., status: _Optional[_Union[VersionStatus, str]] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListVersionsResponse(_message.Message):
    __slots__ = ["next_page_token", "versions"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ["aliases", "create_time", "description", "latest_version", "name", "tags", "update_time", "version_count"]
    class AliasesEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class TagsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_COUNT_FIELD_NUMBER: _ClassVar[int]
    aliases: _containers.ScalarMap[str, int]
    create_time: _timestamp_pb2.Timestamp
    description: str
    latest_version: int
    name: str
    tags: _containers.ScalarMap[str, str]
    update_time: _timestamp_pb2.Timestamp
    version_count: int
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., latest_version: _Optional[int] = ..., aliases: _Optional[_Mapping[str, int]] = ..., version_count: _Optional[int] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ["aliases", "compression", "create_time", "created_by", "description", "lineage", "model", "sha256", "signature", "size_bytes", "status", "status_reason", "tags", "update_time", "version"]
    class TagsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_REASON_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    aliases: _containers.RepeatedScalarFieldContainer[str]
    compression: CompressionReport
    create_time: _timestamp_pb2.Timestamp
    created_by: str
    description: str
    lineage: Lineage
    model: str
    sha256: str
    signature: OnnxSignature
    size_bytes: int
    status: VersionStatus
    status_reason: str
    tags: _containers.ScalarMap[str, str]
    update_time: _timestamp_pb2.Timestamp
    version: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., status: _Optional[_Union[VersionStatus, str]] = ..., status_reason: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., signature: _Optional[_Union[OnnxSignature, _Mapping]] = ..., lineage: _Optional[_Union[Lineage, _Mapping]] = ..., aliases: _Optional[_Iterable[str]] = ..., created_by: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., compression: _Optional[_Union[CompressionReport, _Mapping]] = ...) -> None: ...

class OnnxSignature(_message.Message):
    __slots__ = ["initializer_count", "inputs", "ir_version", "opset_imports", "outputs", "parameter_bytes", "parameter_count", "producer_name", "producer_version"]
    INITIALIZER_COUNT_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    IR_VERSION_FIELD_NUMBER: _ClassVar[int]
    OPSET_IMPORTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_BYTES_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_NAME_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_VERSION_FIELD_NUMBER: _ClassVar[int]
    initializer_count: int
    inputs: _containers.RepeatedCompositeFieldContainer[TensorSignature]
    ir_version: int
    opset_imports: _containers.RepeatedCompositeFieldContainer[OpsetImport]
    outputs: _containers.RepeatedCompositeFieldContainer[TensorSignature]
    parameter_bytes: int
    parameter_count: int
    producer_name: str
    producer_version: str
    def __init__(self, ir_version: _Optional[int] = ..., producer_name: _Optional[str] = ..., producer_version: _Optional[str] = ..., opset_imports: _Optional[_Iterable[_Union[OpsetImport, _Mapping]]] = ..., inputs: _Optional[_Iterable[_Union[TensorSignature, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[TensorSignature, _Mapping]]] = ..., initializer_count: _Optional[int] = ..., parameter_count: _Optional[int] = ..., parameter_bytes: _Optional[int] = ...) -> None: ...

class OpsetImport(_message.Message):
    __slots__ = ["domain", "version"]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    domain: str
    version: int
    def __init__(self, domain: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class OutputAccuracy(_message.Message):
    __slots__ = ["cosine", "max_abs_error", "mean_abs_error", "name", "top1_agreement"]
    COSINE_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_ERROR_FIELD_NUMBER: _ClassVar[int]
    MEAN_ABS_ERROR_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOP1_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    cosine: float
    max_abs_error: float
    mean_abs_error: float
    name: str
    top1_agreement: float
    def __init__(self, name: _Optional[str] = ..., max_abs_error: _Optional[float] = ..., mean_abs_error: _Optional[float] = ..., cosine: _Optional[float] = ..., top1_agreement: _Optional[float] = ...) -> None: ...

class ParentVersion(_message.Message):
    __slots__ = ["model", "transform", "transform_params", "version"]
    class TransformParamsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_PARAMS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    transform: str
    transform_params: _containers.ScalarMap[str, str]
    version: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., transform: _Optional[str] = ..., transform_params: _Optional[_Mapping[str, str]] = ...) -> None: ...

class QueuePolicy(_message.Message):
    __slots__ = ["allow_timeout_override", "delay_on_timeout", "max_queue_size", "timeout_us"]
    ALLOW_TIMEOUT_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    DELAY_ON_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_US_FIELD_NUMBER: _ClassVar[int]
    allow_timeout_override: bool
    delay_on_timeout: bool
    max_queue_size: int
    timeout_us: int
    def __init__(self, max_queue_size: _Optional[int] = ..., timeout_us: _Optional[int] = ..., delay_on_timeout: bool = ..., allow_timeout_override: bool = ...) -> None: ...

class RewrapDataKeysRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class RewrapDataKeysResponse(_message.Message):
    __slots__ = ["done", "key_name", "key_version", "rewrapped", "skipped", "total"]
    DONE_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    REWRAPPED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    done: int
    key_name: str
    key_version: int
    rewrapped: int
    skipped: int
    total: int
    def __init__(self, done: _Optional[int] = ..., total: _Optional[int] = ..., rewrapped: _Optional[int] = ..., skipped: _Optional[int] = ..., key_name: _Optional[str] = ..., key_version: _Optional[int] = ...) -> None: ...

class SequenceStateMapping(_message.Message):
    __slots__ = ["input_name", "output_name"]
    INPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    input_name: str
    output_name: str
    def __init__(self, input_name: _Optional[str] = ..., output_name: _Optional[str] = ...) -> None: ...

class SetAliasRequest(_message.Message):
    __slots__ = ["alias", "model", "version"]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    alias: str
    model: str
    version: int
    def __init__(self, model: _Optional[str] = ..., alias: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class SetAliasResponse(_message.Message):
    __slots__ = ["model", "previous_version"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    model: Model
    previous_version: int
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ..., previous_version: _Optional[int] = ...) -> None: ...

class TensorSignature(_message.Message):
    __slots__ = ["datatype", "dim_names", "name", "shape"]
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    DIM_NAMES_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    datatype: str
    dim_names: _containers.RepeatedScalarFieldContainer[str]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., datatype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dim_names: _Optional[_Iterable[str]] = ...) -> None: ...

class TrafficTarget(_message.Message):
    __slots__ = ["model_ref", "percent"]
    MODEL_REF_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    model_ref: str
    percent: int
    def __init__(self, model_ref: _Optional[str] = ..., percent: _Optional[int] = ...) -> None: ...

class UpdateDeploymentRequest(_message.Message):
    __slots__ = ["expected_generation", "name", "spec"]
    EXPECTED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    expected_generation: int
    name: str
    spec: DeploymentSpec
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[_Union[DeploymentSpec, _Mapping]] = ..., expected_generation: _Optional[int] = ...) -> None: ...

class UpdateDeploymentResponse(_message.Message):
    __slots__ = ["deployment"]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class UpdateModelRequest(_message.Message):
    __slots__ = ["description", "name", "remove_tags", "set_tags"]
    class SetTagsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REMOVE_TAGS_FIELD_NUMBER: _ClassVar[int]
    SET_TAGS_FIELD_NUMBER: _ClassVar[int]
    description: str
    name: str
    remove_tags: _containers.RepeatedScalarFieldContainer[str]
    set_tags: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., set_tags: _Optional[_Mapping[str, str]] = ..., remove_tags: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateModelResponse(_message.Message):
    __slots__ = ["model"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class UpdateVersionRequest(_message.Message):
    __slots__ = ["description", "ref", "remove_tags", "set_tags"]
    class SetTagsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    REMOVE_TAGS_FIELD_NUMBER: _ClassVar[int]
    SET_TAGS_FIELD_NUMBER: _ClassVar[int]
    description: str
    ref: str
    remove_tags: _containers.RepeatedScalarFieldContainer[str]
    set_tags: _containers.ScalarMap[str, str]
    def __init__(self, ref: _Optional[str] = ..., description: _Optional[str] = ..., set_tags: _Optional[_Mapping[str, str]] = ..., remove_tags: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateVersionResponse(_message.Message):
    __slots__ = ["version"]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: ModelVersion
    def __init__(self, version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ["create_model", "description", "expected_sha256", "expected_size_bytes", "lineage", "model", "tags"]
    class TagsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CREATE_MODEL_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SHA256_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    create_model: bool
    description: str
    expected_sha256: str
    expected_size_bytes: int
    lineage: Lineage
    model: str
    tags: _containers.ScalarMap[str, str]
    def __init__(self, model: _Optional[str] = ..., description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., expected_sha256: _Optional[str] = ..., expected_size_bytes: _Optional[int] = ..., lineage: _Optional[_Union[Lineage, _Mapping]] = ..., create_model: bool = ...) -> None: ...

class UploadVersionRequest(_message.Message):
    __slots__ = ["chunk", "header"]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    header: UploadHeader
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadVersionResponse(_message.Message):
    __slots__ = ["version"]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: ModelVersion
    def __init__(self, version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class WatchDeploymentsRequest(_message.Message):
    __slots__ = ["all_tenants"]
    ALL_TENANTS_FIELD_NUMBER: _ClassVar[int]
    all_tenants: bool
    def __init__(self, all_tenants: bool = ...) -> None: ...

class WatchDeploymentsResponse(_message.Message):
    __slots__ = ["change", "snapshot"]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    change: DeploymentChange
    snapshot: DeploymentSnapshot
    def __init__(self, snapshot: _Optional[_Union[DeploymentSnapshot, _Mapping]] = ..., change: _Optional[_Union[DeploymentChange, _Mapping]] = ...) -> None: ...

class VersionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class DeploymentChangeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class CompressionMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class CalibrationFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class AuditOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
