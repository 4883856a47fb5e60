"""Datasets for batch inference: sources that read records in order and sinks that append results.

A *record* is one request's worth of input: an id, ``{input name: array}`` (dim 0 counts its
rows), and, for stateful models, the value of the sequence key. Sources read their file a
record at a time (an ``.npz`` member, a CSV or a JSON Lines file is never read whole), so a
dataset of any size streams in bounded memory. Sinks append results in input order and can be
cut back to an earlier ``state()``, which is what a checkpoint records: after a crash, the sink
is truncated to the last checkpoint and the job goes on from there, with no duplicate and no
missing row.

Formats, chosen from the path (``format=`` to say it):

- a folder of ``.npy`` files: ``ID.npy`` is one request of the model's only input (or
  ``input_name``), a subfolder ``ID/`` holds one ``INPUT.npy`` per input name; or, when the
  folder holds one ``INPUT.npy`` per model input ("columns"), each file's rows (dim 0) are the
  records, with ids from ``id.npy`` and sequence keys from ``KEY.npy`` when present. Results go
  to ``ID.npy`` (``ID/OUTPUT.npy`` for several outputs), or ``OUTPUT.npy`` + ``id.npy``.
- ``.npz``: arrays named after the inputs, one record per row; results as one array per output
  and ``id``.
- ``.jsonl``: one request per line, ``{"id": ..., "inputs": [KServe v2 JSON tensors]}``;
  results ``{"id": ..., "outputs": [...]}``.
- ``.csv``: a header line; every column but the id and key columns goes, in order, into the
  2-D input (``[1, columns]`` per row); results one line per row: ``id`` then each output's
  values (``NAME`` or ``NAME_0``, ``NAME_1``, ...).

Parquet is not read: Debian (bookworm) packages no ``pyarrow``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import zipfile
from typing import Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .tensors import _FIXED, datatype_of

FORMATS = ("npy", "npz", "jsonl", "csv")


class TensorSpec(NamedTuple):
    """A model input or output, as ModelMetadata gives it."""

    name: str
    datatype: str
    shape: Tuple[int, ...]


class Record(NamedTuple):
    """One request's input: ``index`` (0-based position in the source), ``id``, ``inputs``.

    ``key`` is the sequence key's value (None without one); ``error`` says why the source could
    not read this record (the row goes to the errors file, the job goes on).
    """

    index: int
    id: str
    inputs: Dict[str, np.ndarray]
    key: object = None
    error: Optional[str] = None

    @property
    def rows(self) -> int:
        for value in self.inputs.values():
            return int(value.shape[0]) if value.ndim else 1
        return 0


def dtype_of(datatype: str) -> np.dtype:
    """The numpy dtype a KServe datatype is read into (BYTES: object arrays of bytes)."""
    if datatype == "BYTES":
        return np.dtype(object)
    if datatype == "BF16":
        return np.dtype(np.float32)
    dtype = _FIXED.get(datatype)
    if dtype is None:
        raise ValueError(f"unknown KServe datatype {datatype!r}")
    return dtype.newbyteorder("=")


def format_of(path: str, format: Optional[str] = None) -> str:
    """The format of ``path``: ``format`` when given, else from the suffix (a folder, or no suffix: npy)."""
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"unknown dataset format {format!r}; use one of {', '.join(FORMATS)}")
        return format
    lower = path.lower()
    if lower.endswith(".parquet"):
        raise ValueError("Parquet is not read here (Debian packages no pyarrow): convert it to CSV or .npz")
    for suffix, fmt in ((".npz", "npz"), (".jsonl", "jsonl"), (".ndjson", "jsonl"), (".csv", "csv")):
        if lower.endswith(suffix):
            return fmt
    if os.path.isdir(path) or "." not in os.path.basename(path.rstrip("/")):
        return "npy"
    raise ValueError(f"cannot tell the format of {path!r} from its name: say format= (one of {', '.join(FORMATS)})")


def _only_input(inputs: Sequence[TensorSpec], input_name: Optional[str], what: str) -> TensorSpec:
    if input_name is not None:
        for spec in inputs:
            if spec.name == input_name:
                return spec
        return TensorSpec(input_name, "", ())
    if len(inputs) != 1:
        names = ", ".join(s.name for s in inputs)
        raise ValueError(f"{what} feeds one input, and the model has {len(inputs)} ({names}): say input_name=")
    return inputs[0]


# ---- sources ----------------------------------------------------------------------------------


class Source:
    """Records in order. ``open`` binds the model's inputs and the sequence key, once, before reading."""

    path: str
    layout = ""

    def open(self, inputs: Sequence[TensorSpec], sequence_key: Optional[str]) -> None:
        self.inputs = list(inputs)
        self.sequence_key = sequence_key

    def records(self, start: int = 0) -> Iterator[Record]:
        """The records from index ``start`` on."""
        raise NotImplementedError

    def keys(self) -> Iterator[object]:
        """Each record's sequence key, in order (a pass that may skip reading the tensors)."""
        for record in self.records():
            yield record.key

    def count(self) -> Optional[int]:
        """How many records there are, when that is cheap to tell (for the progress line's ETA)."""
        return None


def _count_lines(path: str, skip: int = 0) -> int:
    count = 0
    last = b"\n"
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            count += block.count(b"\n")
            last = block[-1:]
    if last != b"\n":
        count += 1
    return max(0, count - skip)


class JsonlSource(Source):
    """One request per line: ``{"id": "r1", "inputs": [{"name", "datatype", "shape", "data"}], KEY: ...}``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _lines(self, start: int) -> Iterator[Tuple[int, str]]:
        index = 0
        with open(self.path, "r", encoding="utf-8") as file:
            for line in file:
                if not line.strip():
                    continue
                if index >= start:
                    yield index, line
                index += 1

    def _parse(self, index: int, line: str) -> Record:
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError("a line must be a JSON object")
            record_id = str(item.get("id", index))
        except ValueError as error:
            return Record(index, str(index), {}, None, f"line {index + 1}: {error}")
        key = item.get(self.sequence_key) if self.sequence_key else None
        try:
            tensors = item.get("inputs")
            if not isinstance(tensors, list) or not tensors:
                raise ValueError('"inputs" must be a non-empty list of tensors')
            inputs = {}
            for tensor in tensors:
                name, datatype, shape = tensor["name"], tensor["datatype"], tensor["shape"]
                data = tensor["data"]
                if datatype == "BYTES":
                    flat = np.asarray(data, dtype=object).reshape(-1)
                    array = np.empty(flat.shape, dtype=object)
                    array[:] = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in flat]
                    inputs[name] = array.reshape(shape)
                else:
                    inputs[name] = np.asarray(data, dtype=dtype_of(datatype)).reshape(shape)
        except (KeyError, TypeError, ValueError) as error:
            what = f"missing {error}" if isinstance(error, KeyError) else str(error)
            return Record(index, record_id, {}, key, f"line {index + 1}: {what}")
        return Record(index, record_id, inputs, key)

    def records(self, start: int = 0) -> Iterator[Record]:
        for index, line in self._lines(start):
            yield self._parse(index, line)

    def keys(self) -> Iterator[object]:
        for index, line in self._lines(0):
            try:
                yield json.loads(line).get(self.sequence_key)
            except (ValueError, AttributeError):
                yield None

    def count(self) -> Optional[int]:
        return sum(1 for _ in self._lines(0))


class CsvSource(Source):
    """A header line, then one row per record: the id column, the key column, the rest into one 2-D input.

    ``columns``: ``{input name: [column, ...]}`` for a model of several inputs; otherwise every
    other column, in order, goes to the model's only input (or ``input_name``), converted to its
    datatype.
    """

    def __init__(
        self,
        path: str,
        *,
        id_column: Optional[str] = "id",
        columns: Optional[Mapping[str, Sequence[str]]] = None,
        input_name: Optional[str] = None,
    ) -> None:
        self.path = path
        self.id_column = id_column
        self.columns = columns
        self.input_name = input_name

    def open(self, inputs: Sequence[TensorSpec], sequence_key: Optional[str]) -> None:
        super().open(inputs, sequence_key)
        with open(self.path, "r", encoding="utf-8", newline="") as file:
            header = next(csv.reader(file), None)
        if not header:
            raise ValueError(f"{self.path}: a CSV source needs a header line")
        self.header = header
        position = {name: i for i, name in enumerate(header)}
        self.id_at = position.get(self.id_column) if self.id_column else None
        self.key_at = None
        if sequence_key is not None:
            if sequence_key not in position:
                names = ", ".join(header)
                raise ValueError(f"{self.path}: no column {sequence_key!r} (the sequence key); columns: {names}")
            self.key_at = position[sequence_key]
        datatypes = {spec.name: spec.datatype for spec in inputs}
        if self.columns is not None:
            groups = dict(self.columns)
        else:
            spec = _only_input(inputs, self.input_name, "a CSV file")
            groups = {spec.name: [c for i, c in enumerate(header) if i not in (self.id_at, self.key_at)]}
        self.groups: List[Tuple[str, np.dtype, List[int]]] = []
        for name, names in groups.items():
            missing = [c for c in names if c not in position]
            if missing:
                raise ValueError(f"{self.path}: no column(s) {', '.join(missing)} for input {name!r}")
            dtype = dtype_of(datatypes.get(name) or "FP32")
            self.groups.append((name, dtype, [position[c] for c in names]))

    def _rows(self, start: int) -> Iterator[Tuple[int, List[str]]]:
        with open(self.path, "r", encoding="utf-8", newline="") as file:
            reader = csv.reader(file)
            next(reader, None)
            index = 0
            for row in reader:
                if not row:
                    continue
                if index >= start:
                    yield index, row
                index += 1

    def records(self, start: int = 0) -> Iterator[Record]:
        width = len(self.header)
        for index, row in self._rows(start):
            record_id = row[self.id_at] if self.id_at is not None and self.id_at < len(row) else str(index)
            key = row[self.key_at] if self.key_at is not None and self.key_at < len(row) else None
            if len(row) != width:
                yield Record(index, record_id, {}, key, f"row {index + 1}: {len(row)} columns, the header has {width}")
                continue
            try:
                inputs = {name: np.array([[row[i] for i in at]]).astype(dtype) for name, dtype, at in self.groups}
            except ValueError as error:
                yield Record(index, record_id, {}, key, f"row {index + 1}: {error}")
                continue
            yield Record(index, record_id, inputs, key)

    def keys(self) -> Iterator[object]:
        for _, row in self._rows(0):
            yield row[self.key_at] if self.key_at is not None and self.key_at < len(row) else None

    def count(self) -> Optional[int]:
        return sum(1 for _ in self._rows(0))


class _NpyStream:
    """One ``.npy`` (a file or an ``.npz`` member) read a row (dim 0) at a time."""

    def __init__(self, file: io.BufferedIOBase, what: str) -> None:
        version = np.lib.format.read_magic(file)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(file)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(file)
        if dtype.hasobject:
            raise ValueError(f"{what}: object arrays (pickles) are not read; store BYTES inputs as JSON Lines")
        if not shape:
            raise ValueError(f"{what}: a 0-d array has no rows")
        self.file, self.shape, self.dtype, self.fortran = file, tuple(shape), dtype, fortran and len(shape) > 1
        self.row_shape = (1,) + self.shape[1:]
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * dtype.itemsize
        self.whole: Optional[np.ndarray] = None
        if self.fortran:
            # Fortran order keeps no row contiguous: such an array is read whole.
            count = int(np.prod(self.shape, dtype=np.int64))
            self.whole = np.frombuffer(file.read(count * dtype.itemsize), dtype=dtype).reshape(self.shape, order="F")
        self.start = file.tell() if self.whole is None and file.seekable() else None
        self.at = 0

    def seek(self, row: int) -> None:
        if self.whole is not None:
            self.at = row
        elif self.start is not None:
            self.file.seek(self.start + row * self.row_bytes)
            self.at = row
        else:
            while self.at < row:
                self.read()

    def read(self) -> np.ndarray:
        if self.whole is not None:
            out = np.array(self.whole[self.at : self.at + 1])
        else:
            data = self.file.read(self.row_bytes)
            if len(data) != self.row_bytes:
                raise ValueError(f"the array ends at row {self.at} of {self.shape[0]}")
            native = self.dtype.newbyteorder("=")
            out = np.frombuffer(data, dtype=self.dtype).astype(native, copy=True).reshape(self.row_shape)
        self.at += 1
        return out


class _ColumnsSource(Source):
    """Arrays named after the inputs, one record per row; ``id`` and the sequence key as arrays of their own."""

    layout = "columns"

    def _names(self) -> List[str]:
        raise NotImplementedError

    def _open_array(self, name: str) -> Tuple[io.BufferedIOBase, object]:
        raise NotImplementedError

    def open(self, inputs: Sequence[TensorSpec], sequence_key: Optional[str]) -> None:
        super().open(inputs, sequence_key)
        names = self._names()
        wanted = [spec.name for spec in inputs]
        missing = [n for n in wanted if n not in names]
        if missing:
            raise ValueError(f"{self.path}: no array for input(s) {', '.join(missing)}; it has {', '.join(names)}")
        if sequence_key is not None and sequence_key not in names:
            raise ValueError(f"{self.path}: no array {sequence_key!r} (the sequence key); it has {', '.join(names)}")
        self.input_names = wanted
        self.has_id = "id" in names and "id" not in wanted
        rows = set()
        for name in wanted:
            with self._reader(name) as stream:
                rows.add(stream.shape[0])
        if len(rows) > 1:
            raise ValueError(f"{self.path}: the input arrays disagree on the number of rows (dim 0): {sorted(rows)}")
        self.rows = rows.pop() if rows else 0
        self.ids = [str(v) for v in self._small("id")] if self.has_id else None
        if self.ids is not None and len(self.ids) != self.rows:
            raise ValueError(f"{self.path}: id has {len(self.ids)} entries for {self.rows} rows")

    def _small(self, name: str) -> list:
        """A 1-D array (ids, sequence keys) as a list: it is read whole, which a label column allows."""
        file, closer = self._open_array(name)
        try:
            return np.load(file, allow_pickle=False).reshape(-1).tolist()  # type: ignore[arg-type]
        finally:
            closer()  # type: ignore[operator]

    class _Reader:
        def __init__(self, source: "_ColumnsSource", name: str) -> None:
            self.file, self.closer = source._open_array(name)
            self.stream = _NpyStream(self.file, f"{source.path}: {name}")

        def __enter__(self) -> _NpyStream:
            return self.stream

        def __exit__(self, *exc: object) -> None:
            self.closer()  # type: ignore[operator]

    def _reader(self, name: str) -> "_ColumnsSource._Reader":
        return _ColumnsSource._Reader(self, name)

    def records(self, start: int = 0) -> Iterator[Record]:
        readers = [self._reader(name) for name in self.input_names]
        keys = self._small(self.sequence_key) if self.sequence_key else None
        try:
            streams = [r.stream for r in readers]
            for stream in streams:
                stream.seek(start)
            for index in range(start, self.rows):
                inputs = {name: stream.read() for name, stream in zip(self.input_names, streams)}
                record_id = self.ids[index] if self.ids is not None else str(index)
                yield Record(index, record_id, inputs, keys[index] if keys is not None else None)
        finally:
            for reader in readers:
                reader.closer()  # type: ignore[operator]

    def keys(self) -> Iterator[object]:
        yield from self._small(self.sequence_key) if self.sequence_key else [None] * self.rows

    def count(self) -> Optional[int]:
        return self.rows


class NpzSource(_ColumnsSource):
    """An ``.npz``: each input's array is read from its zip member a row at a time."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _names(self) -> List[str]:
        with zipfile.ZipFile(self.path) as archive:
            return [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]

    def _open_array(self, name: str) -> Tuple[io.BufferedIOBase, object]:
        archive = zipfile.ZipFile(self.path)
        member = archive.open(name + ".npy")

        def close() -> None:
            member.close()
            archive.close()

        return member, close  # type: ignore[return-value]


class NpyColumnsSource(_ColumnsSource):
    """A folder with one ``INPUT.npy`` per model input, rows along dim 0."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _names(self) -> List[str]:
        return sorted(n[:-4] for n in os.listdir(self.path) if n.endswith(".npy"))

    def _open_array(self, name: str) -> Tuple[io.BufferedIOBase, object]:
        file = open(os.path.join(self.path, name + ".npy"), "rb")
        return file, file.close  # type: ignore[return-value]


class NpyFilesSource(Source):
    """A folder of requests, in name order: ``ID.npy`` (the model's only input, or ``input_name``), ``ID/INPUT.npy``."""

    layout = "files"

    def __init__(self, path: str, *, input_name: Optional[str] = None) -> None:
        self.path = path
        self.input_name = input_name

    def open(self, inputs: Sequence[TensorSpec], sequence_key: Optional[str]) -> None:
        super().open(inputs, sequence_key)
        if sequence_key is not None:
            raise ValueError(
                f"{self.path}: a folder of one request per file has no sequence key: "
                "use the columns layout, .npz, JSON Lines or CSV"
            )
        self.entries = sorted(
            e for e in os.listdir(self.path) if e.endswith(".npy") or os.path.isdir(os.path.join(self.path, e))
        )
        self.single = None
        if any(e.endswith(".npy") for e in self.entries):
            self.single = _only_input(inputs, self.input_name, "a folder of ID.npy files").name

    def records(self, start: int = 0) -> Iterator[Record]:
        for index in range(start, len(self.entries)):
            entry = self.entries[index]
            full = os.path.join(self.path, entry)
            try:
                if entry.endswith(".npy") and not os.path.isdir(full):
                    record_id = entry[:-4]
                    inputs = {self.single: np.load(full, allow_pickle=False)}
                else:
                    record_id = entry
                    files = sorted(f for f in os.listdir(full) if f.endswith(".npy"))
                    inputs = {f[:-4]: np.load(os.path.join(full, f), allow_pickle=False) for f in files}
                    if not inputs:
                        raise ValueError("the folder holds no INPUT.npy")
            except (OSError, ValueError) as error:
                yield Record(index, entry, {}, None, f"{entry}: {error}")
                continue
            yield Record(index, record_id, inputs)  # type: ignore[arg-type]

    def keys(self) -> Iterator[object]:
        return iter([None] * len(self.entries))

    def count(self) -> Optional[int]:
        return len(self.entries)


def open_source(
    path: str,
    format: Optional[str] = None,
    *,
    inputs: Sequence[TensorSpec] = (),
    input_name: Optional[str] = None,
    id_column: Optional[str] = "id",
    columns: Optional[Mapping[str, Sequence[str]]] = None,
) -> Source:
    """The source of ``path`` in ``format`` (from its name when None); a folder is read as columns
    when it holds an ``INPUT.npy`` for every model input in ``inputs``, else as one request per file."""
    fmt = format_of(path, format)
    if fmt == "npz":
        return NpzSource(path)
    if fmt == "jsonl":
        return JsonlSource(path)
    if fmt == "csv":
        return CsvSource(path, id_column=id_column, columns=columns, input_name=input_name)
    if not os.path.isdir(path):
        raise ValueError(f"{path}: not a folder (a folder of .npy files was expected)")
    names = {n[:-4] for n in os.listdir(path) if n.endswith(".npy")}
    if inputs and all(spec.name in names for spec in inputs):
        return NpyColumnsSource(path)
    return NpyFilesSource(path, input_name=input_name)


# ---- sinks ------------------------------------------------------------------------------------


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Sink:
    """Results in input order. ``open(state)`` starts afresh (None) or cuts back to a ``state()``."""

    path: str

    def open(self, state: Optional[dict]) -> None:
        raise NotImplementedError

    def write(self, record: Record, outputs: Mapping[str, np.ndarray]) -> None:
        raise NotImplementedError

    def failed(self, record: Record) -> None:
        """``record`` went to the errors file: whatever an earlier run wrote for it goes."""

    def state(self) -> dict:
        """Flushes to disk and says how far the sink is, for the checkpoint."""
        raise NotImplementedError

    def finish(self) -> None:
        """After the last record: completes the file(s)."""

    def close(self) -> None:
        pass


class _AppendSink(Sink):
    """A text file appended to, cut back to a byte length on resume."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.file: Optional[io.TextIOWrapper] = None

    def open(self, state: Optional[dict]) -> None:
        if state is None:
            self.file = open(self.path, "w", encoding="utf-8", newline="")
        else:
            self.file = open(self.path, "r+", encoding="utf-8", newline="")
            self.file.truncate(int(state["bytes"]))
            self.file.seek(0, os.SEEK_END)

    def state(self) -> dict:
        assert self.file is not None
        self.file.flush()
        os.fsync(self.file.fileno())
        return {"bytes": self.file.tell()}

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _json_tensor(name: str, array: np.ndarray) -> dict:
    datatype = datatype_of(array)
    if datatype == "BYTES":
        data: list = [bytes(v).decode("utf-8", errors="replace") for v in array.reshape(-1).tolist()]
    elif datatype in ("FP16", "FP32"):
        # The shortest decimal that reads back as the same float32 (or float16), not its float64 expansion.
        data = [float(str(v)) for v in array.reshape(-1)]
    else:
        data = array.reshape(-1).tolist()
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}


class JsonlSink(_AppendSink):
    """One line per record: ``{"id": ..., "outputs": [{"name", "datatype", "shape", "data"}]}``."""

    def write(self, record: Record, outputs: Mapping[str, np.ndarray]) -> None:
        assert self.file is not None
        line = {"id": record.id, "outputs": [_json_tensor(n, a) for n, a in outputs.items()]}
        self.file.write(json.dumps(line, separators=(",", ":")) + "\n")


class CsvSink(_AppendSink):
    """A header line, then one line per output row: ``id`` and each output's values."""

    def open(self, state: Optional[dict]) -> None:
        super().open(state)
        self.writer = csv.writer(self.file, lineterminator="\n")  # type: ignore[arg-type]
        self.header_written = state is not None and int(state["bytes"]) > 0

    def write(self, record: Record, outputs: Mapping[str, np.ndarray]) -> None:
        flat = {name: array.reshape(array.shape[0] if array.ndim else 1, -1) for name, array in outputs.items()}
        if not self.header_written:
            header = ["id"]
            for name, array in flat.items():
                header += [name] if array.shape[1] == 1 else [f"{name}_{i}" for i in range(array.shape[1])]
            self.writer.writerow(header)
            self.header_written = True
        rows = max((a.shape[0] for a in flat.values()), default=0)
        for j in range(rows):
            line = [record.id if rows == 1 else f"{record.id}/{j}"]
            for array in flat.values():
                if array.dtype.kind == "f":
                    # numpy's str of a float32 is the shortest text that reads back as the same float32.
                    line += [str(v) for v in array[j]]
                elif array.dtype.hasobject:
                    line += [bytes(v).decode("utf-8", errors="replace") for v in array[j].tolist()]
                else:
                    line += array[j].tolist()
            self.writer.writerow(line)


class _SpoolSink(Sink):
    """Arrays assembled at the end from row bytes spooled to ``PATH.parts/`` (one raw file per output).

    Each output must keep its dtype and its shape past dim 0 from record to record. The spool's
    files are cut back to their checkpointed lengths on resume.
    """

    def __init__(self, path: str) -> None:
        self.path = path.rstrip("/")
        self.spool = self.path + ".parts"
        self.files: Dict[str, io.BufferedWriter] = {}
        self.spec: Optional[Dict[str, Tuple[str, List[int]]]] = None

    def open(self, state: Optional[dict]) -> None:
        if state is None:
            shutil.rmtree(self.spool, ignore_errors=True)
            os.makedirs(self.spool)
            return
        self.spec = state.get("spec")
        if self.spec is not None:
            for name in list(self.spec) + ["id"]:
                file = open(os.path.join(self.spool, self._file(name)), "r+b")
                file.truncate(int(state["bytes"][name]))
                file.seek(0, os.SEEK_END)
                self.files[name] = file  # type: ignore[assignment]

    @staticmethod
    def _file(name: str) -> str:
        return "id.jsonl" if name == "id" else f"out-{name.encode('utf-8').hex()}.bin"

    def write(self, record: Record, outputs: Mapping[str, np.ndarray]) -> None:
        if self.spec is None:
            self.spec = {}
            for name, array in outputs.items():
                if array.dtype.hasobject:
                    raise ValueError(f"output {name!r} is BYTES: write it as JSON Lines")
                self.spec[name] = (array.dtype.newbyteorder("<").str, list(array.shape[1:]))
            for name in list(self.spec) + ["id"]:
                self.files[name] = open(os.path.join(self.spool, self._file(name)), "wb")  # type: ignore[assignment]
        rows = 0
        blobs = []
        # Every output is checked before any is written: a spool file never holds half a record.
        for name, (dtype, tail) in self.spec.items():
            array = outputs.get(name)
            if array is None or list(array.shape[1:]) != tail or array.dtype.newbyteorder("<").str != dtype:
                got = "nothing" if array is None else f"{array.dtype} {list(array.shape)}"
                was = f"{dtype} [N, {', '.join(map(str, tail))}]"
                raise ValueError(f"output {name!r} of record {record.id!r} is {got}; earlier records gave {was}")
            rows = array.shape[0]
            blobs.append((name, np.ascontiguousarray(array, dtype=dtype).tobytes()))
        for name, blob in blobs:
            self.files[name].write(blob)
        ids = [record.id] if rows == 1 else [f"{record.id}/{j}" for j in range(rows)]
        self.files["id"].write("".join(json.dumps(i) + "\n" for i in ids).encode("utf-8"))

    def state(self) -> dict:
        sizes = {}
        for name, file in self.files.items():
            file.flush()
            os.fsync(file.fileno())
            sizes[name] = file.tell()
        return {"spec": self.spec, "bytes": sizes}

    def _arrays(self) -> Iterator[Tuple[str, np.dtype, Tuple[int, ...], str]]:
        for name, (dtype, tail) in (self.spec or {}).items():
            raw = os.path.join(self.spool, self._file(name))
            item = np.dtype(dtype).itemsize * int(np.prod(tail, dtype=np.int64))
            rows = os.path.getsize(raw) // item if item else 0
            yield name, np.dtype(dtype), (rows, *tail), raw

    def _ids(self) -> np.ndarray:
        path = os.path.join(self.spool, self._file("id"))
        if not os.path.exists(path):
            return np.array([], dtype=str)
        with open(path, encoding="utf-8") as file:
            return np.array([json.loads(line) for line in file], dtype=str)

    @staticmethod
    def _write_npy(target: io.BufferedIOBase, dtype: np.dtype, shape: Tuple[int, ...], raw: str) -> None:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
        try:
            np.lib.format.write_array_header_1_0(target, header)
        except ValueError:  # a header over 64 KiB (a shape of very many dims) needs version 2.0
            np.lib.format.write_array_header_2_0(target, header)
        with open(raw, "rb") as source:
            shutil.copyfileobj(source, target, 1 << 20)

    def close(self) -> None:
        for file in self.files.values():
            file.close()
        self.files.clear()


class NpzSink(_SpoolSink):
    """An ``.npz`` with one array per output (rows in input order) and ``id``."""

    def finish(self) -> None:
        self.close()
        tmp = self.path + ".tmp"
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, dtype, shape, raw in self._arrays():
                with archive.open(name + ".npy", "w", force_zip64=True) as member:
                    self._write_npy(member, dtype, shape, raw)
            with archive.open("id.npy", "w") as member:
                np.lib.format.write_array(member, self._ids(), allow_pickle=False)
        os.replace(tmp, self.path)
        shutil.rmtree(self.spool, ignore_errors=True)


class NpyColumnsSink(_SpoolSink):
    """A folder with one ``OUTPUT.npy`` per output (rows in input order) and ``id.npy``."""

    def finish(self) -> None:
        self.close()
        os.makedirs(self.path, exist_ok=True)
        for name, dtype, shape, raw in self._arrays():
            tmp = os.path.join(self.path, name + ".npy.tmp")
            with open(tmp, "wb") as target:
                self._write_npy(target, dtype, shape, raw)
            os.replace(tmp, os.path.join(self.path, name + ".npy"))
        np.save(os.path.join(self.path, "id.npy"), self._ids(), allow_pickle=False)
        shutil.rmtree(self.spool, ignore_errors=True)


class NpyFilesSink(Sink):
    """A folder with ``ID.npy`` per record (``ID/OUTPUT.npy`` when there are several outputs), each written whole."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.done = 0

    def open(self, state: Optional[dict]) -> None:
        os.makedirs(self.path, exist_ok=True)
        self.done = int(state["records"]) if state else 0

    def _target(self, record_id: str) -> str:
        if not record_id or record_id in (".", "..") or "/" in record_id or os.sep in record_id:
            raise ValueError(f"record id {record_id!r} cannot name a file")
        return os.path.join(self.path, record_id)

    def write(self, record: Record, outputs: Mapping[str, np.ndarray]) -> None:
        base = self._target(record.id)
        items = list(outputs.items())
        if len(items) == 1:
            self._save(base + ".npy", items[0][1])
        else:
            os.makedirs(base, exist_ok=True)
            for name, array in items:
                self._save(os.path.join(base, name + ".npy"), array)
        self.done += 1

    @staticmethod
    def _save(path: str, array: np.ndarray) -> None:
        if array.dtype.hasobject:
            raise ValueError(f"{path}: a BYTES output cannot go to .npy without pickles: write JSON Lines")
        tmp = path + ".tmp"
        with open(tmp, "wb") as file:
            np.lib.format.write_array(file, array, allow_pickle=False)
        os.replace(tmp, path)

    def failed(self, record: Record) -> None:
        try:
            base = self._target(record.id)
        except ValueError:
            self.done += 1
            return
        if os.path.isfile(base + ".npy"):
            os.remove(base + ".npy")
        if os.path.isdir(base):
            shutil.rmtree(base)
        self.done += 1

    def state(self) -> dict:
        _fsync_dir(self.path)
        return {"records": self.done}


def open_sink(path: str, format: Optional[str] = None, *, layout: str = "files") -> Sink:
    """The sink of ``path`` in ``format`` (from its name when None). A folder is written in
    ``layout``: ``files`` (one file per record) or ``columns`` (one array per output)."""
    fmt = format_of(path, format)
    if fmt == "npz":
        return NpzSink(path)
    if fmt == "jsonl":
        return JsonlSink(path)
    if fmt == "csv":
        return CsvSink(path)
    return NpyColumnsSink(path) if layout == "columns" else NpyFilesSink(path)
