"""What the client puts on the wire, seen by a real gRPC server in this process on a free port.

The server implements the generated servicers and reads every request by hand (not through
quanta_client.tensors), so the client's framing is checked against the contract, not itself.
"""

import hashlib
import struct
import threading
from concurrent import futures

import grpc
import numpy as np
import pytest

from quanta_client import Client, QuantaError
from quanta_client.gen.inference import grpc_service_pb2 as ipb
from quanta_client.gen.inference import grpc_service_pb2_grpc as igrpc
from quanta_client.gen.quanta.registry.v1 import registry_pb2 as rpb
from quanta_client.gen.quanta.registry.v1 import registry_pb2_grpc as rgrpc


class Seen:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = []  # (method, authorization header or None, request or list of requests)

    def add(self, method, context, request):
        auth = dict(context.invocation_metadata()).get("authorization")
        with self.lock:
            self.calls.append((method, auth, request))


class Inference(igrpc.GRPCInferenceServiceServicer):
    """ModelInfer answers each FP32 input doubled, as output "<name>_x2", in raw form."""

    def __init__(self, seen):
        self.seen = seen

    def ModelInfer(self, request, context):
        self.seen.add("ModelInfer", context, request)
        if request.model_name == "missing":
            context.abort(grpc.StatusCode.NOT_FOUND, 'model "missing" is not served')
        if request.model_name == "limited":
            context.set_trailing_metadata((("retry-after-ms", "250"),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, 'caller "app" is over its limit')
        response = ipb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
        for tensor, raw in zip(request.inputs, request.raw_input_contents):
            values = struct.unpack(f"<{len(raw) // 4}f", raw)
            response.outputs.add(name=f"{tensor.name}_x2", datatype="FP32", shape=tensor.shape)
            response.raw_output_contents.append(struct.pack(f"<{len(values)}f", *(2 * v for v in values)))
        return response

    def ModelReady(self, request, context):
        self.seen.add("ModelReady", context, request)
        return ipb.ModelReadyResponse(ready=True)


class Registry(rgrpc.RegistryServiceServicer):
    def __init__(self, seen):
        self.seen = seen

    def UploadVersion(self, request_iterator, context):
        messages = list(request_iterator)
        self.seen.add("UploadVersion", context, messages)
        data = b"".join(m.chunk for m in messages[1:])
        return rpb.UploadVersionResponse(
            version=rpb.ModelVersion(
                model=messages[0].header.model,
                version=1,
                sha256=hashlib.sha256(data).hexdigest(),
                size_bytes=len(data),
            )
        )

    def CreateDeployment(self, request, context):
        self.seen.add("CreateDeployment", context, request)
        if request.name == "taken":
            context.abort(grpc.StatusCode.ALREADY_EXISTS, 'deployment "taken" exists')
        return rpb.CreateDeploymentResponse(deployment=rpb.Deployment(name=request.name, spec=request.spec))

    def UpdateDeployment(self, request, context):
        self.seen.add("UpdateDeployment", context, request)
        return rpb.UpdateDeploymentResponse(
            deployment=rpb.Deployment(name=request.name, spec=request.spec, generation=2)
        )


@pytest.fixture()
def server():
    seen = Seen()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    igrpc.add_GRPCInferenceServiceServicer_to_server(Inference(seen), srv)
    rgrpc.add_RegistryServiceServicer_to_server(Registry(seen), srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    yield f"127.0.0.1:{port}", seen
    srv.stop(grace=None)


def test_infer_sends_raw_little_endian_inputs_and_the_bearer_token(server):
    address, seen = server
    with Client(address, token="tok-1", env={}) as client:
        out = client.infer("m", {"a": np.array([[0.5, -1.0]], dtype=np.float32), "b": np.float32(3)}, request_id="r1")
    assert sorted(out) == ["a_x2", "b_x2"]
    np.testing.assert_array_equal(out["a_x2"], np.array([[1.0, -2.0]], dtype=np.float32))
    assert out["b_x2"].shape == () and out["b_x2"] == 6
    method, auth, request = seen.calls[0]
    assert (method, auth, request.id) == ("ModelInfer", "Bearer tok-1", "r1")
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [("a", "FP32", [1, 2]), ("b", "FP32", [])]
    assert request.raw_input_contents[0] == struct.pack("<2f", 0.5, -1.0)
    assert not request.inputs[0].HasField("contents")


def test_sequence_controls_and_requested_outputs_travel_as_tritons_parameters(server):
    address, seen = server
    with Client(address, token="t", env={}) as client:
        client.infer("m", {"x": np.zeros(1, np.float32)}, outputs=["x_x2"], sequence_id=42, sequence_start=True)
        client.infer("m", {"x": np.zeros(1, np.float32)}, sequence_id="s-1", sequence_end=True)
        with pytest.raises(ValueError, match="need a sequence_id"):
            client.infer("m", {"x": np.zeros(1, np.float32)}, sequence_start=True)
    first, second = (c[2] for c in seen.calls)
    assert [o.name for o in first.outputs] == ["x_x2"]
    p = first.parameters
    assert (
        p["sequence_id"].int64_param,
        p["sequence_start"].bool_param,
        p["sequence_end"].bool_param,
    ) == (42, True, False)
    p = second.parameters
    assert (
        p["sequence_id"].string_param,
        p["sequence_start"].bool_param,
        p["sequence_end"].bool_param,
    ) == ("s-1", False, True)


def test_a_failed_call_raises_quanta_error_with_the_status_and_the_servers_message(server):
    address, _ = server
    with Client(address, env={}) as client, pytest.raises(QuantaError) as caught:
        client.infer("missing", {"x": np.zeros(1, np.float32)})
    error = caught.value
    assert (error.code, error.code_name, error.message) == (
        grpc.StatusCode.NOT_FOUND,
        "NOT_FOUND",
        'model "missing" is not served',
    )
    assert error.method == "/inference.GRPCInferenceService/ModelInfer"
    assert str(error) == 'NOT_FOUND: model "missing" is not served (ModelInfer)'
    assert error.retry_after_ms is None


def test_a_caller_limit_refusal_carries_retry_after_ms(server):
    address, _ = server
    with Client(address, env={}) as client, pytest.raises(QuantaError) as caught:
        client.infer("limited", {"x": np.zeros(1, np.float32)})
    assert (caught.value.code, caught.value.retry_after_ms) == (grpc.StatusCode.RESOURCE_EXHAUSTED, 250)


def test_push_streams_the_header_then_chunks_of_the_file(server, tmp_path):
    address, seen = server
    data = bytes(range(256)) * 41  # 10,496 bytes: ten full chunks and a short one
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    with Client(address, token="tok-2", env={}) as client:
        version = client.push_model(path, "cifar", description="d", tags={"k": "v"}, chunk_size=1000)
    assert (version.model, version.sha256, version.size_bytes) == ("cifar", hashlib.sha256(data).hexdigest(), len(data))
    method, auth, messages = seen.calls[0]
    assert (method, auth) == ("UploadVersion", "Bearer tok-2")
    header = messages[0].header
    assert messages[0].WhichOneof("part") == "header"
    assert (header.model, header.description, dict(header.tags), header.create_model) == (
        "cifar",
        "d",
        {"k": "v"},
        True,
    )
    assert (header.expected_sha256, header.expected_size_bytes) == (hashlib.sha256(data).hexdigest(), len(data))
    assert [m.WhichOneof("part") for m in messages[1:]] == ["chunk"] * 11
    assert [len(m.chunk) for m in messages[1:]] == [1000] * 10 + [496]


def test_deploy_replaces_a_deployment_that_exists_and_waits_until_served(server):
    address, seen = server
    with Client(address, token="t", env={}) as client:
        created = client.deploy("new", "lstm:2", max_batch_size=8, sequence_state={"h": "hn", "c": "cn"})
        updated = client.deploy("taken", "cifar@production")
    assert created.spec.model_ref == "lstm:2" and created.spec.max_batch_size == 8
    assert [(m.input_name, m.output_name) for m in created.spec.sequence_state] == [("h", "hn"), ("c", "cn")]
    assert updated.generation == 2
    assert [c[0] for c in seen.calls] == [
        "CreateDeployment",
        "ModelReady",
        "CreateDeployment",
        "UpdateDeployment",
        "ModelReady",
    ]
    assert [c[2].name for c in seen.calls if c[0] == "ModelReady"] == ["lstm", "cifar"]


def test_no_token_anywhere_sends_no_authorization_header(server, tmp_path):
    address, seen = server
    with Client(address, env={"QUANTA_HOME": str(tmp_path)}) as client:
        client.infer("m", {"x": np.zeros(1, np.float32)})
    assert seen.calls[0][1] is None


def test_a_token_function_is_asked_before_every_call(server):
    address, seen = server
    tokens = iter(["first", "second"])
    with Client(address, token=lambda: next(tokens), env={}) as client:
        client.infer("m", {"x": np.zeros(1, np.float32)})
        client.infer("m", {"x": np.zeros(1, np.float32)})
    assert [c[1] for c in seen.calls] == ["Bearer first", "Bearer second"]
