"""tritonclient.http's requests against Quanta's REST listener: the same paths, JSON bodies and
binary tensor framing (`Inference-Header-Content-Length`, `binary_data_size`, `binary_data`,
`binary_data_output`) that tritonclient.http sends and parses."""
import http.client
import json
from urllib.parse import urlparse

import numpy as np
import pytest


class Http:
    def __init__(self, url, token):
        parsed = urlparse(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.token = token

    def request(self, method, path, body=None, headers=None, token=True):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            all_headers = dict(headers or {})
            if token:
                all_headers["Authorization"] = f"Bearer {self.token}"
            connection.request(method, path, body=body, headers=all_headers)
            response = connection.getresponse()
            return response.status, dict((k.lower(), v) for k, v in response.getheaders()), response.read()
        finally:
            connection.close()

    def json(self, method, path, body=None, token=True):
        status, headers, data = self.request(method, path, body=None if body is None else json.dumps(body), token=token)
        return status, (json.loads(data) if data else None)


@pytest.fixture(scope="module")
def rest(case):
    return Http(case["http"], case["token"])


def infer_body(inputs, request_id="", outputs=None, binary_inputs=True, parameters=None):
    """tritonclient.http._utils._get_inference_request: JSON, then each binary input's bytes."""
    request = {}
    if request_id:
        request["id"] = request_id
    params = dict(parameters or {})
    tensors, blobs = [], []
    for name, array in inputs.items():
        tensor = {"name": name, "shape": list(array.shape), "datatype": "FP32"}
        if binary_inputs:
            raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            tensor["data"] = array.astype(np.float32).ravel().tolist()
        tensors.append(tensor)
    request["inputs"] = tensors
    if outputs:
        request["outputs"] = [{"name": name, "parameters": {"binary_data": binary}} for name, binary in outputs]
    else:
        params["binary_data_output"] = True
    if params:
        request["parameters"] = params
    header = json.dumps(request).encode()
    if not blobs:
        return header, {}
    return header + b"".join(blobs), {"Inference-Header-Content-Length": str(len(header))}


def parse_infer_response(headers, data):
    """tritonclient.http.InferResult: the JSON header, then binary outputs in output order."""
    length = headers.get("inference-header-content-length")
    if length is None:
        return json.loads(data), {}
    response = json.loads(data[: int(length)])
    offset, arrays = int(length), {}
    for output in response["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:
            continue
        assert output["datatype"] == "FP32"
        arrays[output["name"]] = np.frombuffer(data[offset : offset + size], dtype="<f4").reshape(output["shape"])
        offset += size
    assert offset == len(data)
    return response, arrays


def output_array(response, arrays, name):
    if name in arrays:
        return arrays[name]
    output = next(o for o in response["outputs"] if o["name"] == name)
    return np.array(output["data"], dtype=np.float32).reshape(output["shape"])


# --- health and metadata ----------------------------------------------------------------------


def test_health_endpoints_are_public(rest):
    assert rest.request("GET", "/v2/health/live", token=False)[0] == 200
    assert rest.request("GET", "/v2/health/ready", token=False)[0] == 200


def test_server_metadata(rest):
    status, meta = rest.json("GET", "/v2", token=False)
    assert status == 200
    assert meta["name"] == "quanta" and meta["version"]
    assert "model_configuration" in meta["extensions"]


def test_model_ready(rest, case):
    name = case["stateless"]["name"]
    # tritonclient.http.is_model_ready is `status == 200`.
    assert rest.request("GET", f"/v2/models/{name}/ready")[0] == 200
    assert rest.request("GET", f"/v2/models/{name}/versions/{case['stateless']['version']}/ready")[0] == 200
    assert rest.request("GET", "/v2/models/no-such-model/ready")[0] != 200


def test_model_metadata(rest, case):
    model = case["stateless"]
    status, meta = rest.json("GET", f"/v2/models/{model['name']}/versions/{model['version']}")
    assert status == 200
    assert (
        meta["name"] == model["name"]
        and meta["versions"] == [model["version"]]
        and meta["platform"] == "onnxruntime_onnx"
    )
    assert meta["inputs"] == [{"name": model["input"], "datatype": "FP32", "shape": [-1] + model["input_dims"]}]
    assert meta["outputs"] == [{"name": model["output"], "datatype": "FP32", "shape": [-1] + model["output_dims"]}]


def test_errors_carry_an_error_message(rest):
    # tritonclient.http raises InferenceServerException(msg=body["error"]) for any non-200.
    status, body = rest.json("GET", "/v2/models/no-such-model")
    assert status == 404 and "no-such-model" in body["error"]
    status, body = rest.json("GET", "/v2/models/no-such-model", token=False)
    assert status == 401 and body["error"]


# --- model configuration ----------------------------------------------------------------------


def test_model_config_is_triton_json(rest, case):
    model = case["stateless"]
    status, config = rest.json("GET", f"/v2/models/{model['name']}/config")
    assert status == 200
    # The protobuf JSON mapping with the proto's own field names, enums by name, int64 as numbers.
    assert config["name"] == model["name"]
    assert config["platform"] == "onnxruntime_onnx" and config["backend"] == "onnxruntime"
    assert config["max_batch_size"] == model["max_batch_size"]
    assert [(i["name"], i["data_type"], i["dims"], i["format"]) for i in config["input"]] == [
        (model["input"], "TYPE_FP32", model["input_dims"], "FORMAT_NONE")
    ]
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
        (model["output"], "TYPE_FP32", model["output_dims"])
    ]
    batching = config["dynamic_batching"]
    assert batching["preferred_batch_size"] == model["preferred_batch_sizes"]
    assert batching["max_queue_delay_microseconds"] == model["max_queue_delay_us"]
    assert batching["default_queue_policy"]["max_queue_size"] == model["max_queue_size"]
    assert [(g["kind"], g["count"]) for g in config["instance_group"]] == [("KIND_CPU", model["instance_count"])]
    assert "sequence_batching" not in config


def test_model_config_of_a_stateful_model(rest, case):
    model = case["stateful"]
    status, config = rest.json("GET", f"/v2/models/{model['name']}/versions/{model['version']}/config")
    assert status == 200
    assert config["max_batch_size"] == 0 and "dynamic_batching" not in config
    sequence = config["sequence_batching"]
    assert sequence["max_sequence_idle_microseconds"] == model["idle_ms"] * 1000
    assert [(s["input_name"], s["output_name"], s["data_type"], s["dims"]) for s in sequence["state"]] == [
        (i, o, "TYPE_FP32", model["state_dims"]) for i, o in model["state"]
    ]


# --- inference --------------------------------------------------------------------------------


def test_infer_binary_in_binary_out(rest, case, load):
    model = case["stateless"]
    x, y = load(model["x"]), load(model["y"])
    body, headers = infer_body({model["input"]: x}, request_id="h-1")
    status, response_headers, data = rest.request(
        "POST", f"/v2/models/{model['name']}/infer", body=body, headers=headers
    )
    assert status == 200, data
    response, arrays = parse_infer_response(response_headers, data)
    assert (
        response["model_name"] == model["name"]
        and response["model_version"] == model["version"]
        and response["id"] == "h-1"
    )
    # binary_data_output: every output comes as binary data.
    assert set(arrays) == {model["output"]}
    np.testing.assert_allclose(arrays[model["output"]], y, rtol=1e-5, atol=1e-6)


def test_infer_json_in_json_out(rest, case, load):
    model = case["stateless"]
    x, y = load(model["x"]), load(model["y"])
    body, headers = infer_body({model["input"]: x}, outputs=[(model["output"], False)], binary_inputs=False)
    assert headers == {}
    status, response_headers, data = rest.request(
        "POST", f"/v2/models/{model['name']}/versions/{model['version']}/infer", body=body, headers=headers
    )
    assert status == 200, data
    assert "inference-header-content-length" not in response_headers
    response, arrays = parse_infer_response(response_headers, data)
    assert arrays == {}
    np.testing.assert_allclose(output_array(response, arrays, model["output"]), y, rtol=1e-5, atol=1e-6)


def test_infer_binary_in_json_out(rest, case, load):
    model = case["stateless"]
    x, y = load(model["x"]), load(model["y"])
    body, headers = infer_body({model["input"]: x}, outputs=[(model["output"], False)])
    status, response_headers, data = rest.request(
        "POST", f"/v2/models/{model['name']}/infer", body=body, headers=headers
    )
    assert status == 200, data
    response, arrays = parse_infer_response(response_headers, data)
    np.testing.assert_allclose(output_array(response, arrays, model["output"]), y, rtol=1e-5, atol=1e-6)


def test_infer_sequence_over_http(rest, case, load):
    model = case["stateful"]
    steps = model["steps"]
    for index, step in enumerate(steps):
        parameters = {"sequence_id": 777, "sequence_start": index == 0, "sequence_end": index == len(steps) - 1}
        body, headers = infer_body(
            {model["input"]: load(step["x"])}, outputs=[(model["output"], True)], parameters=parameters
        )
        status, response_headers, data = rest.request(
            "POST", f"/v2/models/{model['name']}/infer", body=body, headers=headers
        )
        assert status == 200, data
        response, arrays = parse_infer_response(response_headers, data)
        np.testing.assert_allclose(arrays[model["output"]], load(step["y"]), rtol=1e-5, atol=1e-6)


def test_infer_with_a_bad_input_is_400(rest, case, load):
    model = case["stateless"]
    body, headers = infer_body({"not-an-input": load(model["x"])})
    status, _, data = rest.request("POST", f"/v2/models/{model['name']}/infer", body=body, headers=headers)
    assert status == 400
    assert "not-an-input" in json.loads(data)["error"]


# --- statistics and repository ----------------------------------------------------------------


def test_inference_statistics(rest, case):
    model = case["stateless"]
    status, body = rest.json("GET", f"/v2/models/{model['name']}/versions/{model['version']}/stats")
    assert status == 200
    (stats,) = body["model_stats"]
    assert stats["name"] == model["name"] and stats["version"] == model["version"]
    assert stats["inference_count"] > 0 and stats["execution_count"] > 0 and stats["last_inference"] > 0
    fields = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss")
    for field in fields:
        assert set(stats["inference_stats"][field]) == {"count", "ns"}
    assert stats["inference_stats"]["success"]["count"] > 0
    status, every = rest.json("GET", "/v2/models/stats")
    assert status == 200 and model["name"] in {s["name"] for s in every["model_stats"]}


def test_repository_index(rest, case):
    # tritonclient.http.get_model_repository_index posts an empty body.
    status, _, data = rest.request("POST", "/v2/repository/index", body="")
    assert status == 200
    index = {(m["name"], m.get("version")): m["state"] for m in json.loads(data)}
    assert index[(case["stateless"]["name"], case["stateless"]["version"])] == "READY"
    status, ready = rest.json("POST", "/v2/repository/index", body={"ready": True})
    assert status == 200 and all(m["state"] == "READY" for m in ready)


def test_repository_unload_and_load(rest, case, load):
    model = case["repository"]
    name = model["name"]
    # tritonclient.http.unload_model's body; load_model posts {} without config or files.
    status, body = rest.json(
        "POST", f"/v2/repository/models/{name}/unload", body={"parameters": {"unload_dependents": False}}
    )
    assert status == 200, body
    assert rest.request("GET", f"/v2/models/{name}/ready")[0] != 200
    status, index = rest.json("POST", "/v2/repository/index", body={})
    assert {"name": name, "version": model["version"], "state": "UNAVAILABLE", "reason": "unloaded"} in index
    status, body = rest.json("POST", f"/v2/repository/models/{name}/load", body={})
    assert status == 200, body
    assert rest.request("GET", f"/v2/models/{name}/ready")[0] == 200
    request, headers = infer_body({model["input"]: load(model["x"])})
    status, response_headers, data = rest.request("POST", f"/v2/models/{name}/infer", body=request, headers=headers)
    assert status == 200, data
    _, arrays = parse_infer_response(response_headers, data)
    np.testing.assert_allclose(arrays[model["output"]], load(model["y"]), rtol=1e-5, atol=1e-6)
