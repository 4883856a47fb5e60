from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

AUDIT_OUTCOME_ERROR: AuditOutcome
AUDIT_OUTCOME_OK: AuditOutcome
AUDIT_OUTCOME_UNSPECIFIED: AuditOutcome
DESCRIPTOR: _descriptor.FileDescriptor
KEY_TYPE_AES256_GCM: KeyType
KEY_TYPE_CHACHA20_POLY1305: KeyType
KEY_TYPE_ED25519: KeyType
KEY_TYPE_FERNET: KeyType
KEY_TYPE_HMAC_SHA256: KeyType
KEY_TYPE_UNSPECIFIED: KeyType

class AuditEvent(_message.Message):
    __slots__ = ["error_code", "id", "key_name", "key_version", "operation", "outcome", "subject", "tenant", "time", "trace_id"]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    error_code: str
    id: str
    key_name: str
    key_version: int
    operation: str
    outcome: AuditOutcome
    subject: str
    tenant: str
    time: _timestamp_pb2.Timestamp
    trace_id: str
    def __init__(self, id: _Optional[str] = ..., tenant: _Optional[str] = ..., subject: _Optional[str] = ..., key_name: _Optional[str] = ..., key_version: _Optional[int] = ..., operation: _Optional[str] = ..., outcome: _Optional[_Union[AuditOutcome, str]] = ..., error_code: _Optional[str] = ..., trace_id: _Optional[str] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BatchDecryptRequest(_message.Message):
    __slots__ = ["items", "key_name"]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[CiphertextItem]
    key_name: str
    def __init__(self, key_name: _Optional[str] = ..., items: _Optional[_Iterable[_Union[CiphertextItem, _Mapping]]] = ...) -> None: ...

class BatchDecryptResponse(_message.Message):
    __slots__ = ["results"]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PlaintextResult]
    def __init__(self, results: _Optional[_Iterable[_Union[PlaintextResult, _Mapping]]] = ...) -> None: ...

class BatchEncryptRequest(_message.Message):
    __slots__ = ["items", "key_name"]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[PlaintextItem]
    key_name: str
    def __init__(self, key_name: _Optional[str] = ..., items: _Optional[_Iterable[_Union[PlaintextItem, _Mapping]]] = ...) -> None: ...

class BatchEncryptResponse(_message.Message):
    __slots__ = ["results"]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CiphertextResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CiphertextResult, _Mapping]]] = ...) -> None: ...

class BatchItemError(_message.Message):
    __slots__ = ["code", "message"]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class BatchRewrapRequest(_message.Message):
    __slots__ = ["items", "key_name"]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[CiphertextItem]
    key_name: str
    def __init__(self, key_name: _Optional[str] = ..., items: _Optional[_Iterable[_Union[CiphertextItem, _Mapping]]] = ...) -> None: ...

class BatchRewrapResponse(_message.Message):
    __slots__ = ["results"]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CiphertextResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CiphertextResult, _Mapping]]] = ...) -> None: ...

class CiphertextItem(_message.Message):
    __slots__ = ["associated_data", "ciphertext"]
    ASSOCIATED_DATA_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    associated_data: bytes
    ciphertext: bytes
    def __init__(self, ciphertext: _Optional[bytes] = ..., associated_data: _Optional[bytes] = ...) -> None: ...

class CiphertextResult(_message.Message):
    __slots__ = ["ciphertext", "error", "key_version"]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ciphertext: bytes
    error: BatchItemError
    key_version: int
    def __init__(self, ciphertext: _Optional[bytes] = ..., key_version: _Optional[int] = ..., error: _Optional[_Union[BatchItemError, _Mapping]] = ...) -> None: ...

class CreateKeyRequest(_message.Message):
    __slots__ = ["config", "name", "type"]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    config: KeyConfigUpdate
    name: str
    type: KeyType
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[KeyType, str]] = ..., config: _Optional[_Union[KeyConfigUpdate, _Mapping]] = ...) -> None: ...

class CreateKeyResponse(_message.Message):
    __slots__ = ["key"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: Key
    def __init__(self, key: _Optional[_Union[Key, _Mapping]] = ...) -> None: ...

class DecryptRequest(_message.Message):
    __slots__ = ["associated_data", "ciphertext", "key_name", "ttl_seconds"]
    ASSOCIATED_DATA_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    associated_data: bytes
    ciphertext: bytes
    key_name: str
    ttl_seconds: int
    def __init__(self, key_name: _Optional[str] = ..., ciphertext: _Optional[bytes] = ..., associated_data: _Optional[bytes] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class DecryptResponse(_message.Message):
    __slots__ = ["key_version", "plaintext"]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    key_version: int
    plaintext: bytes
    def __init__(self, plaintext: _Optional[bytes] = ..., key_version: _Optional[int] = ...) -> None: ...

class DecryptStreamRequest(_message.Message):
    __slots__ = ["chunk", "header"]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    header: StreamHeader
    def __init__(self, header: _Optional[_Union[StreamHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class DecryptStreamResponse(_message.Message):
    __slots__ = ["chunk"]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class DeleteKeyRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteKeyResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class EncryptRequest(_message.Message):
    __slots__ = ["associated_data", "key_name", "plaintext"]
    ASSOCIATED_DATA_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    associated_data: bytes
    key_name: str
    plaintext: bytes
    def __init__(self, key_name: _Optional[str] = ..., plaintext: _Optional[bytes] = ..., associated_data: _Optional[bytes] = ...) -> None: ...

class EncryptResponse(_message.Message):
    __slots__ = ["ciphertext", "key_version"]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ciphertext: bytes
    key_version: int
    def __init__(self, ciphertext: _Optional[bytes] = ..., key_version: _Optional[int] = ...) -> None: ...

class EncryptStreamHeader(_message.Message):
    __slots__ = ["key_version"]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    key_version: int
    def __init__(self, key_version: _Optional[int] = ...) -> None: ...

class EncryptStreamRequest(_message.Message):
    __slots__ = ["chunk", "header"]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    header: StreamHeader
    def __init__(self, header: _Optional[_Union[StreamHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class EncryptStreamResponse(_message.Message):
    __slots__ = ["chunk", "header"]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    header: EncryptStreamHeader
    def __init__(self, header: _Optional[_Union[EncryptStreamHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class ExportKeyRequest(_message.Message):
    __slots__ = ["name", "version"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ExportKeyResponse(_message.Message):
    __slots__ = ["material", "name", "version"]
    MATERIAL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    material: bytes
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., material: _Optional[bytes] = ...) -> None: ...

class GenerateDataKeyRequest(_message.Message):
    __slots__ = ["associated_data", "bits", "key_name", "wrapped_only"]
    ASSOCIATED_DATA_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    WRAPPED_ONLY_FIELD_NUMBER: _ClassVar[int]
    associated_data: bytes
    bits: int
    key_name: str
    wrapped_only: bool
    def __init__(self, key_name: _Optional[str] = ..., bits: _Optional[int] = ..., wrapped_only: bool = ..., associated_data: _Optional[bytes] = ...) -> None: ...

class GenerateDataKeyResponse(_message.Message):
    __slots__ = ["key_version", "plaintext", "wrapped_key"]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    WRAPPED_KEY_FIELD_NUMBER: _ClassVar[int]
    key_version: int
    plaintext: bytes
    wrapped_key: bytes
    def __init__(self, plaintext: _Optional[bytes] = ..., wrapped_key: _Optional[bytes] = ..., key_version: _Optional[int] = ...) -> None: ...

class GetJwksRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class GetJwksResponse(_message.Message):
    __slots__ = ["keys"]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[Jwk]
    def __init__(self, keys: _Optional[_Iterable[_Union[Jwk, _Mapping]]] = ...) -> None: ...

class GetKeyRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetKeyResponse(_message.Message):
    __slots__ = ["key"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: Key
    def __init__(self, key: _Optional[_Union[Key, _Mapping]] = ...) -> None: ...

class GetRevocationsRequest(_message.Message):
    __slots__ = ["known_version"]
    KNOWN_VERSION_FIELD_NUMBER: _ClassVar[int]
    known_version: int
    def __init__(self, known_version: _Optional[int] = ...) -> None: ...

class GetRevocationsResponse(_message.Message):
    __slots__ = ["revocations", "unchanged", "version"]
    REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    revocations: _containers.RepeatedCompositeFieldContainer[Revocation]
    unchanged: bool
    version: int
    def __init__(self, version: _Optional[int] = ..., unchanged: bool = ..., revocations: _Optional[_Iterable[_Union[Revocation, _Mapping]]] = ...) -> None: ...

class ImportKeyRequest(_message.Message):
    __slots__ = ["config", "material", "name", "type"]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    MATERIAL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    config: KeyConfigUpdate
    material: bytes
    name: str
    type: KeyType
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[KeyType, str]] = ..., material: _Optional[bytes] = ..., config: _Optional[_Union[KeyConfigUpdate, _Mapping]] = ...) -> None: ...

class ImportKeyResponse(_message.Message):
    __slots__ = ["key"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: Key
    def __init__(self, key: _Optional[_Union[Key, _Mapping]] = ...) -> None: ...

class IssueTokenRequest(_message.Message):
    __slots__ = ["scopes", "subject", "tenant", "ttl_seconds"]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    scopes: _containers.RepeatedScalarFieldContainer[str]
    subject: str
    tenant: str
    ttl_seconds: int
    def __init__(self, tenant: _Optional[str] = ..., subject: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class IssueTokenResponse(_message.Message):
    __slots__ = ["expire_time", "key_id", "token"]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    expire_time: _timestamp_pb2.Timestamp
    key_id: str
    token: str
    def __init__(self, token: _Optional[str] = ..., expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., key_id: _Optional[str] = ...) -> None: ...

class Jwk(_message.Message):
    __slots__ = ["alg", "crv", "kid", "kty", "use", "x"]
    ALG_FIELD_NUMBER: _ClassVar[int]
    CRV_FIELD_NUMBER: _ClassVar[int]
    KID_FIELD_NUMBER: _ClassVar[int]
    KTY_FIELD_NUMBER: _ClassVar[int]
    USE_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    alg: str
    crv: str
    kid: str
    kty: str
    use: str
    x: str
    def __init__(self, kty: _Optional[str] = ..., crv: _Optional[str] = ..., x: _Optional[str] = ..., kid: _Optional[str] = ..., alg: _Optional[str] = ..., use: _Optional[str] = ...) -> None: ...

class Key(_message.Message):
    __slots__ = ["config", "create_time", "latest_version", "name", "tenant", "type", "update_time", "versions"]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    config: KeyConfig
    create_time: _timestamp_pb2.Timestamp
    latest_version: int
    name: str
    tenant: str
    type: KeyType
    update_time: _timestamp_pb2.Timestamp
    versions: _containers.RepeatedCompositeFieldContainer[KeyVersion]
    def __init__(self, name: _Optional[str] = ..., tenant: _Optional[str] = ..., type: _Optional[_Union[KeyType, str]] = ..., latest_version: _Optional[int] = ..., versions: _Optional[_Iterable[_Union[KeyVersion, _Mapping]]] = ..., config: _Optional[_Union[KeyConfig, _Mapping]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class KeyConfig(_message.Message):
    __slots__ = ["auto_rotate_period_seconds", "deletion_allowed", "exportable", "min_decryption_version", "min_encryption_version"]
    AUTO_ROTATE_PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DELETION_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    EXPORTABLE_FIELD_NUMBER: _ClassVar[int]
    MIN_DECRYPTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    MIN_ENCRYPTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    auto_rotate_period_seconds: int
    deletion_allowed: bool
    exportable: bool
    min_decryption_version: int
    min_encryption_version: int
    def __init__(self, min_decryption_version: _Optional[int] = ..., min_encryption_version: _Optional[int] = ..., deletion_allowed: bool = ..., exportable: bool = ..., auto_rotate_period_seconds: _Optional[int] = ...) -> None: ...

class KeyConfigUpdate(_message.Message):
    __slots__ = ["auto_rotate_period_seconds", "deletion_allowed", "exportable", "min_decryption_version", "min_encryption_version"]
    AUTO_ROTATE_PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DELETION_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    EXPORTABLE_FIELD_NUMBER: _ClassVar[int]
    MIN_DECRYPTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    MIN_ENCRYPTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    auto_rotate_period_seconds: int
    deletion_allowed: bool
    exportable: bool
    min_decryption_version: int
    min_encryption_version: int
    def __init__(self, min_decryption_version: _Optional[int] = ..., min_encryption_version: _Optional[int] = ..., deletion_allowed: bool = ..., exportable: bool = ..., auto_rotate_period_seconds: _Optional[int] = ...) -> None: ...

class KeyVersion(_message.Message):
    __slots__ = ["create_time", "public_key", "version"]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    create_time: _timestamp_pb2.Timestamp
    public_key: bytes
    version: int
    def __init__(self, version: _Optional[int] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., public_key: _Optional[bytes] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ["key_name", "page_size", "page_token"]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    key_name: str
    page_size: int
    page_token: str
    def __init__(self, key_name: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ["events", "next_page_token"]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ["page_size", "page_token"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ["keys", "next_page_token"]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[Key]
    next_page_token: str
    def __init__(self, keys: _Optional[_Iterable[_Union[Key, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PlaintextItem(_message.Message):
    __slots__ = ["associated_data", "plaintext"]
    ASSOCIATED_DATA_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    associated_data: bytes
    plaintext: bytes
    def __init__(self, plaintext: _Optional[bytes] = ..., associated_data: _Optional[bytes] = ...) -> None: ...

class PlaintextResult(_message.Message):
    __slots__ = ["error", "key_version", "plaintext"]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    error: BatchItemError
    key_version: int
    plaintext: bytes
    def __init__(self, plaintext: _Optional[bytes] = ..., key_version: _Optional[int] = ..., error: _Optional[_Union[BatchItemError, _Mapping]] = ...) -> None: ...

class Revocation(_message.Message):
    __slots__ = ["expire_time", "issued_before", "jti", "revoke_time", "subject_digest"]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    ISSUED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    JTI_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TIME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    expire_time: _timestamp_pb2.Timestamp
    issued_before: _timestamp_pb2.Timestamp
    jti: str
    revoke_time: _timestamp_pb2.Timestamp
    subject_digest: str
    def __init__(self, jti: _Optional[str] = ..., subject_digest: _Optional[str] = ..., issued_before: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., revoke_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ["issued_before", "jti", "subject", "tenant", "token"]
    ISSUED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    JTI_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    issued_before: _timestamp_pb2.Timestamp
    jti: str
    subject: str
    tenant: str
    token: str
    def __init__(self, token: _Optional[str] = ..., jti: _Optional[str] = ..., subject: _Optional[str] = ..., tenant: _Optional[str] = ..., issued_before: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ["revocation"]
    REVOCATION_FIELD_NUMBER: _ClassVar[int]
    revocation: Revocation
    def __init__(self, revocation: _Optional[_Union[Revocation, _Mapping]] = ...) -> None: ...

class RewrapRequest(_message.Message):
    __slots__ = ["associated_data", "ciphertext", "key_name"]
    ASSOCIATED_DATA_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    associated_data: bytes
    ciphertext: bytes
    key_name: str
    def __init__(self, key_name: _Optional[str] = ..., ciphertext: _Optional[bytes] = ..., associated_data: _Optional[bytes] = ...) -> None: ...

class RewrapResponse(_message.Message):
    __slots__ = ["ciphertext", "key_version"]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ciphertext: bytes
    key_version: int
    def __init__(self, ciphertext: _Optional[bytes] = ..., key_version: _Optional[int] = ...) -> None: ...

class RotateKeyRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RotateKeyResponse(_message.Message):
    __slots__ = ["key"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: Key
    def __init__(self, key: _Optional[_Union[Key, _Mapping]] = ...) -> None: ...

class RotateSigningKeyRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class RotateSigningKeyResponse(_message.Message):
    __slots__ = ["key_id", "previous_key_id", "previous_key_retire_time"]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_KEY_RETIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    previous_key_id: str
    previous_key_retire_time: _timestamp_pb2.Timestamp
    def __init__(self, key_id: _Optional[str] = ..., previous_key_id: _Optional[str] = ..., previous_key_retire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SignRequest(_message.Message):
    __slots__ = ["data", "key_name", "key_version"]
    DATA_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    key_name: str
    key_version: int
    def __init__(self, key_name: _Optional[str] = ..., data: _Optional[bytes] = ..., key_version: _Optional[int] = ...) -> None: ...

class SignResponse(_message.Message):
    __slots__ = ["key_version", "signature"]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    key_version: int
    signature: bytes
    def __init__(self, signature: _Optional[bytes] = ..., key_version: _Optional[int] = ...) -> None: ...

class StreamHeader(_message.Message):
    __slots__ = ["associated_data", "key_name"]
    ASSOCIATED_DATA_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    associated_data: bytes
    key_name: str
    def __init__(self, key_name: _Optional[str] = ..., associated_data: _Optional[bytes] = ...) -> None: ...

class UnwrapDataKeyRequest(_message.Message):
    __slots__ = ["associated_data", "key_name", "wrapped_key"]
    ASSOCIATED_DATA_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    WRAPPED_KEY_FIELD_NUMBER: _ClassVar[int]
    associated_data: bytes
    key_name: str
    wrapped_key: bytes
    def __init__(self, key_name: _Optional[str] = ..., wrapped_key: _Optional[bytes] = ..., associated_data: _Optional[bytes] = ...) -> None: ...

class UnwrapDataKeyResponse(_message.Message):
    __slots__ = ["plaintext"]
    PLAINTEXT_FIELD_NUMBER: _ClassVar[int]
    plaintext: bytes
    def __init__(self, plaintext: _Optional[bytes] = ...) -> None: ...

class UpdateKeyConfigRequest(_message.Message):
    __slots__ = ["config", "name"]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    config: KeyConfigUpdate
    name: str
    def __init__(self, name: _Optional[str] = ..., config: _Optional[_Union[KeyConfigUpdate, _Mapping]] = ...) -> None: ...

class UpdateKeyConfigResponse(_message.Message):
    __slots__ = ["key"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: Key
    def __init__(self, key: _Optional[_Union[Key, _Mapping]] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ["data", "key_name", "key_version", "signature"]
    DATA_FIELD_NUMBER: _ClassVar[int]
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    key_name: str
    key_version: int
    signature: bytes
    def __init__(self, key_name: _Optional[str] = ..., data: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., key_version: _Optional[int] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ["valid"]
    VALID_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    def __init__(self, valid: bool = ...) -> None: ...

class KeyType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class AuditOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
