"""The client against a live Quanta stack, with answers compared to onnxruntime.

tests/e2e/src/python-client.test.ts starts the four services, builds the models, runs them with
onnxruntime (onnxruntime-node: Debian has no onnxruntime for Python) on the inputs it writes, and
runs this suite with the stack's QUANTA_* variables, a tenant token in QUANTA_TOKEN and
QUANTA_PYCLIENT_FIXTURES naming the folder that holds manifest.json, the .onnx files, and the
inputs and expected outputs (.npy; BYTES tensors as JSON). Without that variable these tests skip.
"""

import hashlib
import json
import os
import time

import grpc
import numpy as np
import pytest

from quanta_client import Client, QuantaError

FIXTURES = os.environ.get("QUANTA_PYCLIENT_FIXTURES")
pytestmark = pytest.mark.skipif(not FIXTURES, reason="needs a live stack: run tests/e2e/src/python-client.test.ts")


def load(name):
    path = os.path.join(FIXTURES, name)
    if name.endswith(".json"):
        with open(path, encoding="utf-8") as file:
            tensor = json.load(file)
        out = np.empty(len(tensor["utf8"]), dtype=object)
        out[:] = [s.encode("utf-8") for s in tensor["utf8"]]
        return out.reshape(tensor["shape"])
    return np.load(path)


def tensors(files):
    return {name: load(file) for name, file in files.items()}


def assert_same(got, want, what):
    """Bit for bit: the dtype, the shape and every element (so -0.0, subnormals and 2**64-1 count)."""
    assert got.shape == want.shape, what
    if want.dtype == object:
        assert got.tolist() == want.tolist(), what
    else:
        assert got.dtype == want.dtype, what
        assert got.tobytes() == want.tobytes(), what


@pytest.fixture(scope="module")
def manifest():
    with open(os.path.join(FIXTURES, "manifest.json"), encoding="utf-8") as file:
        return json.load(file)


@pytest.fixture(scope="module")
def client():
    with Client() as c:
        yield c


@pytest.fixture(scope="module")
def cnn(client, manifest):
    """The float32 CNN pushed as py-cnn and deployed (once for the module)."""
    path = os.path.join(FIXTURES, manifest["cnn"]["model"])
    version = client.push_model(path, "py-cnn", description="from pytest", tags={"suite": "python"})
    client.deploy("py-cnn", "py-cnn:1", max_batch_size=8, max_queue_delay_us=500)
    return version, path


def test_push_model_returns_the_new_version_ready_and_inspected(client, cnn):
    version, path = cnn
    with open(path, "rb") as file:
        data = file.read()
    assert (version.model, version.version, version.sha256, version.size_bytes) == (
        "py-cnn",
        1,
        hashlib.sha256(data).hexdigest(),
        len(data),
    )
    assert version.status == 2  # VERSION_STATUS_READY
    assert dict(version.tags) == {"suite": "python"}
    assert [(t.name, t.datatype) for t in version.signature.inputs] == [("input", "FP32")]
    # A second push in many small chunks is version 2 of the same bytes.
    again = client.push_model(path, "py-cnn", chunk_size=4096)
    assert (again.version, again.sha256) == (2, version.sha256)


def test_infer_float32_equals_onnxruntime(client, manifest, cnn):
    inputs = tensors(manifest["cnn"]["inputs"])
    want = tensors(manifest["cnn"]["expected"])["output"]
    got = client.infer("py-cnn", inputs)
    assert list(got) == ["output"]
    assert got["output"].dtype == np.float32 and got["output"].shape == want.shape
    np.testing.assert_allclose(got["output"], want, rtol=0, atol=1e-5)
    only = client.infer("py-cnn", inputs, outputs=["output"], request_id="py-1")
    np.testing.assert_allclose(only["output"], want, rtol=0, atol=1e-5)


def test_every_kserve_datatype_travels_raw_and_equals_onnxruntime(client, manifest):
    spec = manifest["datatypes"]
    client.push_model(os.path.join(FIXTURES, spec["model"]), "py-datatypes")
    client.deploy("py-datatypes", "py-datatypes")
    inputs = tensors(spec["inputs"])
    want = tensors(spec["expected"])
    got = client.infer("py-datatypes", inputs)
    assert sorted(got) == sorted(want)
    for name in want:
        assert_same(got[name], want[name], name)
    # Fewer rows, and the outputs asked for in an order of our own.
    half = {name: value[:1] for name, value in inputs.items()}
    order = ["out_BYTES", "out_FP16", "out_UINT64", "out_BOOL"]
    got = client.infer("py-datatypes", half, outputs=order)
    assert list(got) == order
    for name in order:
        assert_same(got[name], want[name][:1], name)


def test_a_sequence_carries_the_lstm_state_from_request_to_request(client, manifest):
    spec = manifest["lstm"]
    client.push_model(os.path.join(FIXTURES, spec["model"]), "py-lstm")
    client.deploy("py-lstm", "py-lstm", sequence_state=spec["state"])
    steps = spec["steps"]
    # Two sequences interleaved, one with an integer id and one with a string id: each keeps its own state.
    for i, step in enumerate(steps):
        for sequence_id in (7, "py-seq"):
            got = client.infer(
                "py-lstm",
                tensors(step["inputs"]),
                sequence_id=sequence_id,
                sequence_start=i == 0,
                sequence_end=i == len(steps) - 1,
            )
            for name, want in tensors(step["expected"]).items():
                np.testing.assert_allclose(
                    got[name], want, rtol=0, atol=1e-5, err_msg=f"step {i}, sequence {sequence_id!r}, {name}"
                )
    # Without the sequence, the state inputs start from zeros: the first step's answer again.
    first = steps[0]
    got = client.infer("py-lstm", tensors(first["inputs"]), sequence_id=8, sequence_start=True, sequence_end=True)
    np.testing.assert_allclose(got["y"], load(first["expected"]["y"]), rtol=0, atol=1e-5)


def test_encrypt_then_decrypt_gives_the_plaintext_back(client):
    key = client.create_key("py-key")
    assert (key.name, key.latest_version) == ("py-key", 1)
    plaintext = b"partner secret \x00\xff" * 100
    ciphertext = client.encrypt("py-key", plaintext, associated_data=b"ctx")
    assert plaintext not in ciphertext
    assert client.decrypt("py-key", ciphertext, associated_data=b"ctx") == plaintext
    with pytest.raises(QuantaError) as caught:
        client.decrypt("py-key", ciphertext, associated_data=b"other")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_stats_count_every_request(client, manifest):
    path = os.path.join(FIXTURES, manifest["cnn"]["model"])
    client.push_model(path, "py-stats")
    client.deploy("py-stats", "py-stats", max_batch_size=4)
    inputs = tensors(manifest["cnn"]["inputs"])
    for _ in range(7):
        client.infer("py-stats", inputs)
    # Inference reports to monitoring in batches, off the request path: wait for all seven.
    until = time.monotonic() + 30
    while True:
        stats = client.stats("py-stats")
        if stats.count >= 7 or time.monotonic() > until:
            break
        time.sleep(0.2)
    assert (stats.model, stats.count, stats.error_count) == ("py-stats", 7, 0)
    assert stats.total.p50_us > 0 and stats.bytes_in > 0


def test_an_unknown_model_is_not_found_with_the_servers_message(client):
    with pytest.raises(QuantaError) as caught:
        client.infer("py-no-such-model", {"input": np.zeros((1, 3, 32, 32), np.float32)})
    error = caught.value
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert "py-no-such-model" in error.message
    assert str(error).startswith("NOT_FOUND: ")


def test_a_wrong_datatype_is_an_invalid_argument_that_names_the_input(client, cnn):
    with pytest.raises(QuantaError) as caught:
        client.infer("py-cnn", {"input": np.zeros((1, 3, 32, 32), np.float64)})
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "input" in caught.value.message and "FP64" in caught.value.message


def test_a_bad_token_is_unauthenticated(manifest):
    with Client(token="not-a-token") as stranger:
        for call in (
            lambda: stranger.infer("py-cnn", {"input": np.zeros((1, 3, 32, 32), np.float32)}),
            lambda: stranger.push_model(os.path.join(FIXTURES, manifest["cnn"]["model"]), "py-stranger"),
            lambda: stranger.encrypt("py-key", b"x"),
            lambda: stranger.stats("py-cnn"),
        ):
            with pytest.raises(QuantaError) as caught:
                call()
            assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED, caught.value


def test_without_quanta_token_the_admin_token_in_quanta_home_is_used(monkeypatch, tmp_path):
    monkeypatch.delenv("QUANTA_TOKEN")
    with Client() as admin:
        # The admin token may call everything; its tenant has no models of this suite.
        assert admin.model_ready("py-cnn") is False
    monkeypatch.setenv("QUANTA_HOME", str(tmp_path))
    with Client() as nobody, pytest.raises(QuantaError) as caught:
        nobody.model_ready("py-cnn")
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
