"""tritonclient.grpc's calls against Quanta, checked against Triton's documented answers
(triton-inference-server/server docs/protocol/*.md and KServe's v2 protocol)."""
import grpc
import numpy as np
import pytest
from inference import grpc_service_pb2 as pb
from inference import grpc_service_pb2_grpc as pb_grpc
from inference import model_config_pb2 as mc


@pytest.fixture(scope="module")
def stub(case):
    channel = grpc.insecure_channel(case["grpc"])
    yield pb_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def md(case):
    # tritonclient.grpc passes `headers` as call metadata.
    return (("authorization", f"Bearer {case['token']}"),)


def raw_request(model, version, inputs, request_id="", outputs=(), parameters=None):
    """A ModelInferRequest as tritonclient.grpc builds it: tensors in raw_input_contents."""
    request = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    for name, array in inputs.items():
        request.inputs.add(name=name, datatype="FP32", shape=list(array.shape))
        request.raw_input_contents.append(np.ascontiguousarray(array, dtype="<f4").tobytes())
    for name in outputs:
        request.outputs.add(name=name)
    for key, value in (parameters or {}).items():
        if isinstance(value, bool):
            request.parameters[key].bool_param = value
        else:
            request.parameters[key].int64_param = value
    return request


def as_numpy(response, name):
    """tritonclient.grpc's InferResult.as_numpy: raw_output_contents by position, else typed contents."""
    for index, output in enumerate(response.outputs):
        if output.name != name:
            continue
        assert output.datatype == "FP32"
        if response.raw_output_contents:
            array = np.frombuffer(response.raw_output_contents[index], dtype="<f4")
        else:
            array = np.array(output.contents.fp32_contents, dtype=np.float32)
        return array.reshape(list(output.shape))
    raise AssertionError(f"no output {name!r} in {[o.name for o in response.outputs]}")


# --- health and metadata ----------------------------------------------------------------------


def test_server_live_and_ready_need_no_token(stub):
    assert stub.ServerLive(pb.ServerLiveRequest()).live is True
    assert stub.ServerReady(pb.ServerReadyRequest()).ready is True


def test_server_metadata_lists_the_extensions_quanta_implements(stub):
    meta = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert meta.name == "quanta"
    assert meta.version != ""
    for extension in ("model_configuration", "binary_tensor_data", "sequence", "statistics", "model_repository"):
        assert extension in meta.extensions


def test_model_ready(stub, md, case):
    model = case["stateless"]
    assert stub.ModelReady(pb.ModelReadyRequest(name=model["name"]), metadata=md).ready is True
    request = pb.ModelReadyRequest(name=model["name"], version=model["version"])
    assert stub.ModelReady(request, metadata=md).ready is True
    # Triton answers ready=false (not an error) for a model or version it does not serve.
    assert stub.ModelReady(pb.ModelReadyRequest(name="no-such-model"), metadata=md).ready is False
    assert stub.ModelReady(pb.ModelReadyRequest(name=model["name"], version="999"), metadata=md).ready is False


def test_model_metadata(stub, md, case):
    model = case["stateless"]
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=model["name"]), metadata=md)
    assert meta.name == model["name"]
    assert list(meta.versions) == [model["version"]]
    assert meta.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        (model["input"], "FP32", [-1] + model["input_dims"])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        (model["output"], "FP32", [-1] + model["output_dims"])
    ]


def test_model_metadata_of_an_unknown_model_is_not_found(stub, md):
    with pytest.raises(grpc.RpcError) as failure:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="no-such-model"), metadata=md)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-model" in failure.value.details()


def test_calls_without_a_token_are_unauthenticated(stub, case):
    with pytest.raises(grpc.RpcError) as failure:
        stub.ModelMetadata(pb.ModelMetadataRequest(name=case["stateless"]["name"]))
    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED


# --- model configuration ----------------------------------------------------------------------


def test_model_config_of_a_batched_model(stub, md, case):
    model = case["stateless"]
    config = stub.ModelConfig(pb.ModelConfigRequest(name=model["name"], version=model["version"]), metadata=md).config
    assert config.name == model["name"]
    assert config.platform == "onnxruntime_onnx"
    assert config.backend == "onnxruntime"
    assert config.max_batch_size == model["max_batch_size"]
    # Without the batch dimension, since max_batch_size > 0.
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        (model["input"], mc.TYPE_FP32, model["input_dims"])
    ]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        (model["output"], mc.TYPE_FP32, model["output_dims"])
    ]
    assert config.WhichOneof("scheduling_choice") == "dynamic_batching"
    batching = config.dynamic_batching
    assert list(batching.preferred_batch_size) == model["preferred_batch_sizes"]
    assert batching.max_queue_delay_microseconds == model["max_queue_delay_us"]
    assert batching.default_queue_policy.max_queue_size == model["max_queue_size"]
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (mc.ModelInstanceGroup.KIND_CPU, model["instance_count"])
    ]
    assert config.version_policy.WhichOneof("policy_choice") == "latest"


def test_model_config_of_a_stateful_model(stub, md, case):
    model = case["stateful"]
    config = stub.ModelConfig(pb.ModelConfigRequest(name=model["name"]), metadata=md).config
    assert config.max_batch_size == 0
    # The state tensors are not inputs or outputs a client sends: they are sequence_batching.state.
    assert [i.name for i in config.input] == [model["input"]]
    assert [o.name for o in config.output] == [model["output"]]
    assert config.WhichOneof("scheduling_choice") == "sequence_batching"
    sequence = config.sequence_batching
    assert sequence.max_sequence_idle_microseconds == model["idle_ms"] * 1000
    assert [(s.input_name, s.output_name, s.data_type, list(s.dims)) for s in sequence.state] == [
        (i, o, mc.TYPE_FP32, model["state_dims"]) for i, o in model["state"]
    ]


def test_model_config_of_an_unknown_model_is_not_found(stub, md):
    with pytest.raises(grpc.RpcError) as failure:
        stub.ModelConfig(pb.ModelConfigRequest(name="no-such-model"), metadata=md)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND


# --- inference --------------------------------------------------------------------------------


def test_infer_binary(stub, md, case, load):
    model = case["stateless"]
    x, y = load(model["x"]), load(model["y"])
    response = stub.ModelInfer(raw_request(model["name"], "", {model["input"]: x}, request_id="r-1"), metadata=md)
    assert response.model_name == model["name"]
    assert response.model_version == model["version"]
    assert response.id == "r-1"
    # Raw in, raw out: one raw_output_contents entry per output.
    assert len(response.raw_output_contents) == len(response.outputs) == 1
    np.testing.assert_allclose(as_numpy(response, model["output"]), y, rtol=1e-5, atol=1e-6)


def test_infer_typed(stub, md, case, load):
    model = case["stateless"]
    x, y = load(model["x"]), load(model["y"])
    request = pb.ModelInferRequest(model_name=model["name"], model_version=model["version"], id="typed")
    tensor = request.inputs.add(name=model["input"], datatype="FP32", shape=list(x.shape))
    tensor.contents.fp32_contents.extend(x.astype(np.float32).ravel().tolist())
    request.outputs.add(name=model["output"])
    response = stub.ModelInfer(request, metadata=md)
    # Typed in, typed out.
    assert len(response.raw_output_contents) == 0
    assert list(response.outputs[0].shape) == list(y.shape)
    np.testing.assert_allclose(as_numpy(response, model["output"]), y, rtol=1e-5, atol=1e-6)


def test_infer_with_binary_data_output_parameter(stub, md, case, load):
    model = case["stateless"]
    x, y = load(model["x"]), load(model["y"])
    request = pb.ModelInferRequest(model_name=model["name"])
    tensor = request.inputs.add(name=model["input"], datatype="FP32", shape=list(x.shape))
    tensor.contents.fp32_contents.extend(x.astype(np.float32).ravel().tolist())
    output = request.outputs.add(name=model["output"])
    output.parameters["binary_data"].bool_param = True
    response = stub.ModelInfer(request, metadata=md)
    assert len(response.raw_output_contents) == 1
    np.testing.assert_allclose(as_numpy(response, model["output"]), y, rtol=1e-5, atol=1e-6)


def test_infer_errors_name_what_is_wrong(stub, md, case, load):
    model = case["stateless"]
    x = load(model["x"])
    with pytest.raises(grpc.RpcError) as failure:
        stub.ModelInfer(raw_request(model["name"], "", {"not-an-input": x}), metadata=md)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as failure:
        stub.ModelInfer(raw_request("no-such-model", "", {model["input"]: x}), metadata=md)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND


def test_stream_infer_runs_a_sequence(stub, md, case, load):
    """tritonclient.grpc start_stream + async_stream_infer(sequence_id, sequence_start, sequence_end)."""
    model = case["stateful"]
    steps = model["steps"]

    def requests():
        for index, step in enumerate(steps):
            yield raw_request(
                model["name"],
                "",
                {model["input"]: load(step["x"])},
                request_id=f"step-{index}",
                outputs=[model["output"]],
                parameters={"sequence_id": 4242, "sequence_start": index == 0, "sequence_end": index == len(steps) - 1},
            )

    responses = list(stub.ModelStreamInfer(requests(), metadata=md))
    assert len(responses) == len(steps)
    for index, (response, step) in enumerate(zip(responses, steps)):
        assert response.error_message == ""
        assert response.infer_response.id == f"step-{index}"
        np.testing.assert_allclose(
            as_numpy(response.infer_response, model["output"]), load(step["y"]), rtol=1e-5, atol=1e-6
        )


def test_stream_infer_reports_an_error_in_the_stream_and_goes_on(stub, md, case, load):
    model = case["stateless"]
    x, y = load(model["x"]), load(model["y"])
    good = raw_request(model["name"], "", {model["input"]: x}, request_id="good")
    bad = raw_request(model["name"], "", {"not-an-input": x}, request_id="bad")
    responses = list(stub.ModelStreamInfer(iter([good, bad, good]), metadata=md))
    assert [r.error_message == "" for r in responses] == [True, False, True]
    assert "not-an-input" in responses[1].error_message
    np.testing.assert_allclose(as_numpy(responses[2].infer_response, model["output"]), y, rtol=1e-5, atol=1e-6)


# --- statistics -------------------------------------------------------------------------------


def _stats(stub, md, name, version=""):
    response = stub.ModelStatistics(pb.ModelStatisticsRequest(name=name, version=version), metadata=md)
    assert len(response.model_stats) == 1
    return response.model_stats[0]


def test_inference_statistics_count_requests_rows_and_executions(stub, md, case, load):
    model = case["stateless"]
    x = load(model["x"])
    before = _stats(stub, md, model["name"], model["version"])
    sent = 3
    for _ in range(sent):
        stub.ModelInfer(raw_request(model["name"], "", {model["input"]: x}), metadata=md)
    after = _stats(stub, md, model["name"], model["version"])
    assert (after.name, after.version) == (model["name"], model["version"])
    # inference_count counts inferences (rows: dim 0 of each request), execution_count model runs.
    assert after.inference_count - before.inference_count == sent * x.shape[0]
    assert 1 <= after.execution_count - before.execution_count <= sent
    stats, old = after.inference_stats, before.inference_stats
    for field in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert getattr(stats, field).count - getattr(old, field).count == sent, field
        assert getattr(stats, field).ns >= getattr(old, field).ns, field
    assert stats.success.ns > old.success.ns
    assert after.last_inference >= before.last_inference > 0
    assert all(b.batch_size >= 1 and b.compute_infer.count >= 1 for b in after.batch_stats)
    assert sum(b.compute_infer.count for b in after.batch_stats) == after.execution_count


def test_statistics_of_every_model(stub, md, case):
    response = stub.ModelStatistics(pb.ModelStatisticsRequest(), metadata=md)
    names = {s.name for s in response.model_stats}
    assert {case["stateless"]["name"], case["stateful"]["name"]} <= names


# --- model repository -------------------------------------------------------------------------


def _index(stub, md, ready=False):
    index = stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=ready), metadata=md)
    return {(m.name, m.version): (m.state, m.reason) for m in index.models}


def test_repository_index_load_and_unload(stub, md, case, load):
    model = case["repository"]
    name, version = model["name"], model["version"]
    assert _index(stub, md)[(name, version)] == ("READY", "")

    # tritonclient.grpc.unload_model always sends unload_dependents.
    request = pb.RepositoryModelUnloadRequest(model_name=name)
    request.parameters["unload_dependents"].bool_param = False
    stub.RepositoryModelUnload(request, metadata=md)
    assert stub.ModelReady(pb.ModelReadyRequest(name=name), metadata=md).ready is False
    assert _index(stub, md)[(name, version)] == ("UNAVAILABLE", "unloaded")
    assert (name, version) not in _index(stub, md, ready=True)
    with pytest.raises(grpc.RpcError) as failure:
        stub.ModelInfer(raw_request(name, "", {model["input"]: load(model["x"])}), metadata=md)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND

    stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name=name), metadata=md)
    assert stub.ModelReady(pb.ModelReadyRequest(name=name), metadata=md).ready is True
    assert _index(stub, md, ready=True)[(name, version)] == ("READY", "")
    response = stub.ModelInfer(raw_request(name, "", {model["input"]: load(model["x"])}), metadata=md)
    np.testing.assert_allclose(as_numpy(response, model["output"]), load(model["y"]), rtol=1e-5, atol=1e-6)


def test_loading_an_unknown_model_fails_with_its_name(stub, md):
    with pytest.raises(grpc.RpcError) as failure:
        stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="no-such-model"), metadata=md)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-model" in failure.value.details()

