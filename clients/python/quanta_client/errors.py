"""The one error type the client raises for a failed call."""

from __future__ import annotations

from typing import Optional

import grpc


class QuantaError(Exception):
    """A call that ended with a gRPC status other than OK.

    Attributes:
        code: the status, a ``grpc.StatusCode`` (``NOT_FOUND``, ``UNAUTHENTICATED``, ...).
        message: the server's message (gRPC's status details), meant for people.
        method: the RPC, for example ``/inference.GRPCInferenceService/ModelInfer``; or the
            client-side step (``deploy``) when the client gave up by itself.
        retry_after_ms: for ``RESOURCE_EXHAUSTED``, the server's ``retry-after-ms`` trailer: a
            deployment's caller limit refused the request before it ran, and it may be sent again
            after that many milliseconds. ``None`` otherwise.

    ``str(error)`` reads ``NOT_FOUND: model "cifar" is not served (ModelInfer)``.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        method: Optional[str] = None,
        retry_after_ms: Optional[int] = None,
    ) -> None:
        self.code = code
        self.message = message
        self.method = method
        self.retry_after_ms = retry_after_ms
        where = f" ({method.rsplit('/', 1)[-1]})" if method else ""
        super().__init__(f"{code.name}: {message}{where}")

    @property
    def code_name(self) -> str:
        """The status's name, for example ``"NOT_FOUND"``."""
        return self.code.name

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError, method: Optional[str] = None) -> "QuantaError":
        """The QuantaError of a ``grpc.RpcError`` raised by a generated stub."""
        code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = error.details() if isinstance(error, grpc.Call) else str(error)
        retry_after: Optional[int] = None
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and isinstance(error, grpc.Call):
            for key, value in error.trailing_metadata() or ():
                if key == "retry-after-ms":
                    try:
                        retry_after = max(0, int(value))
                    except (TypeError, ValueError):
                        retry_after = None
        return cls(code or grpc.StatusCode.UNKNOWN, details or "", method, retry_after)
