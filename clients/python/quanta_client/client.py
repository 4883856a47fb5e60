"""``Client``: Quanta's four services behind a few methods that take and return numpy arrays and bytes."""

from __future__ import annotations

import hashlib
import os
import re
import time
from typing import (
    TYPE_CHECKING,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

import grpc
import numpy as np

from . import settings as _settings
from ._auth import BearerInterceptor
from .errors import QuantaError
from .gen.inference import grpc_service_pb2 as inference_pb
from .gen.inference import grpc_service_pb2_grpc as inference_grpc
from .gen.quanta.crypto.v1 import crypto_pb2 as crypto_pb
from .gen.quanta.crypto.v1 import crypto_pb2_grpc as crypto_grpc
from .gen.quanta.monitoring.v1 import monitoring_pb2 as monitoring_pb
from .gen.quanta.monitoring.v1 import monitoring_pb2_grpc as monitoring_grpc
from .gen.quanta.registry.v1 import registry_pb2 as registry_pb
from .gen.quanta.registry.v1 import registry_pb2_grpc as registry_grpc
from .settings import Tls
from .tensors import from_contents, from_raw, to_raw

if TYPE_CHECKING:
    from .batch import BatchSummary

#: Bytes per UploadVersion chunk: the registry's contract suggests about 1 MiB.
UPLOAD_CHUNK_BYTES = 1 << 20
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20

#: Key types by the names the CLI uses (``quanta keys create --type``).
KEY_TYPES: Dict[str, int] = {
    "aes256-gcm": crypto_pb.KEY_TYPE_AES256_GCM,
    "chacha20-poly1305": crypto_pb.KEY_TYPE_CHACHA20_POLY1305,
    "fernet": crypto_pb.KEY_TYPE_FERNET,
    "hmac-sha256": crypto_pb.KEY_TYPE_HMAC_SHA256,
    "ed25519": crypto_pb.KEY_TYPE_ED25519,
}

T = TypeVar("T")
TokenSource = Union[None, str, Callable[[], Optional[str]]]


def _rpc(method: str, call: Callable[[], T]) -> T:
    """Runs one call; a failed one raises QuantaError naming the status and the server's message."""
    try:
        return call()
    except grpc.RpcError as error:
        raise QuantaError.from_rpc_error(error, method) from None


def _model_name(model_ref: str) -> str:
    """The model a reference names: ``cifar``, ``cifar:3`` and ``cifar@production`` all name ``cifar``."""
    return re.split(r"[:@]", model_ref, maxsplit=1)[0]


def _sequence_state(
    mapping: Union[None, Mapping[str, str], Iterable[Tuple[str, str]]],
) -> List[registry_pb.SequenceStateMapping]:
    if mapping is None:
        return []
    pairs = mapping.items() if isinstance(mapping, Mapping) else mapping
    return [registry_pb.SequenceStateMapping(input_name=i, output_name=o) for i, o in pairs]


def _parameter(value: Union[bool, int, float, str]) -> inference_pb.InferParameter:
    if isinstance(value, bool):
        return inference_pb.InferParameter(bool_param=value)
    if isinstance(value, int):
        if value >= 1 << 63:
            return inference_pb.InferParameter(uint64_param=value)
        return inference_pb.InferParameter(int64_param=value)
    if isinstance(value, float):
        return inference_pb.InferParameter(double_param=value)
    if isinstance(value, str):
        return inference_pb.InferParameter(string_param=value)
    raise TypeError(f"a request parameter must be bool, int, float or str, got {type(value).__name__}")


def infer_request(
    model: str,
    inputs: Mapping[str, object],
    outputs: Optional[Sequence[str]] = None,
    *,
    version: str = "",
    sequence_id: Union[None, int, str] = None,
    sequence_start: bool = False,
    sequence_end: bool = False,
    request_id: str = "",
    parameters: Optional[Mapping[str, Union[bool, int, float, str]]] = None,
) -> inference_pb.ModelInferRequest:
    """The ModelInferRequest of ``Client.infer``'s arguments: tensors in raw form, sequence controls as parameters."""
    request = inference_pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    for key, value in (parameters or {}).items():
        request.parameters[key].CopyFrom(_parameter(value))
    if sequence_id is not None:
        request.parameters["sequence_id"].CopyFrom(_parameter(sequence_id))
        request.parameters["sequence_start"].CopyFrom(_parameter(bool(sequence_start)))
        request.parameters["sequence_end"].CopyFrom(_parameter(bool(sequence_end)))
    elif sequence_start or sequence_end:
        raise ValueError("sequence_start and sequence_end need a sequence_id")
    for name, value in inputs.items():
        try:
            datatype, shape, raw = to_raw(np.asarray(value))
        except ValueError as error:
            raise ValueError(f"input {name!r}: {error}") from None
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(raw)
    for name in outputs or ():
        request.outputs.add(name=name)
    return request


def infer_outputs(response: inference_pb.ModelInferResponse) -> Dict[str, np.ndarray]:
    """A ModelInferResponse's outputs as ``{name: array}``, raw or typed."""
    result: Dict[str, np.ndarray] = {}
    for i, output in enumerate(response.outputs):
        if i < len(response.raw_output_contents):
            result[output.name] = from_raw(output.datatype, output.shape, response.raw_output_contents[i])
        else:
            result[output.name] = from_contents(output.datatype, output.shape, output.contents)
    return result


class Client:
    """A client of one Quanta platform: registry, crypto, monitoring and inference.

    ``Client()`` with no arguments connects where the ``quanta`` CLI would (see
    ``quanta_client.settings``): ``QUANTA_<SERVICE>_ADDR`` or the ``npm start`` ports, the token
    from ``QUANTA_TOKEN`` or ``$QUANTA_HOME/admin.token``, TLS from ``QUANTA_CLIENT_TLS*``.

    Args:
        address: one ``host:port`` for every service (a gateway); None: per service, as above.
        token: the bearer token, or a function asked before every call; None: as above.
        tls: False: plaintext; True: TLS with the system roots; a ``Tls``: TLS with these PEM
            files; None: from the environment.
        addresses: per-service addresses (``{"inference": "10.0.0.5:8001"}``), over ``address``.
        timeout: the deadline, in seconds, of each call (``push_model`` has none by default).
        max_message_bytes: the largest message sent or received (large tensors).
        env: the variables to read instead of ``os.environ``.

    The generated stubs are there for everything else: ``client.registry``, ``client.crypto``,
    ``client.monitoring`` and ``client.inference`` send the token too, and raise
    ``grpc.RpcError`` (``QuantaError.from_rpc_error`` turns one into a QuantaError).
    """

    def __init__(
        self,
        address: Optional[str] = None,
        token: TokenSource = None,
        tls: Union[None, bool, Tls] = None,
        *,
        addresses: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = DEFAULT_TIMEOUT_S,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        env = os.environ if env is None else env
        self._addresses = {s: _settings.resolve_address(s, address, addresses, env) for s in _settings.SERVICES}
        if callable(token):
            self._token: Callable[[], Optional[str]] = token
        else:
            fixed = _settings.resolve_token(token, env)
            self._token = lambda: fixed
        self._tls = _settings.resolve_tls(tls, env)
        self.timeout = timeout
        self._options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if self._tls is not None and self._tls.server_name:
            self._options.append(("grpc.ssl_target_name_override", self._tls.server_name))
        self._channels: Dict[str, grpc.Channel] = {}
        self._stubs: Dict[str, object] = {}

    # ---- connections ---------------------------------------------------------------------

    def address(self, service: str) -> str:
        """The address this client uses for ``service`` (registry, crypto, monitoring, inference)."""
        return self._addresses[service]

    def _credentials(self) -> grpc.ChannelCredentials:
        tls = self._tls
        assert tls is not None

        def read(path: Optional[str], what: str) -> Optional[bytes]:
            if path is None:
                return None
            try:
                with open(path, "rb") as file:
                    return file.read()
            except OSError as error:
                raise ValueError(f"tls: cannot read the {what} file {path!r}: {error.strerror}") from None

        return grpc.ssl_channel_credentials(
            root_certificates=read(tls.ca_file, "CA"),
            private_key=read(tls.key_file, "key"),
            certificate_chain=read(tls.cert_file, "certificate"),
        )

    def channel(self, service: str) -> grpc.Channel:
        """The channel to ``service``, opened on first use; services at one address share it."""
        target = self._addresses[service]
        channel = self._channels.get(target)
        if channel is None:
            if self._tls is None:
                raw = grpc.insecure_channel(target, options=self._options)
            else:
                raw = grpc.secure_channel(target, self._credentials(), options=self._options)
            channel = grpc.intercept_channel(raw, BearerInterceptor(self._token))
            self._channels[target] = channel
        return channel

    def _stub(self, service: str, make: Callable[[grpc.Channel], T]) -> T:
        stub = self._stubs.get(service)
        if stub is None:
            stub = make(self.channel(service))
            self._stubs[service] = stub
        return stub  # type: ignore[return-value]

    @property
    def registry(self) -> registry_grpc.RegistryServiceStub:
        return self._stub("registry", registry_grpc.RegistryServiceStub)

    @property
    def crypto(self) -> crypto_grpc.CryptoServiceStub:
        return self._stub("crypto", crypto_grpc.CryptoServiceStub)

    @property
    def monitoring(self) -> monitoring_grpc.MonitoringServiceStub:
        return self._stub("monitoring", monitoring_grpc.MonitoringServiceStub)

    @property
    def inference(self) -> inference_grpc.GRPCInferenceServiceStub:
        return self._stub("inference", inference_grpc.GRPCInferenceServiceStub)

    def close(self) -> None:
        """Closes every channel; the client cannot be used afterwards."""
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        self._stubs.clear()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _timeout(self, timeout: Optional[float]) -> Optional[float]:
        return self.timeout if timeout is None else timeout

    # ---- registry -------------------------------------------------------------------------

    def push_model(
        self,
        path: Union[str, os.PathLike],
        name: str,
        *,
        description: str = "",
        tags: Optional[Mapping[str, str]] = None,
        source_uri: str = "",
        create_model: bool = True,
        chunk_size: int = UPLOAD_CHUNK_BYTES,
        timeout: Optional[float] = None,
    ) -> registry_pb.ModelVersion:
        """Uploads an ONNX file as the next version of model ``name`` and returns that version (READY).

        The file is read twice, a chunk at a time (never whole in memory): once for its sha256
        and size, which the header carries so that the registry rejects a file that changed
        under the upload, then to stream it (UploadVersion: the header, then ``chunk_size``
        pieces). ``create_model``: register the model first when it does not exist, as
        ``quanta models push`` does. ``timeout``: none by default (a large file takes long).
        """
        path = os.fspath(path)
        digest = hashlib.sha256()
        size = 0
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(chunk_size), b""):
                digest.update(block)
                size += len(block)
        header = registry_pb.UploadHeader(
            model=name,
            description=description,
            tags=dict(tags or {}),
            expected_sha256=digest.hexdigest(),
            expected_size_bytes=size,
            create_model=create_model,
            lineage=registry_pb.Lineage(source_uri=source_uri) if source_uri else None,
        )

        def requests() -> Iterator[registry_pb.UploadVersionRequest]:
            yield registry_pb.UploadVersionRequest(header=header)
            with open(path, "rb") as file:
                for block in iter(lambda: file.read(chunk_size), b""):
                    yield registry_pb.UploadVersionRequest(chunk=block)

        reply = _rpc(
            "/quanta.registry.v1.RegistryService/UploadVersion",
            lambda: self.registry.UploadVersion(requests(), timeout=timeout),
        )
        return reply.version

    def deploy(
        self,
        name: str,
        model_ref: str,
        *,
        max_batch_size: int = 0,
        max_queue_delay_us: int = 0,
        instance_count: int = 1,
        max_queue_size: int = 0,
        sequence_state: Union[None, Mapping[str, str], Iterable[Tuple[str, str]]] = None,
        sequence_idle_timeout_ms: int = 0,
        preferred_batch_sizes: Sequence[int] = (),
        wait: bool = True,
        wait_timeout: float = 120.0,
    ) -> registry_pb.Deployment:
        """Creates deployment ``name`` serving ``model_ref``, or replaces its spec when it exists.

        ``model_ref`` is ``cifar`` (latest READY version), ``cifar:3`` or ``cifar@production``;
        inference serves the deployment under the model's name (``cifar``). For a stateful
        model, ``sequence_state`` maps each state input to the output that feeds it on the
        next request of a sequence, for example ``{"h": "hn", "c": "cn"}``.

        ``wait``: return only once inference serves the resolved version (polling ModelReady
        every 100 ms); QuantaError DEADLINE_EXCEEDED after ``wait_timeout`` seconds.
        """
        spec = registry_pb.DeploymentSpec(
            model_ref=model_ref,
            max_batch_size=max_batch_size,
            max_queue_delay_us=max_queue_delay_us,
            instance_count=instance_count,
            max_queue_size=max_queue_size,
            sequence_state=_sequence_state(sequence_state),
            sequence_idle_timeout_ms=sequence_idle_timeout_ms,
            preferred_batch_sizes=list(preferred_batch_sizes),
        )
        timeout = self._timeout(None)
        try:
            deployment = self.registry.CreateDeployment(
                registry_pb.CreateDeploymentRequest(name=name, spec=spec), timeout=timeout
            ).deployment
        except grpc.RpcError as error:
            if not isinstance(error, grpc.Call) or error.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise QuantaError.from_rpc_error(
                    error, "/quanta.registry.v1.RegistryService/CreateDeployment"
                ) from None
            deployment = _rpc(
                "/quanta.registry.v1.RegistryService/UpdateDeployment",
                lambda: self.registry.UpdateDeployment(
                    registry_pb.UpdateDeploymentRequest(name=name, spec=spec), timeout=timeout
                ).deployment,
            )
        if wait:
            resolved = deployment.resolved_version.version
            self.wait_ready(_model_name(model_ref), str(resolved) if resolved else "", timeout=wait_timeout)
        return deployment

    def wait_ready(self, model: str, version: str = "", *, timeout: float = 120.0) -> None:
        """Returns once inference serves ``model`` (at ``version``, when given).

        Polls ModelReady every 100 ms: inference loads a deployment on its own schedule and has
        no call that waits for it. QuantaError DEADLINE_EXCEEDED after ``timeout`` seconds,
        with the last error seen.
        """
        until = time.monotonic() + timeout
        last = "not ready"
        while True:
            try:
                if self.model_ready(model, version):
                    return
            except QuantaError as error:
                if error.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    raise
                last = str(error)
            if time.monotonic() >= until:
                what = f"{model}:{version}" if version else model
                raise QuantaError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"inference did not serve {what} within {timeout:g} s (last: {last})",
                    "wait_ready",
                )
            time.sleep(0.1)

    def model_ready(self, model: str, version: str = "") -> bool:
        """Whether inference serves ``model`` (at ``version``, when given) right now."""
        request = inference_pb.ModelReadyRequest(name=model, version=version)
        return _rpc(
            "/inference.GRPCInferenceService/ModelReady",
            lambda: self.inference.ModelReady(request, timeout=self._timeout(None)).ready,
        )

    # ---- inference ------------------------------------------------------------------------

    def infer(
        self,
        model: str,
        inputs: Mapping[str, object],
        outputs: Optional[Sequence[str]] = None,
        *,
        version: str = "",
        sequence_id: Union[None, int, str] = None,
        sequence_start: bool = False,
        sequence_end: bool = False,
        request_id: str = "",
        parameters: Optional[Mapping[str, Union[bool, int, float, str]]] = None,
        timeout: Optional[float] = None,
    ) -> Dict[str, np.ndarray]:
        """Runs ``model`` on ``inputs`` (name -> numpy array) and returns its outputs (name -> array).

        Tensors travel in raw form in both directions, for every KServe datatype: bool,
        [u]int8..64, float16/32/64, and bytes/str arrays (BYTES, returned as object arrays of
        ``bytes``). A plain list becomes ``numpy.asarray(list)`` (so Python floats are FP64:
        pass ``np.float32`` arrays to a float32 model). ``outputs``: only these, in this order;
        None: every output. Stateful models: ``sequence_id`` (non-zero int or str) with
        ``sequence_start`` on the first request and ``sequence_end`` on the last.
        """
        request = infer_request(
            model,
            inputs,
            outputs,
            version=version,
            sequence_id=sequence_id,
            sequence_start=sequence_start,
            sequence_end=sequence_end,
            request_id=request_id,
            parameters=parameters,
        )
        response = _rpc(
            "/inference.GRPCInferenceService/ModelInfer",
            lambda: self.inference.ModelInfer(request, timeout=self._timeout(timeout)),
        )
        return infer_outputs(response)

    def batch_infer(self, model: str, source: object, sink: object, **options: object) -> "BatchSummary":
        """Runs ``model`` over a dataset, resumably: ``quanta_client.batch.batch_infer(self, ...)``, which see."""
        from .batch import batch_infer

        return batch_infer(self, model, source, sink, **options)  # type: ignore[arg-type]

    # ---- crypto ---------------------------------------------------------------------------

    def create_key(self, name: str, key_type: str = "aes256-gcm") -> crypto_pb.Key:
        """Creates key ``name`` of ``key_type`` (aes256-gcm, chacha20-poly1305, fernet, hmac-sha256, ed25519)."""
        kind = KEY_TYPES.get(key_type)
        if kind is None:
            raise ValueError(f"unknown key type {key_type!r}; use one of {', '.join(KEY_TYPES)}")
        request = crypto_pb.CreateKeyRequest(name=name, type=kind)
        return _rpc(
            "/quanta.crypto.v1.CryptoService/CreateKey",
            lambda: self.crypto.CreateKey(request, timeout=self._timeout(None)).key,
        )

    def encrypt(self, key: str, data: bytes, *, associated_data: bytes = b"") -> bytes:
        """Encrypts ``data`` with key ``key``'s primary version; the ciphertext names that version."""
        request = crypto_pb.EncryptRequest(
            key_name=key, plaintext=bytes(data), associated_data=bytes(associated_data)
        )
        return _rpc(
            "/quanta.crypto.v1.CryptoService/Encrypt",
            lambda: self.crypto.Encrypt(request, timeout=self._timeout(None)).ciphertext,
        )

    def decrypt(self, key: str, ciphertext: bytes, *, associated_data: bytes = b"") -> bytes:
        """Decrypts a ciphertext made by ``encrypt`` with key ``key``.

        INVALID_ARGUMENT when it does not authenticate.
        """
        request = crypto_pb.DecryptRequest(
            key_name=key, ciphertext=bytes(ciphertext), associated_data=bytes(associated_data)
        )
        return _rpc(
            "/quanta.crypto.v1.CryptoService/Decrypt",
            lambda: self.crypto.Decrypt(request, timeout=self._timeout(None)).plaintext,
        )

    # ---- monitoring -----------------------------------------------------------------------

    def stats(self, model: str, version: str = "", *, window: float = 300.0) -> monitoring_pb.ModelStats:
        """Monitoring's statistics of ``model`` (every version, or ``version``) over the last ``window`` seconds.

        Inference reports requests to monitoring in batches, off the request path: a request
        shows up here within a few seconds, not at once.
        """
        request = monitoring_pb.GetModelStatsRequest(model=model, version=version)
        request.window.FromNanoseconds(int(window * 1e9))
        return _rpc(
            "/quanta.monitoring.v1.MonitoringService/GetModelStats",
            lambda: self.monitoring.GetModelStats(request, timeout=self._timeout(None)).stats,
        )
