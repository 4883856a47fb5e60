"""Where the client connects and as whom, read the way the ``quanta`` CLI reads it.

Explicit arguments win over ``QUANTA_*`` variables, which win over the defaults of ``npm start``
(see tools/cli/src/settings.ts):

- addresses: ``QUANTA_REGISTRY_ADDR`` (127.0.0.1:9001), ``QUANTA_CRYPTO_ADDR`` (127.0.0.1:9002),
  ``QUANTA_MONITORING_ADDR`` (127.0.0.1:9003), ``QUANTA_INFERENCE_ADDR`` (127.0.0.1:8001);
- token: ``QUANTA_TOKEN``, else the admin token the crypto service wrote to
  ``$QUANTA_HOME/admin.token`` (``QUANTA_HOME`` defaults to ``.quanta`` in the working directory);
- TLS: on when ``QUANTA_CLIENT_TLS`` is 1/true/yes or any of ``QUANTA_CLIENT_TLS_CA``,
  ``QUANTA_CLIENT_TLS_CERT``, ``QUANTA_CLIENT_TLS_KEY`` is set (PEM files); plaintext otherwise.
  Not ``QUANTA_TLS_*``: the crypto service reads those as its own server certificate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Union

SERVICE_DEFAULTS: Dict[str, str] = {
    "registry": "127.0.0.1:9001",
    "crypto": "127.0.0.1:9002",
    "monitoring": "127.0.0.1:9003",
    "inference": "127.0.0.1:8001",
}

SERVICES = tuple(SERVICE_DEFAULTS)


@dataclass(frozen=True)
class Tls:
    """TLS towards the services. Files are PEM; with no ``ca_file`` the system roots are trusted.

    ``cert_file`` and ``key_file`` (a client certificate, for mTLS) go together.
    ``server_name`` overrides the name the server's certificate must carry (default: the
    address's host).
    """

    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    server_name: Optional[str] = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls: a client certificate needs both cert_file and key_file")


def _get(env: Mapping[str, str], name: str) -> Optional[str]:
    value = env.get(name)
    return None if value is None or value == "" else value


def resolve_address(
    service: str, address: Optional[str], addresses: Optional[Mapping[str, str]], env: Mapping[str, str]
) -> str:
    """``addresses[service]``, else ``address`` (one endpoint for every service), else
    ``QUANTA_<SERVICE>_ADDR``, else the ``npm start`` default."""
    if service not in SERVICE_DEFAULTS:
        raise ValueError(f"unknown service {service!r} (known: {', '.join(SERVICES)})")
    if addresses and addresses.get(service):
        return addresses[service]
    if address:
        return address
    return _get(env, f"QUANTA_{service.upper()}_ADDR") or SERVICE_DEFAULTS[service]


def resolve_home(env: Mapping[str, str]) -> str:
    return os.path.abspath(_get(env, "QUANTA_HOME") or ".quanta")


def resolve_token(token: Optional[str], env: Mapping[str, str]) -> Optional[str]:
    """``token``, else ``QUANTA_TOKEN``, else ``$QUANTA_HOME/admin.token``, else None (no header)."""
    if token:
        return token
    explicit = _get(env, "QUANTA_TOKEN")
    if explicit is not None:
        return explicit
    try:
        with open(os.path.join(resolve_home(env), "admin.token"), encoding="utf-8") as file:
            return file.read().strip() or None
    except OSError:
        return None


def resolve_tls(tls: Union[None, bool, Tls], env: Mapping[str, str]) -> Optional[Tls]:
    """``tls`` when given (False: plaintext, True: system roots), else the ``QUANTA_CLIENT_TLS*`` variables."""
    if tls is False:
        return None
    if tls is True:
        return Tls()
    if isinstance(tls, Tls):
        return tls
    if tls is not None:
        raise TypeError(f"tls must be None, a bool or a quanta_client.Tls, got {type(tls).__name__}")
    files = {
        "ca_file": _get(env, "QUANTA_CLIENT_TLS_CA"),
        "cert_file": _get(env, "QUANTA_CLIENT_TLS_CERT"),
        "key_file": _get(env, "QUANTA_CLIENT_TLS_KEY"),
    }
    on = (env.get("QUANTA_CLIENT_TLS") or "") in ("1", "true", "yes") or any(v is not None for v in files.values())
    return Tls(**files) if on else None
