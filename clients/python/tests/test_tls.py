"""TLS and mTLS towards a real gRPC server in this process, with certificates made by openssl."""

import subprocess
from concurrent import futures

import grpc
import numpy as np
import pytest

from quanta_client import Client, QuantaError, Tls
from quanta_client.gen.inference import grpc_service_pb2 as ipb
from quanta_client.gen.inference import grpc_service_pb2_grpc as igrpc


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, all signed by the CA."""
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test-ca", cwd=d)
    extensions = (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "extendedKeyUsage=clientAuth"))
    for name, ext in extensions:
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=d,
        )
    return d


class Ready(igrpc.GRPCInferenceServiceServicer):
    def ModelReady(self, request, context):
        authorization = dict(context.invocation_metadata()).get("authorization")
        return ipb.ModelReadyResponse(ready=authorization == "Bearer tls-token")


def serve(certs, require_client_cert):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    igrpc.add_GRPCInferenceServiceServicer_to_server(Ready(), server)
    credentials = grpc.ssl_server_credentials(
        [((certs / "server.key").read_bytes(), (certs / "server.pem").read_bytes())],
        root_certificates=(certs / "ca.pem").read_bytes(),
        require_client_auth=require_client_cert,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, f"127.0.0.1:{port}"


def test_tls_with_the_ca_from_quanta_client_tls_ca_sends_the_token(certs):
    server, address = serve(certs, require_client_cert=False)
    try:
        env = {
            "QUANTA_INFERENCE_ADDR": address,
            "QUANTA_CLIENT_TLS_CA": str(certs / "ca.pem"),
            "QUANTA_TOKEN": "tls-token",
        }
        with Client(env=env) as client:
            assert client.model_ready("m") is True
    finally:
        server.stop(grace=None)


def test_mtls_needs_the_client_certificate(certs):
    server, address = serve(certs, require_client_cert=True)
    try:
        files = {"ca_file": str(certs / "ca.pem")}
        mtls = Tls(**files, cert_file=str(certs / "client.pem"), key_file=str(certs / "client.key"))
        with Client(address, token="tls-token", tls=mtls, env={}) as client:
            assert client.model_ready("m") is True
        anonymous = Client(address, token="tls-token", tls=Tls(**files), env={}, timeout=5)
        with anonymous, pytest.raises(QuantaError) as caught:
            anonymous.model_ready("m")
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(grace=None)


def test_a_server_name_other_than_the_address_is_checked_against_the_certificate(certs):
    server, address = serve(certs, require_client_cert=False)
    try:
        port = address.rsplit(":", 1)[1]
        by_name = Tls(ca_file=str(certs / "ca.pem"), server_name="localhost")
        with Client(f"127.0.0.1:{port}", token="tls-token", tls=by_name, env={}) as client:
            assert client.model_ready("m") is True
        elsewhere = Tls(ca_file=str(certs / "ca.pem"), server_name="elsewhere.example")
        wrong = Client(address, tls=elsewhere, env={}, timeout=5)
        with wrong, pytest.raises(QuantaError) as caught:
            wrong.model_ready("m")
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(grace=None)


def test_plaintext_to_a_tls_server_fails_unavailable(certs):
    server, address = serve(certs, require_client_cert=False)
    try:
        with Client(address, tls=False, env={}, timeout=5) as client, pytest.raises(QuantaError) as caught:
            client.infer("m", {"x": np.zeros(1, np.float32)})
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(grace=None)
