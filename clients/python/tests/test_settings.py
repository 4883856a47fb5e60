"""Client() reads the QUANTA_* variables as the quanta CLI does (tools/cli/src/settings.ts)."""

import pytest

from quanta_client import Client, Tls
from quanta_client.settings import resolve_tls, resolve_token


def test_defaults_are_the_npm_start_ports(tmp_path):
    client = Client(env={"QUANTA_HOME": str(tmp_path)})
    assert {s: client.address(s) for s in ("registry", "crypto", "monitoring", "inference")} == {
        "registry": "127.0.0.1:9001",
        "crypto": "127.0.0.1:9002",
        "monitoring": "127.0.0.1:9003",
        "inference": "127.0.0.1:8001",
    }


def test_per_service_variables_then_address_then_addresses_win():
    env = {"QUANTA_REGISTRY_ADDR": "reg:1", "QUANTA_INFERENCE_ADDR": "inf:2", "QUANTA_CRYPTO_ADDR": ""}
    client = Client(env=env)
    assert [client.address(s) for s in ("registry", "inference", "crypto")] == ["reg:1", "inf:2", "127.0.0.1:9002"]
    gateway = Client("gw:443", env=env, addresses={"inference": "inf:9"})
    assert [gateway.address(s) for s in ("registry", "inference", "crypto")] == ["gw:443", "inf:9", "gw:443"]


def test_token_argument_then_quanta_token_then_the_admin_token_in_quanta_home(tmp_path):
    (tmp_path / "admin.token").write_text("admin-jwt\n")
    home = {"QUANTA_HOME": str(tmp_path)}
    assert resolve_token(None, home) == "admin-jwt"
    assert resolve_token(None, {**home, "QUANTA_TOKEN": "env-jwt"}) == "env-jwt"
    assert resolve_token("arg-jwt", {**home, "QUANTA_TOKEN": "env-jwt"}) == "arg-jwt"
    assert resolve_token(None, {"QUANTA_HOME": str(tmp_path / "missing")}) is None


def test_quanta_home_defaults_to_dot_quanta_in_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / ".quanta").mkdir()
    (tmp_path / ".quanta" / "admin.token").write_text("cwd-jwt")
    monkeypatch.chdir(tmp_path)
    assert resolve_token(None, {}) == "cwd-jwt"


def test_tls_from_the_client_tls_variables():
    assert resolve_tls(None, {}) is None
    assert resolve_tls(None, {"QUANTA_CLIENT_TLS": "0"}) is None
    for on in ("1", "true", "yes"):
        assert resolve_tls(None, {"QUANTA_CLIENT_TLS": on}) == Tls()
    assert resolve_tls(None, {"QUANTA_CLIENT_TLS_CA": "/ca.pem"}) == Tls(ca_file="/ca.pem")
    env = {"QUANTA_CLIENT_TLS_CA": "/ca.pem", "QUANTA_CLIENT_TLS_CERT": "/c.pem", "QUANTA_CLIENT_TLS_KEY": "/k.pem"}
    assert resolve_tls(None, env) == Tls("/ca.pem", "/c.pem", "/k.pem")
    # The server's own QUANTA_TLS_* settings are not the client's.
    assert resolve_tls(None, {"QUANTA_TLS_CA": "/ca.pem"}) is None
    assert resolve_tls(False, env) is None
    assert resolve_tls(True, {}) == Tls()


def test_a_client_certificate_needs_its_key():
    with pytest.raises(ValueError, match="needs both cert_file and key_file"):
        Tls(cert_file="/c.pem")
    with pytest.raises(ValueError, match="needs both cert_file and key_file"):
        resolve_tls(None, {"QUANTA_CLIENT_TLS_CERT": "/c.pem"})


def test_an_unreadable_ca_file_is_named_when_the_first_channel_opens(tmp_path):
    client = Client(tls=Tls(ca_file=str(tmp_path / "nope.pem")), env={})
    with pytest.raises(ValueError, match="cannot read the CA file .*nope.pem"):
        client.channel("registry")


def test_the_environment_is_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("QUANTA_MONITORING_ADDR", "mon:7")
    assert Client().address("monitoring") == "mon:7"
