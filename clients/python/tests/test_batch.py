"""batch_infer: against a gRPC server in this process (a broken stream, rejected rows, sequences
replayed), then against a live stack (each format, the errors file, a job killed with SIGKILL and
resumed, an LSTM sequence dataset checked against state carried by hand).

The live tests run where test_live.py's do: tests/e2e/src/python-client.test.ts starts the stack
and sets QUANTA_PYCLIENT_FIXTURES; they build their own models with libs/onnx's cli-build.ts.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest

from quanta_client import BatchFailed, Client, QuantaError, batch_infer
from quanta_client.datasets import JsonlSink
from quanta_client.gen.inference import grpc_service_pb2 as ipb
from quanta_client.gen.inference import grpc_service_pb2_grpc as igrpc
from quanta_client.tensors import from_raw, to_raw

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
FIXTURES = os.environ.get("QUANTA_PYCLIENT_FIXTURES")
live = pytest.mark.skipif(not FIXTURES, reason="needs a live stack: run tests/e2e/src/python-client.test.ts")


# ---- a server in this process ---------------------------------------------------------------


class Inference(igrpc.GRPCInferenceServiceServicer):
    """Model "m": y = 2 * input ([N, 3] FP32); a row with a negative value is rejected.

    In a sequence, also s = the running sum of the input over the sequence so far (the state).
    ``break_after``: the next stream fails with UNAVAILABLE after that many answers (once).
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.state = {}
        self.break_after = None
        self.requests = []  # (rows, sequence_id, start, end) of each request run

    def ModelMetadata(self, request, context):
        if request.name != "m":
            context.abort(grpc.StatusCode.NOT_FOUND, f'model "{request.name}" is not loaded for this tenant')
        spec = ipb.ModelMetadataResponse.TensorMetadata(name="input", datatype="FP32", shape=[-1, 3])
        return ipb.ModelMetadataResponse(name="m", inputs=[spec])

    def run(self, request):
        """The response, or the error message."""
        x = from_raw(request.inputs[0].datatype, request.inputs[0].shape, request.raw_input_contents[0])
        p = request.parameters
        seq = p["sequence_id"].int64_param or p["sequence_id"].string_param if "sequence_id" in p else None
        with self.lock:
            self.requests.append((x.shape[0], seq, p["sequence_start"].bool_param, p["sequence_end"].bool_param))
            if (x < 0).any():
                return None, 'model "m": a negative input'
            response = ipb.ModelInferResponse(model_name="m", id=request.id)
            outputs = {"y": x * 2}
            if seq is not None:
                if p["sequence_start"].bool_param:
                    self.state[seq] = np.zeros(3, np.float32)
                elif seq not in self.state:
                    return None, f"sequence {seq} must START first"
                self.state[seq] = self.state[seq] + x.sum(axis=0)
                outputs["s"] = self.state[seq].reshape(1, 3)
                if p["sequence_end"].bool_param:
                    del self.state[seq]
        for name, value in outputs.items():
            datatype, shape, raw = to_raw(value.astype(np.float32))
            response.outputs.add(name=name, datatype=datatype, shape=shape)
            response.raw_output_contents.append(raw)
        return response, ""

    def ModelInfer(self, request, context):
        response, error = self.run(request)
        if error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, error)
        return response

    def ModelStreamInfer(self, request_iterator, context):
        answered = 0
        for request in request_iterator:
            response, error = self.run(request)
            yield ipb.ModelStreamInferResponse(error_message=error, infer_response=response)
            answered += 1
            if self.break_after is not None and answered >= self.break_after:
                self.break_after = None
                context.abort(grpc.StatusCode.UNAVAILABLE, "the server is restarting")


@pytest.fixture()
def served():
    servicer = Inference()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    igrpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with Client(f"127.0.0.1:{port}", token="t", env={}) as client:
        yield client, servicer
    server.stop(grace=None)


def write_csv(path, rows, key=None):
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["id"] + (["seq"] if key else []) + ["a", "b", "c"])
        for i, row in enumerate(rows):
            writer.writerow([f"r{i}"] + ([key[i]] if key else []) + [float(v) for v in row])


def read_jsonl(path):
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def tensor(line, name):
    for out in line["outputs"]:
        if out["name"] == name:
            return np.array(out["data"], np.float32).reshape(out["shape"])
    raise KeyError(name)


def test_rows_batch_into_requests_and_a_rejected_row_goes_to_the_errors_file_with_its_code(served, tmp_path):
    client, servicer = served
    rows = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
    rows[[7, 31]] = -1
    write_csv(tmp_path / "in.csv", rows)
    summary = batch_infer(client, "m", str(tmp_path / "in.csv"), str(tmp_path / "out.jsonl"), window=3, batch_rows=8)
    assert (summary.records, summary.rows, summary.failures, summary.complete) == (50, 48, 2, True)
    lines = read_jsonl(tmp_path / "out.jsonl")
    assert [line["id"] for line in lines] == [f"r{i}" for i in range(50) if i not in (7, 31)]
    for line in lines:
        i = int(line["id"][1:])
        np.testing.assert_array_equal(tensor(line, "y"), rows[i : i + 1] * 2)
    errors = read_jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert errors == [
        {"index": 7, "id": "r7", "code": "INVALID_ARGUMENT", "message": 'model "m": a negative input'},
        {"index": 31, "id": "r31", "code": "INVALID_ARGUMENT", "message": 'model "m": a negative input'},
    ]
    # Batches of up to 8 rows, the two rejected batches sent again row by row.
    assert max(rows for rows, *_ in servicer.requests) == 8
    assert sum(rows for rows, *_ in servicer.requests) == 50 + 16
    with open(tmp_path / "out.jsonl.checkpoint.json", encoding="utf-8") as file:
        assert json.load(file)["complete"] is True


def test_a_broken_stream_is_reopened_and_no_row_is_lost_or_repeated(served, tmp_path):
    client, servicer = served
    rows = np.arange(40 * 3, dtype=np.float32).reshape(40, 3)
    np.savez(tmp_path / "in.npz", input=rows)
    servicer.break_after = 9
    summary = batch_infer(client, "m", str(tmp_path / "in.npz"), str(tmp_path / "out.npz"), window=4)
    assert (summary.records, summary.failures, summary.retries) == (40, 0, 1)
    out = np.load(tmp_path / "out.npz")
    assert out["id"].tolist() == [str(i) for i in range(40)]
    np.testing.assert_array_equal(out["y"], rows * 2)


def test_sequences_get_start_and_end_and_are_replayed_from_their_start_after_a_break(served, tmp_path):
    client, servicer = served
    keys = ["7", "8", "7", "9", "8", "7", "9", "9", "8", "7"]
    rows = np.arange(len(keys) * 3, dtype=np.float32).reshape(-1, 3)
    write_csv(tmp_path / "in.csv", rows, keys)
    servicer.break_after = 6
    summary = batch_infer(client, "m", str(tmp_path / "in.csv"), str(tmp_path / "out.jsonl"), sequence_key="seq")
    assert (summary.records, summary.failures, summary.retries) == (10, 0, 1)
    lines = read_jsonl(tmp_path / "out.jsonl")
    assert [line["id"] for line in lines] == [f"r{i}" for i in range(10)]
    # The state carried by hand: each sequence's running sum.
    sums = {}
    for i, key in enumerate(keys):
        sums[key] = sums.get(key, 0) + rows[i]
        np.testing.assert_array_equal(tensor(lines[i], "s"), sums[key].reshape(1, 3), err_msg=f"row {i}")
    first = {k: keys.index(k) for k in set(keys)}
    last = {k: len(keys) - 1 - keys[::-1].index(k) for k in set(keys)}
    flags = [(int(k), i == first[k], i == last[k]) for i, k in enumerate(keys)]
    # Six answered, the stream broke; all three sequences were open: the whole dataset again, from START.
    assert [(seq, start, end) for _, seq, start, end in servicer.requests] == flags[:6] + flags
    assert servicer.state == {}  # every sequence ended


def test_max_failures_stops_the_job_and_a_resume_goes_on_without_repeating_an_error(served, tmp_path):
    client, _ = served
    rows = np.ones((30, 3), np.float32)
    rows[[3, 10, 20]] = -1
    write_csv(tmp_path / "in.csv", rows)
    with pytest.raises(BatchFailed, match="max_failures=1") as stopped:
        batch_infer(client, "m", str(tmp_path / "in.csv"), str(tmp_path / "out.csv"), max_failures=1, window=2)
    assert stopped.value.summary.failures == 2 and stopped.value.summary.records == 11
    summary = batch_infer(client, "m", str(tmp_path / "in.csv"), str(tmp_path / "out.csv"), resume=True)
    assert (summary.records, summary.failures, summary.resumed_from) == (30, 3, 11)
    assert [e["index"] for e in read_jsonl(tmp_path / "out.csv.errors.jsonl")] == [3, 10, 20]
    ids = [row[0] for row in csv.reader(open(tmp_path / "out.csv", encoding="utf-8"))]
    assert ids == ["id"] + [f"r{i}" for i in range(30) if i not in (3, 10, 20)]
    # A complete job is not run again.
    again = batch_infer(client, "m", str(tmp_path / "in.csv"), str(tmp_path / "out.csv"), resume=True)
    assert again.complete and again.requests == 0


def test_an_unknown_model_stops_before_anything_is_written(served, tmp_path):
    client, _ = served
    write_csv(tmp_path / "in.csv", np.ones((2, 3)))
    with pytest.raises(QuantaError) as caught:
        batch_infer(client, "nope", str(tmp_path / "in.csv"), str(tmp_path / "out.csv"))
    assert caught.value.code == grpc.StatusCode.NOT_FOUND
    assert not os.path.exists(tmp_path / "out.csv")


def test_option_checks(served, tmp_path):
    client, _ = served
    write_csv(tmp_path / "in.csv", np.ones((2, 3)))
    with pytest.raises(ValueError, match="batch_rows must be 1"):
        batch_infer(client, "m", str(tmp_path / "in.csv"), str(tmp_path / "o.csv"), sequence_key="seq", batch_rows=4)
    with pytest.raises(ValueError, match="resume needs a checkpoint"):
        batch_infer(client, "m", str(tmp_path / "in.csv"), str(tmp_path / "o.csv"), checkpoint=False, resume=True)


# ---- a live stack ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    with Client() as c:
        yield c


@pytest.fixture(scope="module")
def models(client, tmp_path_factory):
    """libs/onnx's demo models (MLP [N,4]->[N,3], CNN, LSTM), pushed and deployed under pyb-* names."""
    out = tmp_path_factory.mktemp("models")
    subprocess.run(
        [_node(), "--conditions=@quanta/source", "--import", "tsx", "libs/onnx/src/cli-build.ts", "--out", str(out)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    client.push_model(out / "mlp.onnx", "pyb-mlp")
    client.deploy("pyb-mlp", "pyb-mlp", max_batch_size=64, max_queue_delay_us=500)
    client.push_model(out / "cnn.onnx", "pyb-cnn")
    client.deploy("pyb-cnn", "pyb-cnn", max_batch_size=8, max_queue_delay_us=500)
    client.push_model(out / "lstm.onnx", "pyb-lstm")
    client.deploy("pyb-lstm", "pyb-lstm", sequence_state={"h": "hn", "c": "cn"})
    # The same LSTM without sequence state: the test feeds h and c itself.
    client.push_model(out / "lstm.onnx", "pyb-lstm-plain")
    client.deploy("pyb-lstm-plain", "pyb-lstm-plain")
    return out


def _node():
    return os.environ.get("QUANTA_NODE") or "node"


def per_row(client, model, rows, name="input"):
    """What ModelInfer answers for each row on its own."""
    return np.concatenate([client.infer(model, {name: rows[i : i + 1]})["output"] for i in range(len(rows))])


@live
def test_live_csv_with_client_batching_equals_per_row_model_infer(client, models, tmp_path):
    rows = np.random.default_rng(1).standard_normal((120, 4)).astype(np.float32)
    with open(tmp_path / "in.csv", "w", encoding="utf-8") as file:
        file.write("id,f0,f1,f2,f3\n")
        for i, row in enumerate(rows):
            file.write(f"c{i}," + ",".join(repr(float(v)) for v in row) + "\n")
        file.write("bad,1,2,three,4\n")
    summary = batch_infer(client, "pyb-mlp", str(tmp_path / "in.csv"), str(tmp_path / "out.csv"), batch_rows=16)
    assert (summary.records, summary.rows, summary.failures) == (121, 120, 1)
    assert summary.p50_ms is not None and summary.p99_ms >= summary.p50_ms and summary.rows_per_s > 0
    table = list(csv.reader(open(tmp_path / "out.csv", encoding="utf-8")))
    assert table[0] == ["id", "output_0", "output_1", "output_2"]
    assert [r[0] for r in table[1:]] == [f"c{i}" for i in range(120)]
    got = np.array([[float(v) for v in r[1:]] for r in table[1:]], np.float32)
    np.testing.assert_allclose(got, per_row(client, "pyb-mlp", rows), rtol=0, atol=1e-5)
    (error,) = read_jsonl(tmp_path / "out.csv.errors.jsonl")
    assert (error["index"], error["id"], error["code"]) == (120, "bad", "INVALID_ARGUMENT")
    assert "three" in error["message"]


@live
def test_live_npz_and_npy_columns_equal_per_row_model_infer(client, models, tmp_path):
    rows = np.random.default_rng(2).standard_normal((40, 4)).astype(np.float32)
    want = per_row(client, "pyb-mlp", rows)
    np.savez_compressed(tmp_path / "in.npz", input=rows, id=np.array([f"n{i}" for i in range(40)]))
    batch_infer(client, "pyb-mlp", str(tmp_path / "in.npz"), str(tmp_path / "out.npz"), batch_rows=8)
    out = np.load(tmp_path / "out.npz")
    assert out["id"].tolist() == [f"n{i}" for i in range(40)]
    np.testing.assert_allclose(out["output"], want, rtol=0, atol=1e-5)
    (tmp_path / "cols").mkdir()
    np.save(tmp_path / "cols" / "input.npy", rows)
    batch_infer(client, "pyb-mlp", str(tmp_path / "cols"), str(tmp_path / "cols-out"))
    assert sorted(os.listdir(tmp_path / "cols-out")) == ["id.npy", "output.npy"]
    np.testing.assert_allclose(np.load(tmp_path / "cols-out" / "output.npy"), want, rtol=0, atol=1e-5)


@live
def test_live_jsonl_and_npy_files_of_images_with_a_request_the_server_rejects(client, models, tmp_path):
    rng = np.random.default_rng(3)
    images = [rng.standard_normal((1 + i % 2, 3, 32, 32)).astype(np.float32) for i in range(6)]
    with open(tmp_path / "in.jsonl", "w", encoding="utf-8") as file:
        for i, image in enumerate(images):
            data = image.reshape(-1).tolist()
            tensor_json = {"name": "input", "datatype": "FP32", "shape": list(image.shape), "data": data}
            file.write(json.dumps({"id": f"img{i}", "inputs": [tensor_json]}) + "\n")
            if i == 2:  # the wrong image size: the server's INVALID_ARGUMENT, with its message
                small = {"name": "input", "datatype": "FP32", "shape": [1, 3, 16, 16], "data": [0.0] * 768}
                file.write(json.dumps({"id": "small", "inputs": [small]}) + "\n")
    summary = batch_infer(client, "pyb-cnn", str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl"), window=3)
    assert (summary.records, summary.rows, summary.failures) == (7, 9, 1)
    lines = read_jsonl(tmp_path / "out.jsonl")
    assert [line["id"] for line in lines] == [f"img{i}" for i in range(6)]
    for line, image in zip(lines, images):
        want = client.infer("pyb-cnn", {"input": image})["output"]
        np.testing.assert_allclose(tensor(line, "output"), want, rtol=0, atol=1e-5)
    (error,) = read_jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert (error["index"], error["id"], error["code"]) == (3, "small", "INVALID_ARGUMENT")
    assert error["message"] == client_error(client, "pyb-cnn", np.zeros((1, 3, 16, 16), np.float32))

    (tmp_path / "imgs").mkdir()
    for i, image in enumerate(images):
        np.save(tmp_path / "imgs" / f"img{i}.npy", image)
    batch_infer(client, "pyb-cnn", str(tmp_path / "imgs"), str(tmp_path / "imgs-out"), window=2)
    assert sorted(os.listdir(tmp_path / "imgs-out")) == [f"img{i}.npy" for i in range(6)]
    for line in lines:
        got = np.load(tmp_path / "imgs-out" / f"{line['id']}.npy")
        np.testing.assert_allclose(got, tensor(line, "output"), rtol=0, atol=0)


def client_error(client, model, image):
    with pytest.raises(QuantaError) as caught:
        client.infer(model, {"input": image})
    return caught.value.message


_KILLED_JOB = """
import sys
sys.path.insert(0, sys.argv[1])
from quanta_client import Client, batch_infer
batch_infer(Client(), "pyb-mlp", sys.argv[2], sys.argv[3], window=2, checkpoint_interval=0.3, resume=True)
"""


@live
def test_live_a_job_killed_with_sigkill_resumes_without_a_duplicate_or_missing_row(client, models, tmp_path):
    rows = np.random.default_rng(4).standard_normal((1500, 4)).astype(np.float32)
    with open(tmp_path / "in.csv", "w", encoding="utf-8") as file:
        file.write("id,f0,f1,f2,f3\n")
        for i, row in enumerate(rows):
            file.write(f"k{i}," + ",".join(repr(float(v)) for v in row) + "\n")
    source, sink = str(tmp_path / "in.csv"), str(tmp_path / "out.jsonl")
    checkpoint = tmp_path / "out.jsonl.checkpoint.json"
    package_root = os.path.dirname(os.path.dirname(__file__))
    job = subprocess.Popen([sys.executable, "-c", _KILLED_JOB, package_root, source, sink], env=os.environ)
    try:
        # Killed once a checkpoint is down and more rows than it counts have reached the file (the
        # sink's buffer spills between checkpoints): the resume must cut those off.
        until = time.monotonic() + 60
        while time.monotonic() < until and job.poll() is None:
            if checkpoint.exists():
                saved = json.loads(checkpoint.read_text())
                if saved["records"] >= 300 and os.path.getsize(sink) > saved["sink"]["bytes"]:
                    break
            time.sleep(0.005)
        assert job.poll() is None, "the job ended before it could be killed"
        os.kill(job.pid, signal.SIGKILL)
        job.wait()
    finally:
        if job.poll() is None:
            job.kill()
    saved = json.loads(checkpoint.read_text())
    assert not saved["complete"] and 300 <= saved["records"] < 1500
    assert os.path.getsize(sink) > saved["sink"]["bytes"]
    summary = batch_infer(client, "pyb-mlp", source, sink, resume=True, window=8)
    assert summary.resumed_from == saved["records"] and (summary.records, summary.failures) == (1500, 0)
    lines = read_jsonl(sink)
    assert [line["id"] for line in lines] == [f"k{i}" for i in range(1500)]
    got = np.concatenate([tensor(line, "output") for line in lines])
    np.testing.assert_allclose(got, per_row(client, "pyb-mlp", rows), rtol=0, atol=1e-5)


class _StopAfter(JsonlSink):
    """A JSON Lines sink that stops the job (as Ctrl-C would) when asked to write record ``stop_at``."""

    def __init__(self, path, stop_at):
        super().__init__(path)
        self.stop_at = stop_at

    def write(self, record, outputs):
        if record.index == self.stop_at:
            raise KeyboardInterrupt
        super().write(record, outputs)


@live
def test_live_an_lstm_sequence_dataset_equals_the_state_carried_by_hand(client, models, tmp_path):
    rng = np.random.default_rng(5)
    # Three interleaved sequences of 5, 3 and 4 steps; ids of both kinds.
    keys = [21, "walk-b", 21, 23, "walk-b", 21, 23, 23, "walk-b", 21, 23, 21]
    steps = rng.standard_normal((len(keys), 1, 1, 4)).astype(np.float32)
    with open(tmp_path / "in.jsonl", "w", encoding="utf-8") as file:
        for i, (key, x) in enumerate(zip(keys, steps)):
            x_json = {"name": "x", "datatype": "FP32", "shape": [1, 1, 4], "data": x.reshape(-1).tolist()}
            file.write(json.dumps({"id": f"s{i}", "walk": key, "inputs": [x_json]}) + "\n")
    # By hand: the stateless deployment, h and c fed back from each step's hn and cn.
    state = {}
    want = []
    for key, x in zip(keys, steps):
        h, c = state.get(key, (np.zeros((1, 1, 8), np.float32), np.zeros((1, 1, 8), np.float32)))
        out = client.infer("pyb-lstm-plain", {"x": x, "h": h, "c": c})
        state[key] = (out["hn"], out["cn"])
        want.append(out)
    source, sink = str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl")
    # Stopped while sequence 21 is open (its 3rd of 5 steps is not yet written), then resumed:
    # sequences 21 and walk-b are replayed from their first steps.
    with pytest.raises(KeyboardInterrupt):
        stopping = _StopAfter(sink, stop_at=5)
        options = {"sequence_key": "walk", "outputs": ["y", "hn"]}
        batch_infer(client, "pyb-lstm", source, stopping, checkpoint_interval=0, **options)
    assert json.loads((tmp_path / "out.jsonl.checkpoint.json").read_text())["records"] == 5
    summary = batch_infer(client, "pyb-lstm", source, sink, resume=True, **options)
    assert (summary.records, summary.failures, summary.resumed_from) == (12, 0, 5)
    lines = read_jsonl(sink)
    assert [line["id"] for line in lines] == [f"s{i}" for i in range(12)]
    for i, line in enumerate(lines):
        for name in ("y", "hn"):
            what = f"step {i} ({keys[i]!r}), {name}"
            np.testing.assert_allclose(tensor(line, name), want[i][name], rtol=0, atol=1e-5, err_msg=what)
