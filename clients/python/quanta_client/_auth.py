"""A channel interceptor that adds ``authorization: Bearer <token>`` to every call.

An interceptor rather than gRPC call credentials: call credentials are refused on plaintext
channels, and the services speak plaintext on loopback by default.
"""

from __future__ import annotations

import collections
from typing import Callable, Optional

import grpc


class _Details(
    collections.namedtuple(
        "_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    pass


class BearerInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Asks ``token()`` before every call (so a refreshed token is picked up); no header when it is None."""

    def __init__(self, token: Callable[[], Optional[str]]) -> None:
        self._token = token

    def _with_token(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        token = self._token()
        if not token:
            return details
        metadata = [(k, v) for k, v in (details.metadata or ()) if k != "authorization"]
        metadata.append(("authorization", f"Bearer {token}"))
        return _Details(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._with_token(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._with_token(client_call_details), request)

    def intercept_stream_unary(  # type: ignore[no-untyped-def]
        self, continuation, client_call_details, request_iterator
    ):
        return continuation(self._with_token(client_call_details), request_iterator)

    def intercept_stream_stream(  # type: ignore[no-untyped-def]
        self, continuation, client_call_details, request_iterator
    ):
        return continuation(self._with_token(client_call_details), request_iterator)
