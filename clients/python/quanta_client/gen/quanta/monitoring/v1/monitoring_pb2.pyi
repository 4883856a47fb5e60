from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

ALERT_COMPARISON_ABOVE: AlertComparison
ALERT_COMPARISON_BELOW: AlertComparison
ALERT_COMPARISON_UNSPECIFIED: AlertComparison
ALERT_METRIC_DRIFT_PSI: AlertMetric
ALERT_METRIC_ERROR_RATE: AlertMetric
ALERT_METRIC_P99_LATENCY_US: AlertMetric
ALERT_METRIC_THROUGHPUT_RPS: AlertMetric
ALERT_METRIC_UNSPECIFIED: AlertMetric
ALERT_STATE_FIRING: AlertState
ALERT_STATE_PENDING: AlertState
ALERT_STATE_RESOLVED: AlertState
ALERT_STATE_UNSPECIFIED: AlertState
AUDIT_OUTCOME_ERROR: AuditOutcome
AUDIT_OUTCOME_OK: AuditOutcome
AUDIT_OUTCOME_UNSPECIFIED: AuditOutcome
DESCRIPTOR: _descriptor.FileDescriptor
SERVICE_HEALTH_STATUS_NOT_SERVING: ServiceHealthStatus
SERVICE_HEALTH_STATUS_SERVING: ServiceHealthStatus
SERVICE_HEALTH_STATUS_UNKNOWN: ServiceHealthStatus
SERVICE_HEALTH_STATUS_UNREACHABLE: ServiceHealthStatus
SERVICE_HEALTH_STATUS_UNSPECIFIED: ServiceHealthStatus
TOP_MODELS_ORDER_ERROR_RATE: TopModelsOrder
TOP_MODELS_ORDER_P99_LATENCY: TopModelsOrder
TOP_MODELS_ORDER_TRAFFIC: TopModelsOrder
TOP_MODELS_ORDER_UNSPECIFIED: TopModelsOrder
WEBHOOK_DELIVERY_STATE_DELIVERED: WebhookDeliveryState
WEBHOOK_DELIVERY_STATE_FAILED: WebhookDeliveryState
WEBHOOK_DELIVERY_STATE_PENDING: WebhookDeliveryState
WEBHOOK_DELIVERY_STATE_RETRYING: WebhookDeliveryState
WEBHOOK_DELIVERY_STATE_UNSPECIFIED: WebhookDeliveryState

class Alert(_message.Message):
    __slots__ = ["deliveries", "firing_time", "input", "message", "model", "pending_time", "resolved_time", "rule_name", "state", "threshold", "value", "version"]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    FIRING_TIME_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PENDING_TIME_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_TIME_FIELD_NUMBER: _ClassVar[int]
    RULE_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[WebhookDelivery]
    firing_time: _timestamp_pb2.Timestamp
    input: str
    message: str
    model: str
    pending_time: _timestamp_pb2.Timestamp
    resolved_time: _timestamp_pb2.Timestamp
    rule_name: str
    state: AlertState
    threshold: float
    value: float
    version: str
    def __init__(self, rule_name: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., state: _Optional[_Union[AlertState, str]] = ..., value: _Optional[float] = ..., threshold: _Optional[float] = ..., message: _Optional[str] = ..., pending_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., firing_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., deliveries: _Optional[_Iterable[_Union[WebhookDelivery, _Mapping]]] = ..., input: _Optional[str] = ...) -> None: ...

class AlertRule(_message.Message):
    __slots__ = ["comparison", "create_time", "description", "for_duration", "input", "metric", "model", "name", "threshold", "update_time", "version", "webhooks", "window"]
    COMPARISON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FOR_DURATION_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WEBHOOKS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    comparison: AlertComparison
    create_time: _timestamp_pb2.Timestamp
    description: str
    for_duration: _duration_pb2.Duration
    input: str
    metric: AlertMetric
    model: str
    name: str
    threshold: float
    update_time: _timestamp_pb2.Timestamp
    version: str
    webhooks: _containers.RepeatedCompositeFieldContainer[Webhook]
    window: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., metric: _Optional[_Union[AlertMetric, str]] = ..., comparison: _Optional[_Union[AlertComparison, str]] = ..., threshold: _Optional[float] = ..., window: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., for_duration: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., description: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., input: _Optional[str] = ..., webhooks: _Optional[_Iterable[_Union[Webhook, _Mapping]]] = ...) -> None: ...

class AlertSnapshot(_message.Message):
    __slots__ = ["alerts"]
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ...) -> None: ...

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

class BatchSizeCount(_message.Message):
    __slots__ = ["batch_size", "count"]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    batch_size: int
    count: int
    def __init__(self, batch_size: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class CreateAlertRuleRequest(_message.Message):
    __slots__ = ["rule"]
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: AlertRule
    def __init__(self, rule: _Optional[_Union[AlertRule, _Mapping]] = ...) -> None: ...

class CreateAlertRuleResponse(_message.Message):
    __slots__ = ["rule"]
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: AlertRule
    def __init__(self, rule: _Optional[_Union[AlertRule, _Mapping]] = ...) -> None: ...

class DeleteAlertRuleRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteAlertRuleResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class DeleteDriftBaselineRequest(_message.Message):
    __slots__ = ["model", "version"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class DeleteDriftBaselineResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class DriftBaseline(_message.Message):
    __slots__ = ["create_time", "end_time", "inputs", "model", "start_time", "version"]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    create_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    inputs: _containers.RepeatedCompositeFieldContainer[InputSummary]
    model: str
    start_time: _timestamp_pb2.Timestamp
    version: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[InputSummary, _Mapping]]] = ...) -> None: ...

class DriftBaselineInputs(_message.Message):
    __slots__ = ["summaries"]
    SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    summaries: _containers.RepeatedCompositeFieldContainer[InputSummary]
    def __init__(self, summaries: _Optional[_Iterable[_Union[InputSummary, _Mapping]]] = ...) -> None: ...

class GetAlertRuleRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetAlertRuleResponse(_message.Message):
    __slots__ = ["rule"]
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: AlertRule
    def __init__(self, rule: _Optional[_Union[AlertRule, _Mapping]] = ...) -> None: ...

class GetDriftBaselineRequest(_message.Message):
    __slots__ = ["model", "version"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class GetDriftBaselineResponse(_message.Message):
    __slots__ = ["baseline"]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    baseline: DriftBaseline
    def __init__(self, baseline: _Optional[_Union[DriftBaseline, _Mapping]] = ...) -> None: ...

class GetDriftRequest(_message.Message):
    __slots__ = ["model", "range", "version", "window"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    model: str
    range: TimeRange
    version: str
    window: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., window: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., range: _Optional[_Union[TimeRange, _Mapping]] = ...) -> None: ...

class GetDriftResponse(_message.Message):
    __slots__ = ["baseline_time", "end_time", "inputs", "max_psi", "model", "start_time", "version"]
    BASELINE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    MAX_PSI_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    baseline_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    inputs: _containers.RepeatedCompositeFieldContainer[InputDrift]
    max_psi: float
    model: str
    start_time: _timestamp_pb2.Timestamp
    version: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[InputDrift, _Mapping]]] = ..., max_psi: _Optional[float] = ..., baseline_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetHealthBoardRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class GetHealthBoardResponse(_message.Message):
    __slots__ = ["check_interval", "services"]
    CHECK_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    check_interval: _duration_pb2.Duration
    services: _containers.RepeatedCompositeFieldContainer[ServiceHealth]
    def __init__(self, services: _Optional[_Iterable[_Union[ServiceHealth, _Mapping]]] = ..., check_interval: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetModelStatsRequest(_message.Message):
    __slots__ = ["by_version", "model", "range", "version", "window"]
    BY_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    by_version: bool
    model: str
    range: TimeRange
    version: str
    window: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., window: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., range: _Optional[_Union[TimeRange, _Mapping]] = ..., by_version: bool = ...) -> None: ...

class GetModelStatsResponse(_message.Message):
    __slots__ = ["stats", "versions"]
    STATS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    stats: ModelStats
    versions: _containers.RepeatedCompositeFieldContainer[ModelStats]
    def __init__(self, stats: _Optional[_Union[ModelStats, _Mapping]] = ..., versions: _Optional[_Iterable[_Union[ModelStats, _Mapping]]] = ...) -> None: ...

class GetTimeSeriesRequest(_message.Message):
    __slots__ = ["model", "range", "step", "version", "window"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    model: str
    range: TimeRange
    step: _duration_pb2.Duration
    version: str
    window: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., window: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., range: _Optional[_Union[TimeRange, _Mapping]] = ..., step: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetTimeSeriesResponse(_message.Message):
    __slots__ = ["model", "points", "step", "version"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    points: _containers.RepeatedCompositeFieldContainer[TimeSeriesPoint]
    step: _duration_pb2.Duration
    version: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., step: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., points: _Optional[_Iterable[_Union[TimeSeriesPoint, _Mapping]]] = ...) -> None: ...

class HistogramBin(_message.Message):
    __slots__ = ["count", "index"]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    count: int
    index: int
    def __init__(self, index: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class InferenceRecord(_message.Message):
    __slots__ = ["batch_size", "bytes_in", "bytes_out", "cache_hit", "cache_miss", "compute_us", "deployment", "model", "queue_us", "request_id", "route", "shadow", "span_id", "status_code", "tenant", "time", "total_us", "trace_id", "version"]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    CACHE_MISS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_US_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUEUE_US_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_US_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    batch_size: int
    bytes_in: int
    bytes_out: int
    cache_hit: bool
    cache_miss: bool
    compute_us: int
    deployment: str
    model: str
    queue_us: int
    request_id: str
    route: str
    shadow: ShadowComparison
    span_id: str
    status_code: int
    tenant: str
    time: _timestamp_pb2.Timestamp
    total_us: int
    trace_id: str
    version: str
    def __init__(self, tenant: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., deployment: _Optional[str] = ..., request_id: _Optional[str] = ..., trace_id: _Optional[str] = ..., status_code: _Optional[int] = ..., queue_us: _Optional[int] = ..., compute_us: _Optional[int] = ..., total_us: _Optional[int] = ..., batch_size: _Optional[int] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., span_id: _Optional[str] = ..., route: _Optional[str] = ..., cache_hit: bool = ..., cache_miss: bool = ..., shadow: _Optional[_Union[ShadowComparison, _Mapping]] = ...) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ["input_summaries", "records"]
    INPUT_SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    input_summaries: _containers.RepeatedCompositeFieldContainer[InputSummary]
    records: _containers.RepeatedCompositeFieldContainer[InferenceRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[InferenceRecord, _Mapping]]] = ..., input_summaries: _Optional[_Iterable[_Union[InputSummary, _Mapping]]] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ["accepted", "rejected", "rejections", "summaries_accepted", "summaries_rejected"]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    SUMMARIES_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    SUMMARIES_REJECTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    rejected: int
    rejections: _containers.RepeatedCompositeFieldContainer[RejectedRecord]
    summaries_accepted: int
    summaries_rejected: int
    def __init__(self, accepted: _Optional[int] = ..., rejected: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[RejectedRecord, _Mapping]]] = ..., summaries_accepted: _Optional[int] = ..., summaries_rejected: _Optional[int] = ...) -> None: ...

class InputDrift(_message.Message):
    __slots__ = ["baseline_mean", "baseline_stddev", "count", "input", "mean", "psi", "stddev"]
    BASELINE_MEAN_FIELD_NUMBER: _ClassVar[int]
    BASELINE_STDDEV_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    PSI_FIELD_NUMBER: _ClassVar[int]
    STDDEV_FIELD_NUMBER: _ClassVar[int]
    baseline_mean: float
    baseline_stddev: float
    count: int
    input: str
    mean: float
    psi: float
    stddev: float
    def __init__(self, input: _Optional[str] = ..., psi: _Optional[float] = ..., count: _Optional[int] = ..., mean: _Optional[float] = ..., stddev: _Optional[float] = ..., baseline_mean: _Optional[float] = ..., baseline_stddev: _Optional[float] = ...) -> None: ...

class InputSummary(_message.Message):
    __slots__ = ["bins", "count", "deployment", "input", "max", "min", "model", "nan_count", "sum", "sum_squares", "tenant", "time", "version"]
    BINS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NAN_COUNT_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    SUM_SQUARES_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    bins: _containers.RepeatedCompositeFieldContainer[HistogramBin]
    count: int
    deployment: str
    input: str
    max: float
    min: float
    model: str
    nan_count: int
    sum: float
    sum_squares: float
    tenant: str
    time: _timestamp_pb2.Timestamp
    version: str
    def __init__(self, tenant: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., deployment: _Optional[str] = ..., input: _Optional[str] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., count: _Optional[int] = ..., sum: _Optional[float] = ..., sum_squares: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., bins: _Optional[_Iterable[_Union[HistogramBin, _Mapping]]] = ..., nan_count: _Optional[int] = ...) -> None: ...

class LatencySummary(_message.Message):
    __slots__ = ["max_us", "mean_us", "p50_us", "p95_us", "p99_us"]
    MAX_US_FIELD_NUMBER: _ClassVar[int]
    MEAN_US_FIELD_NUMBER: _ClassVar[int]
    P50_US_FIELD_NUMBER: _ClassVar[int]
    P95_US_FIELD_NUMBER: _ClassVar[int]
    P99_US_FIELD_NUMBER: _ClassVar[int]
    max_us: float
    mean_us: float
    p50_us: float
    p95_us: float
    p99_us: float
    def __init__(self, p50_us: _Optional[float] = ..., p95_us: _Optional[float] = ..., p99_us: _Optional[float] = ..., mean_us: _Optional[float] = ..., max_us: _Optional[float] = ...) -> None: ...

class ListAlertRulesRequest(_message.Message):
    __slots__ = ["model", "page_size", "page_token"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    model: str
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class ListAlertRulesResponse(_message.Message):
    __slots__ = ["next_page_token", "rules"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    rules: _containers.RepeatedCompositeFieldContainer[AlertRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[AlertRule, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ["page_size", "page_token", "rule_name", "states"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RULE_NAME_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    rule_name: str
    states: _containers.RepeatedScalarFieldContainer[AlertState]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., states: _Optional[_Iterable[_Union[AlertState, str]]] = ..., rule_name: _Optional[str] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ["alerts", "next_page_token"]
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    next_page_token: str
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

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

class ModelStats(_message.Message):
    __slots__ = ["batch_sizes", "bytes_in", "bytes_out", "cache_hit_count", "cache_miss_count", "compute", "count", "end_time", "error_count", "error_rate", "model", "queue", "route", "shadow", "start_time", "statuses", "throughput_rps", "total", "version"]
    BATCH_SIZES_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_COUNT_FIELD_NUMBER: _ClassVar[int]
    CACHE_MISS_COUNT_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_RPS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    batch_sizes: _containers.RepeatedCompositeFieldContainer[BatchSizeCount]
    bytes_in: int
    bytes_out: int
    cache_hit_count: int
    cache_miss_count: int
    compute: LatencySummary
    count: int
    end_time: _timestamp_pb2.Timestamp
    error_count: int
    error_rate: float
    model: str
    queue: LatencySummary
    route: str
    shadow: ShadowAgreement
    start_time: _timestamp_pb2.Timestamp
    statuses: _containers.RepeatedCompositeFieldContainer[StatusCount]
    throughput_rps: float
    total: LatencySummary
    version: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., count: _Optional[int] = ..., error_count: _Optional[int] = ..., error_rate: _Optional[float] = ..., throughput_rps: _Optional[float] = ..., statuses: _Optional[_Iterable[_Union[StatusCount, _Mapping]]] = ..., queue: _Optional[_Union[LatencySummary, _Mapping]] = ..., compute: _Optional[_Union[LatencySummary, _Mapping]] = ..., total: _Optional[_Union[LatencySummary, _Mapping]] = ..., batch_sizes: _Optional[_Iterable[_Union[BatchSizeCount, _Mapping]]] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ..., cache_hit_count: _Optional[int] = ..., cache_miss_count: _Optional[int] = ..., route: _Optional[str] = ..., shadow: _Optional[_Union[ShadowAgreement, _Mapping]] = ...) -> None: ...

class RejectedRecord(_message.Message):
    __slots__ = ["batch_index", "reason", "record_index", "request_id"]
    BATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RECORD_INDEX_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    batch_index: int
    reason: str
    record_index: int
    request_id: str
    def __init__(self, batch_index: _Optional[int] = ..., record_index: _Optional[int] = ..., request_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ServiceHealth(_message.Message):
    __slots__ = ["address", "error", "last_change_time", "last_check_time", "latency", "name", "status"]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_CHECK_TIME_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    address: str
    error: str
    last_change_time: _timestamp_pb2.Timestamp
    last_check_time: _timestamp_pb2.Timestamp
    latency: _duration_pb2.Duration
    name: str
    status: ServiceHealthStatus
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., status: _Optional[_Union[ServiceHealthStatus, str]] = ..., last_change_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., last_check_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., latency: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class SetDriftBaselineRequest(_message.Message):
    __slots__ = ["inputs", "model", "range", "version", "window"]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    inputs: DriftBaselineInputs
    model: str
    range: TimeRange
    version: str
    window: _duration_pb2.Duration
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., window: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., range: _Optional[_Union[TimeRange, _Mapping]] = ..., inputs: _Optional[_Union[DriftBaselineInputs, _Mapping]] = ...) -> None: ...

class SetDriftBaselineResponse(_message.Message):
    __slots__ = ["baseline"]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    baseline: DriftBaseline
    def __init__(self, baseline: _Optional[_Union[DriftBaseline, _Mapping]] = ...) -> None: ...

class ShadowAgreement(_message.Message):
    __slots__ = ["compared", "max_abs_error", "mean_abs_error", "top1_agreement", "top1_rows"]
    COMPARED_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_ERROR_FIELD_NUMBER: _ClassVar[int]
    MEAN_ABS_ERROR_FIELD_NUMBER: _ClassVar[int]
    TOP1_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    TOP1_ROWS_FIELD_NUMBER: _ClassVar[int]
    compared: int
    max_abs_error: float
    mean_abs_error: float
    top1_agreement: float
    top1_rows: int
    def __init__(self, compared: _Optional[int] = ..., max_abs_error: _Optional[float] = ..., mean_abs_error: _Optional[float] = ..., top1_rows: _Optional[int] = ..., top1_agreement: _Optional[float] = ...) -> None: ...

class ShadowComparison(_message.Message):
    __slots__ = ["max_abs_error", "primary_version", "top1_agreed_rows", "top1_rows"]
    MAX_ABS_ERROR_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOP1_AGREED_ROWS_FIELD_NUMBER: _ClassVar[int]
    TOP1_ROWS_FIELD_NUMBER: _ClassVar[int]
    max_abs_error: float
    primary_version: str
    top1_agreed_rows: int
    top1_rows: int
    def __init__(self, primary_version: _Optional[str] = ..., max_abs_error: _Optional[float] = ..., top1_rows: _Optional[int] = ..., top1_agreed_rows: _Optional[int] = ...) -> None: ...

class StatusCount(_message.Message):
    __slots__ = ["count", "status_code", "status_name"]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_NAME_FIELD_NUMBER: _ClassVar[int]
    count: int
    status_code: int
    status_name: str
    def __init__(self, status_code: _Optional[int] = ..., status_name: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class TimeRange(_message.Message):
    __slots__ = ["end_time", "start_time"]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    end_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    def __init__(self, start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TimeSeriesPoint(_message.Message):
    __slots__ = ["compute", "count", "error_count", "mean_batch_size", "queue", "throughput_rps", "time", "total"]
    COMPUTE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_RPS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    compute: LatencySummary
    count: int
    error_count: int
    mean_batch_size: float
    queue: LatencySummary
    throughput_rps: float
    time: _timestamp_pb2.Timestamp
    total: LatencySummary
    def __init__(self, time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., count: _Optional[int] = ..., error_count: _Optional[int] = ..., throughput_rps: _Optional[float] = ..., queue: _Optional[_Union[LatencySummary, _Mapping]] = ..., compute: _Optional[_Union[LatencySummary, _Mapping]] = ..., total: _Optional[_Union[LatencySummary, _Mapping]] = ..., mean_batch_size: _Optional[float] = ...) -> None: ...

class TopModelsRequest(_message.Message):
    __slots__ = ["by_version", "limit", "order_by", "range", "window"]
    BY_VERSION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    by_version: bool
    limit: int
    order_by: TopModelsOrder
    range: TimeRange
    window: _duration_pb2.Duration
    def __init__(self, window: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., range: _Optional[_Union[TimeRange, _Mapping]] = ..., order_by: _Optional[_Union[TopModelsOrder, str]] = ..., limit: _Optional[int] = ..., by_version: bool = ...) -> None: ...

class TopModelsResponse(_message.Message):
    __slots__ = ["models"]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelStats]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelStats, _Mapping]]] = ...) -> None: ...

class UpdateAlertRuleRequest(_message.Message):
    __slots__ = ["rule"]
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: AlertRule
    def __init__(self, rule: _Optional[_Union[AlertRule, _Mapping]] = ...) -> None: ...

class UpdateAlertRuleResponse(_message.Message):
    __slots__ = ["rule"]
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: AlertRule
    def __init__(self, rule: _Optional[_Union[AlertRule, _Mapping]] = ...) -> None: ...

class WatchAlertsRequest(_message.Message):
    __slots__ = ["rule_name"]
    RULE_NAME_FIELD_NUMBER: _ClassVar[int]
    rule_name: str
    def __init__(self, rule_name: _Optional[str] = ...) -> None: ...

class WatchAlertsResponse(_message.Message):
    __slots__ = ["change", "snapshot"]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    change: Alert
    snapshot: AlertSnapshot
    def __init__(self, snapshot: _Optional[_Union[AlertSnapshot, _Mapping]] = ..., change: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...

class Webhook(_message.Message):
    __slots__ = ["hmac_key", "skip_resolved", "url"]
    HMAC_KEY_FIELD_NUMBER: _ClassVar[int]
    SKIP_RESOLVED_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    hmac_key: str
    skip_resolved: bool
    url: str
    def __init__(self, url: _Optional[str] = ..., hmac_key: _Optional[str] = ..., skip_resolved: bool = ...) -> None: ...

class WebhookDelivery(_message.Message):
    __slots__ = ["attempts", "delivered_time", "last_attempt_time", "last_error", "last_http_status", "next_attempt_time", "state", "status", "url"]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    delivered_time: _timestamp_pb2.Timestamp
    last_attempt_time: _timestamp_pb2.Timestamp
    last_error: str
    last_http_status: int
    next_attempt_time: _timestamp_pb2.Timestamp
    state: WebhookDeliveryState
    status: str
    url: str
    def __init__(self, url: _Optional[str] = ..., status: _Optional[str] = ..., state: _Optional[_Union[WebhookDeliveryState, str]] = ..., attempts: _Optional[int] = ..., last_http_status: _Optional[int] = ..., last_error: _Optional[str] = ..., last_attempt_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., delivered_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TopModelsOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class AlertMetric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class AlertComparison(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class WebhookDeliveryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class AlertState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ServiceHealthStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class AuditOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
