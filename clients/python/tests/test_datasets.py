"""Batch datasets without a server: every source read back record by record, every sink cut back to a
checkpointed state and finished, with the files checked by numpy and the csv/json modules."""

import csv
import json
import os

import numpy as np
import pytest

from quanta_client.datasets import (
    CsvSink,
    JsonlSink,
    NpyColumnsSink,
    NpyFilesSink,
    NpzSink,
    Record,
    TensorSpec,
    format_of,
    open_sink,
    open_source,
)

ONE_INPUT = [TensorSpec("input", "FP32", (-1, 3))]


def test_format_of_reads_the_suffix_and_refuses_parquet(tmp_path):
    names = ("a.npz", "a.JSONL", "a.ndjson", "a.csv", "folder")
    assert [format_of(p) for p in names] == ["npz", "jsonl", "jsonl", "csv", "npy"]
    assert format_of("x.data", "csv") == "csv"
    with pytest.raises(ValueError, match="pyarrow"):
        format_of("a.parquet")
    with pytest.raises(ValueError, match="format="):
        format_of(str(tmp_path / "a.bin"))


def test_csv_source_maps_the_columns_to_a_2d_input_of_the_models_datatype(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("id,a,seq,b,c\nr0,1.5,7,2,3\nr1,4,7,5,6\n\nr2,7,8,oops,9\nr3,1,8\n", encoding="utf-8")
    source = open_source(str(path), inputs=ONE_INPUT)
    source.open(ONE_INPUT, "seq")
    records = list(source.records())
    assert [(r.index, r.id, r.key) for r in records] == [(0, "r0", "7"), (1, "r1", "7"), (2, "r2", "8"), (3, "r3", "8")]
    assert records[0].inputs["input"].dtype == np.float32
    np.testing.assert_array_equal(records[1].inputs["input"], np.array([[4, 5, 6]], np.float32))
    assert records[0].error is None and records[1].rows == 1
    assert "oops" in records[2].error and "3 columns" in records[3].error
    assert [r.id for r in source.records(2)] == ["r2", "r3"]
    assert list(source.keys()) == ["7", "7", "8", "8"] and source.count() == 4


def test_csv_source_without_an_id_column_numbers_the_rows_and_maps_named_columns(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n", encoding="utf-8")
    specs = [TensorSpec("x", "INT64", (-1, 2)), TensorSpec("y", "FP64", (-1, 1))]
    source = open_source(str(path), columns={"x": ["a", "c"], "y": ["b"]})
    source.open(specs, None)
    (first, second) = source.records()
    assert (first.id, second.id) == ("0", "1")
    assert second.inputs["x"].dtype == np.int64 and second.inputs["x"].tolist() == [[4, 6]]
    assert second.inputs["y"].dtype == np.float64 and second.inputs["y"].tolist() == [[5.0]]
    with pytest.raises(ValueError, match="input_name"):
        open_source(str(path)).open(specs, None)


def test_jsonl_source_reads_kserve_tensors_flat_or_nested_and_bytes(tmp_path):
    path = tmp_path / "requests.jsonl"
    lines = [
        {"id": "a", "seq": 3, "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]},
        {"inputs": [{"name": "input", "datatype": "FP16", "shape": [2, 3], "data": [[1, 2, 3], [4, 5, 6]]}]},
        {"id": "t", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["héllo", "x"]}]},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\n\n{not json\n"
    text += json.dumps({"id": "z", "inputs": [{"name": "input"}]}) + "\n"
    path.write_text(text, encoding="utf-8")
    source = open_source(str(path))
    source.open(ONE_INPUT, "seq")
    records = list(source.records())
    assert [(r.id, r.key) for r in records[:3]] == [("a", 3), ("1", None), ("t", None)]
    assert records[0].inputs["input"].dtype == np.float32
    half = records[1].inputs["input"]
    assert half.dtype == np.float16 and half.shape == (2, 3) and records[1].rows == 2
    assert records[2].inputs["text"].tolist() == ["héllo".encode("utf-8"), b"x"]
    assert records[3].error.startswith("line 4:") and "missing 'datatype'" in records[4].error
    assert [r.index for r in source.records(3)] == [3, 4]
    assert list(source.keys()) == [3, None, None, None, None] and source.count() == 5


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_source_streams_rows_from_the_members_with_ids_and_keys(tmp_path, compressed):
    path = tmp_path / "data.npz"
    x = np.arange(5 * 2 * 3, dtype=">f8").reshape(5, 2, 3)  # big-endian on disk: read back native
    f = np.asfortranarray(np.arange(10, dtype=np.int32).reshape(5, 2))  # Fortran order: read whole
    ids, seq = np.array(["a", "b", "c", "d", "e"]), np.array([1, 1, 2, 2, 1])
    (np.savez_compressed if compressed else np.savez)(path, x=x, f=f, id=ids, seq=seq)
    specs = [TensorSpec("x", "FP64", (-1, 2, 3)), TensorSpec("f", "INT32", (-1, 2))]
    source = open_source(str(path), inputs=specs)
    source.open(specs, "seq")
    records = list(source.records(1))
    assert [(r.index, r.id, r.key) for r in records] == [(1, "b", 1), (2, "c", 2), (3, "d", 2), (4, "e", 1)]
    for r in records:
        assert r.inputs["x"].dtype == np.float64 and r.inputs["x"].dtype.isnative
        np.testing.assert_array_equal(r.inputs["x"], x[r.index : r.index + 1])
        np.testing.assert_array_equal(r.inputs["f"], f[r.index : r.index + 1])
    assert list(source.keys()) == [1, 1, 2, 2, 1] and source.count() == 5
    with pytest.raises(ValueError, match="no array for input"):
        open_source(str(path)).open([TensorSpec("nope", "FP32", ())], None)


def test_a_folder_is_columns_when_it_holds_every_input_else_one_request_per_file(tmp_path):
    columns = tmp_path / "columns"
    columns.mkdir()
    np.save(columns / "input.npy", np.arange(12, dtype=np.float32).reshape(4, 3))
    np.save(columns / "id.npy", np.array(["w", "x", "y", "z"]))
    source = open_source(str(columns), inputs=ONE_INPUT)
    source.open(ONE_INPUT, None)
    assert source.layout == "columns"
    assert [(r.id, r.inputs["input"].tolist()) for r in source.records(2)] == [("y", [[6, 7, 8]]), ("z", [[9, 10, 11]])]

    files = tmp_path / "files"
    (files / "b").mkdir(parents=True)
    np.save(files / "a.npy", np.ones((2, 3), np.float32))
    np.save(files / "b" / "input.npy", np.zeros((1, 3), np.float32))
    (files / "c.npy").write_bytes(b"not an npy")
    (files / "notes.txt").write_text("ignored")
    source = open_source(str(files), inputs=ONE_INPUT)
    source.open(ONE_INPUT, None)
    assert source.layout == "files" and source.count() == 3
    a, b, c = source.records()
    assert (a.id, a.rows, b.id, b.inputs["input"].shape) == ("a", 2, "b", (1, 3))
    assert c.error is not None and c.id == "c.npy"
    with pytest.raises(ValueError, match="sequence key"):
        source.open(ONE_INPUT, "seq")


def rec(index, rows=1):
    return Record(index, f"r{index}", {"input": np.zeros((rows, 3), np.float32)})


def outputs(index, rows=1):
    return {"y": np.full((rows, 2), index, np.float32), "n": np.full((rows,), index, np.int64)}


def test_jsonl_and_csv_sinks_cut_back_to_a_checkpointed_state(tmp_path):
    for cls, path in ((JsonlSink, tmp_path / "out.jsonl"), (CsvSink, tmp_path / "out.csv")):
        sink = cls(str(path))
        sink.open(None)
        for i in range(3):
            sink.write(rec(i), outputs(i))
        state = sink.state()
        sink.write(rec(3), outputs(3))  # written after the checkpoint: a crash here leaves it on disk
        sink.state()
        sink.close()
        again = cls(str(path))
        again.open(state)
        for i in range(3, 5):
            again.write(rec(i), outputs(i))
        again.finish()
        again.close()
        if cls is JsonlSink:
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            assert [line["id"] for line in lines] == ["r0", "r1", "r2", "r3", "r4"]
            assert lines[4]["outputs"] == [
                {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [4.0, 4.0]},
                {"name": "n", "datatype": "INT64", "shape": [1], "data": [4]},
            ]
        else:
            rows = list(csv.reader(path.open()))
            assert rows[0] == ["id", "y_0", "y_1", "n"]
            assert [r[0] for r in rows[1:]] == ["r0", "r1", "r2", "r3", "r4"]
            assert rows[5] == ["r4", "4.0", "4.0", "4"]


@pytest.mark.parametrize("cls", [NpzSink, NpyColumnsSink])
def test_array_sinks_spool_rows_and_assemble_them_at_the_end(tmp_path, cls):
    path = str(tmp_path / ("out.npz" if cls is NpzSink else "out"))
    sink = cls(path)
    sink.open(None)
    sink.write(rec(0), outputs(0))
    sink.write(rec(1, rows=2), outputs(1, rows=2))
    state = sink.state()
    sink.write(rec(2), outputs(2))
    sink.close()
    again = cls(path)
    again.open(json.loads(json.dumps(state)))  # as a checkpoint file gives it back
    again.write(rec(3), outputs(3))
    with pytest.raises(ValueError, match="earlier records gave"):
        again.write(rec(4), {"y": np.zeros((1, 5), np.float32), "n": np.zeros((1,), np.int64)})
    again.finish()
    loaded = np.load(path) if cls is NpzSink else {n[:-4]: np.load(os.path.join(path, n)) for n in os.listdir(path)}
    assert sorted(loaded.keys()) == ["id", "n", "y"]
    assert loaded["id"].tolist() == ["r0", "r1/0", "r1/1", "r3"]
    assert loaded["n"].tolist() == [0, 1, 1, 3] and loaded["y"].dtype == np.float32 and loaded["y"].shape == (4, 2)
    assert not os.path.exists(path + ".parts")


def test_npy_files_sink_writes_one_file_per_record_and_removes_a_failed_ones(tmp_path):
    sink = open_sink(str(tmp_path / "out"), layout="files")
    assert isinstance(sink, NpyFilesSink)
    sink.open(None)
    sink.write(rec(0), {"y": np.ones((1, 2), np.float32)})
    sink.write(rec(1), outputs(1))
    assert sink.state() == {"records": 2}
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "r0.npy"), np.ones((1, 2), np.float32))
    assert sorted(os.listdir(tmp_path / "out" / "r1")) == ["n.npy", "y.npy"]
    sink.failed(rec(0))
    sink.failed(rec(1))
    assert os.listdir(tmp_path / "out") == []
    with pytest.raises(ValueError, match="cannot name a file"):
        sink.write(Record(2, "../x", {}), outputs(2))


def test_jsonl_sink_writes_float32_as_the_shortest_decimal_that_reads_back_the_same(tmp_path):
    sink = JsonlSink(str(tmp_path / "out.jsonl"))
    sink.open(None)
    values = np.array([[0.1, 1e-45, -3.4028235e38, 0.14539704]], np.float32)
    sink.write(rec(0), {"y": values})
    sink.close()
    text = (tmp_path / "out.jsonl").read_text()
    assert '"data":[0.1,1e-45,-3.4028235e+38,0.14539704]' in text
    data = json.loads(text)["outputs"][0]["data"]
    assert np.array(data, np.float32).tobytes() == values.tobytes()
