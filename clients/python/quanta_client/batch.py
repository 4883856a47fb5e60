"""Batch inference: a dataset through a model over one ModelStreamInfer, resumable.

    from quanta_client import Client
    from quanta_client.batch import batch_infer
    summary = batch_infer(Client(), "mlp", "rows.csv", "scores.csv", batch_rows=64)

Requests go over a ``ModelStreamInfer`` stream with at most ``window`` of them in flight; the
server answers a stream in request order, so results are written in input order as they come.
``batch_rows`` > 1 joins consecutive records into one request along dim 0 (those with the same
input dtypes and shapes past dim 0) and splits the outputs back by each record's rows.

Failures. A request the server rejects comes back in the stream as a message without a status
code; its records are sent again one by one with ``ModelInfer``, which gives the code: a record
that fails there goes to the errors file (JSON Lines: ``index``, ``id``, ``code``, ``message``)
and the job goes on, and the job stops with ``BatchFailed`` once more than ``max_failures`` records
have failed. UNAVAILABLE and RESOURCE_EXHAUSTED (a restart, a full queue) are transient: the
record, or the whole stream when the stream itself breaks, is sent again after a backoff, up to
``retries`` times in a row. A record's result is written once whatever the server did, so a
repeat harms nothing; stateful sequences are replayed from their first step (below). The model
not found, a bad token or a missing scope stop the job at once (``QuantaError``).

Checkpoints. Every ``checkpoint_interval`` seconds, and at the end, the sink and the errors file
are flushed to disk and a checkpoint (JSON: how many records are done and how long each output
file is) is written to a temporary file and renamed over the last one. ``resume=True`` cuts the
outputs back to the checkpoint and goes on from there: whatever a killed job wrote after its
last checkpoint is written again, once.

Sequences. ``sequence_key`` names the field, column or array that holds each record's sequence
id. A first pass reads the keys to find each sequence's first and last record; the records are
then sent in input order (sequences may interleave) with ``sequence_id``,
``sequence_start`` on a sequence's first record and ``sequence_end`` on its last, as the
inference service reads them. On a resume or a stream retry, a sequence still open at the
restart point is replayed from its first record (``sequence_start`` resets the server's state),
its earlier results discarded, so the state is the same as in one uninterrupted run. A rejected
step of a sequence cannot be sent again out of order: it goes to the errors file with the
stream's message and ``code`` null, and leaves the sequence's state as it was.
"""

from __future__ import annotations

import json
import os
import queue
import random
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Callable, Deque, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import grpc
import numpy as np

from .client import Client, infer_outputs, infer_request
from .datasets import Record, Sink, Source, TensorSpec, open_sink, open_source
from .errors import QuantaError
from .gen.inference import grpc_service_pb2 as inference_pb

STREAM_METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"

#: Tried again after a backoff: the server restarting or overloaded.
TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
#: Stop the whole job: no record can succeed while these hold.
FATAL = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
CHECKPOINT_VERSION = 1


class BatchFailed(Exception):
    """More than ``max_failures`` records failed; ``summary`` says how far the job got (resumable)."""

    def __init__(self, message: str, summary: "BatchSummary") -> None:
        super().__init__(message)
        self.summary = summary


@dataclass
class BatchProgress:
    """Where a running job stands: records and rows done, failures, rows/s and the ETA when the size is known."""

    records: int
    rows: int
    failures: int
    total: Optional[int]
    elapsed_s: float
    rows_per_s: float
    eta_s: Optional[float]

    def line(self) -> str:
        of = f"/{self.total}" if self.total is not None else ""
        eta = f", ETA {self.eta_s:.0f} s" if self.eta_s is not None else ""
        rate = f"{self.rows_per_s:.0f} rows/s"
        return f"{self.records}{of} records, {self.rows} rows, {self.failures} failed, {rate}{eta}"


@dataclass
class BatchSummary:
    """What a finished (or stopped) job did; ``to_dict()`` is its JSON summary."""

    records: int
    rows: int
    failures: int
    wall_s: float
    rows_per_s: float
    p50_ms: Optional[float]
    p99_ms: Optional[float]
    requests: int
    retries: int
    resumed_from: int = 0
    complete: bool = False
    errors_path: Optional[str] = None
    checkpoint_path: Optional[str] = None

    def to_dict(self) -> dict:
        return asdict(self)


class _StreamBroken(Exception):
    def __init__(self, error: QuantaError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Pending:
    records: List[Record]
    sent: float
    replay: bool
    sent_request: bool
    request_id: str = ""


def _sequence_id(value: object, index: int) -> Union[int, str]:
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise ValueError(f"record {index}: sequence key {value!r} is not a sequence id")
    if isinstance(value, (int, np.integer)):
        number = int(value)
    else:
        text = str(value).strip()
        if not text:
            raise ValueError(f"record {index}: the sequence key is empty")
        if not text.isdigit():
            return text
        number = int(text)
    if number <= 0 or number >= 1 << 64:
        raise ValueError(f"record {index}: sequence id {number} must be in 1 .. 2**64-1 (0 means no sequence)")
    return number


def _percentile(samples: Sequence[float], q: float) -> Optional[float]:
    if not samples:
        return None
    return round(float(np.percentile(np.asarray(samples), q)), 3)


def model_inputs(client: Client, model: str, version: str = "") -> List[TensorSpec]:
    """The model's inputs, from ModelMetadata (QuantaError NOT_FOUND when inference does not serve it)."""
    request = inference_pb.ModelMetadataRequest(name=model, version=version)
    try:
        meta = client.inference.ModelMetadata(request, timeout=client.timeout)
    except grpc.RpcError as error:
        raise QuantaError.from_rpc_error(error, "/inference.GRPCInferenceService/ModelMetadata") from None
    return [TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in meta.inputs]


class _Job:
    def __init__(
        self,
        client: Client,
        model: str,
        source: Source,
        sink: Sink,
        *,
        outputs: Optional[Sequence[str]],
        version: str,
        window: int,
        batch_rows: int,
        errors_path: str,
        max_failures: Optional[int],
        checkpoint_path: Optional[str],
        checkpoint_interval: float,
        retries: int,
        sequence_key: Optional[str],
        progress: Union[None, bool, Callable[[BatchProgress], None]],
        timeout: Optional[float],
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        self.client, self.model, self.source, self.sink = client, model, source, sink
        self.outputs, self.version, self.window, self.batch_rows = list(outputs or ()), version, window, batch_rows
        self.errors_path, self.max_failures = errors_path, max_failures
        self.checkpoint_path, self.checkpoint_interval = checkpoint_path, checkpoint_interval
        self.retries, self.sequence_key, self.timeout = retries, sequence_key, timeout
        self.progress = progress
        self.done = 0  # records handled (written or failed), a prefix of the source
        self.rows = 0
        self.failures = 0
        self.requests = 0
        self.retried = 0
        self.resumed_from = 0
        self.latencies: List[float] = []  # a reservoir: bounded whatever the dataset's size
        self.seen_latencies = 0
        self.rng = random.Random(0)
        self.first: Dict[object, int] = {}
        self.last: Dict[object, int] = {}
        self.total: Optional[int] = None
        self.started = time.monotonic()
        self.errors_file = None
        self.last_checkpoint = 0.0
        self.last_progress = 0.0
        self.rows_at_start = 0
        self.writing = False  # inside a sink or errors-file write: a checkpoint now could record half a record

    # ---- setup -----------------------------------------------------------------------------

    def scan_sequences(self) -> None:
        for index, value in enumerate(self.source.keys()):
            if value is None:
                continue
            key = _sequence_id(value, index)
            self.first.setdefault(key, index)
            self.last[key] = index

    def start(self, resume: bool) -> Optional[dict]:
        state = None
        if resume and self.checkpoint_path and os.path.exists(self.checkpoint_path):
            with open(self.checkpoint_path, encoding="utf-8") as file:
                state = json.load(file)
            job = (state.get("version"), state.get("model"), state.get("source"), state.get("sink_path"))
            if job != (CHECKPOINT_VERSION, self.model, self.source.path, self.sink.path):
                raise ValueError(
                    f"checkpoint {self.checkpoint_path} is of another job (model {job[1]!r}, {job[2]!r} -> {job[3]!r})"
                )
            self.done = self.resumed_from = int(state["records"])
            self.rows, self.failures = int(state["rows"]), int(state["failures"])
            self.requests, self.retried = int(state.get("requests", 0)), int(state.get("retries", 0))
        self.sink.open(state["sink"] if state else None)
        if state is None or not os.path.exists(self.errors_path):
            self.errors_file = open(self.errors_path, "w", encoding="utf-8")
        else:
            self.errors_file = open(self.errors_path, "r+", encoding="utf-8")
        self.errors_file.truncate(int(state["errors_bytes"]) if state else 0)
        self.errors_file.seek(0, os.SEEK_END)
        self.rows_at_start = self.rows
        return state

    # ---- bookkeeping -----------------------------------------------------------------------

    def checkpoint(self, complete: bool = False) -> None:
        self.last_checkpoint = time.monotonic()
        if not self.checkpoint_path:
            return
        assert self.errors_file is not None
        self.errors_file.flush()
        os.fsync(self.errors_file.fileno())
        state = {
            "version": CHECKPOINT_VERSION,
            "model": self.model,
            "source": self.source.path,
            "sink_path": self.sink.path,
            "records": self.done,
            "rows": self.rows,
            "failures": self.failures,
            "requests": self.requests,
            "retries": self.retried,
            "complete": complete,
            "sink": self.sink.state(),
            "errors_bytes": self.errors_file.tell(),
        }
        tmp = self.checkpoint_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as file:
            json.dump(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self.checkpoint_path)

    def summary(self, complete: bool = False) -> BatchSummary:
        wall = time.monotonic() - self.started
        done_here = self.rows - self.rows_at_start
        return BatchSummary(
            records=self.done,
            rows=self.rows,
            failures=self.failures,
            wall_s=round(wall, 3),
            rows_per_s=round(done_here / wall, 1) if wall > 0 else 0.0,
            p50_ms=_percentile(self.latencies, 50),
            p99_ms=_percentile(self.latencies, 99),  # of a reservoir of 10,000 requests at most
            requests=self.requests,
            retries=self.retried,
            resumed_from=self.resumed_from,
            complete=complete,
            errors_path=self.errors_path,
            checkpoint_path=self.checkpoint_path,
        )

    def report(self, force: bool = False) -> None:
        if self.progress is None or self.progress is False:
            return
        now = time.monotonic()
        tty = not callable(self.progress) and sys.stderr.isatty()
        # A terminal's line is redrawn twice a second; a log gets a line every 5 s.
        if not force and now - self.last_progress < (0.5 if tty or callable(self.progress) else 5.0):
            return
        self.last_progress = now
        elapsed = now - self.started
        rate = (self.rows - self.rows_at_start) / elapsed if elapsed > 0 else 0.0
        record_rate = (self.done - self.resumed_from) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / record_rate if self.total is not None and record_rate > 0 else None
        state = BatchProgress(self.done, self.rows, self.failures, self.total, elapsed, rate, eta)
        if callable(self.progress):
            self.progress(state)
        else:
            sys.stderr.write(("\r" if tty else "") + state.line() + ("" if tty and not force else "\n"))
            sys.stderr.flush()

    def latency(self, seconds: float) -> None:
        self.seen_latencies += 1
        ms = seconds * 1000.0
        if len(self.latencies) < 10_000:
            self.latencies.append(ms)
        else:
            slot = self.rng.randrange(self.seen_latencies)
            if slot < len(self.latencies):
                self.latencies[slot] = ms

    def fail(self, record: Record, code: Optional[str], message: str) -> None:
        assert self.errors_file is not None
        line = {"index": record.index, "id": record.id, "code": code, "message": message}
        self.writing = True
        self.errors_file.write(json.dumps(line) + "\n")
        self.sink.failed(record)
        self.failures += 1
        self.done += 1
        self.writing = False
        if self.max_failures is not None and self.failures > self.max_failures:
            self.checkpoint()
            raise BatchFailed(
                f"{self.failures} records failed, more than max_failures={self.max_failures} "
                f"(the last: {record.id!r}: {message}); see {self.errors_path}",
                self.summary(),
            )

    def wrote(self, record: Record, outputs: Mapping[str, np.ndarray]) -> None:
        self.writing = True
        self.sink.write(record, outputs)
        self.rows += record.rows
        self.done += 1
        self.writing = False

    # ---- requests --------------------------------------------------------------------------

    def request(self, records: List[Record]) -> inference_pb.ModelInferRequest:
        if len(records) == 1:
            inputs = records[0].inputs
        else:
            inputs = {name: np.concatenate([r.inputs[name] for r in records], axis=0) for name in records[0].inputs}
        record = records[0]
        sequence = {}
        if record.key is not None:
            key = _sequence_id(record.key, record.index)
            sequence = {
                "sequence_id": key,
                "sequence_start": self.first[key] == record.index,
                "sequence_end": self.last[key] == record.index,
            }
        request_id = record.id if len(records) == 1 else f"{record.id}..{records[-1].id}"
        return infer_request(self.model, inputs, self.outputs, version=self.version, request_id=request_id, **sequence)

    def groups(self, start: int) -> Iterator[Tuple[List[Record], bool]]:
        """(records of one request, replay?) from record ``start`` on; open sequences from their first record."""
        begin = start
        open_keys = set()
        if self.first:
            open_keys = {k for k, f in self.first.items() if f < start <= self.last[k]}
            if open_keys:
                begin = min(self.first[k] for k in open_keys)
        batch: List[Record] = []
        rows = 0

        def compatible(a: Record, b: Record) -> bool:
            if a.inputs.keys() != b.inputs.keys():
                return False
            for name, value in a.inputs.items():
                other = b.inputs[name]
                if value.ndim == 0 or value.dtype != other.dtype or value.shape[1:] != other.shape[1:]:
                    return False
            return True

        for record in self.source.records(begin):
            if record.index < start:
                if record.key is not None and _sequence_id(record.key, record.index) in open_keys:
                    yield [record], True
                continue
            if record.error is not None or self.batch_rows == 1 or record.rows >= self.batch_rows:
                if batch:
                    yield batch, False
                    batch, rows = [], 0
                yield [record], False
                continue
            if batch and (rows + record.rows > self.batch_rows or not compatible(batch[0], record)):
                yield batch, False
                batch, rows = [], 0
            batch.append(record)
            rows += record.rows
        if batch:
            yield batch, False

    def unary(self, record: Record) -> None:
        """One record by ModelInfer, with the transient retries: written, or failed with its code."""
        request = self.request([record])
        attempt = 0
        while True:
            sent = time.monotonic()
            try:
                response = self.client.inference.ModelInfer(request, timeout=self.timeout)
            except grpc.RpcError as raw:
                error = QuantaError.from_rpc_error(raw, INFER_METHOD)
                if error.code in FATAL:
                    raise error from None
                if error.code in TRANSIENT and attempt < self.retries:
                    attempt += 1
                    self.retried += 1
                    # A caller limit says when to come back: never sooner (retry-after-ms).
                    time.sleep(max(min(2.0, 0.1 * 2**attempt), (error.retry_after_ms or 0) / 1000))
                    continue
                self.fail(record, error.code.name, error.message)
                return
            self.requests += 1
            self.latency(time.monotonic() - sent)
            self.wrote(record, infer_outputs(response))
            return

    def split(self, records: List[Record], outputs: Dict[str, np.ndarray]) -> List[Dict[str, np.ndarray]]:
        if len(records) == 1:
            return [outputs]
        total = sum(r.rows for r in records)
        for name, array in outputs.items():
            if array.ndim == 0 or array.shape[0] != total:
                raise ValueError(
                    f"output {name!r} has shape {list(array.shape)} for a request of {total} rows: "
                    "batch_rows > 1 needs outputs whose dim 0 follows the inputs' (use batch_rows=1)"
                )
        parts = []
        at = 0
        for record in records:
            parts.append({name: array[at : at + record.rows] for name, array in outputs.items()})
            at += record.rows
        return parts

    def answered(self, pending: _Pending, response: inference_pb.ModelStreamInferResponse) -> None:
        self.latency(time.monotonic() - pending.sent)
        if pending.replay:
            return
        if response.error_message:
            record = pending.records[0]
            if record.key is not None:
                self.fail(record, None, response.error_message)
                return
            for record in pending.records:
                self.unary(record)
            return
        outputs = infer_outputs(response.infer_response)
        for record, part in zip(pending.records, self.split(pending.records, outputs)):
            self.wrote(record, part)

    def run_stream(self) -> None:
        """One stream from ``self.done`` to the end; _StreamBroken when the stream itself fails."""
        requests: "queue.Queue[Optional[inference_pb.ModelInferRequest]]" = queue.Queue()
        responses = self.client.inference.ModelStreamInfer(iter(requests.get, None))
        pending: Deque[_Pending] = deque()
        in_flight = 0
        groups = self.groups(self.done)
        exhausted = False
        try:
            while True:
                while not exhausted and in_flight < self.window:
                    item = next(groups, None)
                    if item is None:
                        exhausted = True
                        requests.put(None)
                        break
                    records, replay = item
                    if records[0].error is not None:
                        pending.append(_Pending(records, 0.0, replay, False))
                        continue
                    request = self.request(records)
                    requests.put(request)
                    pending.append(_Pending(records, time.monotonic(), replay, True, request.id))
                    in_flight += 1
                    self.requests += 1
                # Records the source could not read fail in their turn, between the answers.
                while pending and not pending[0].sent_request:
                    head = pending.popleft()
                    if not head.replay:
                        self.fail(head.records[0], "INVALID_ARGUMENT", head.records[0].error or "unreadable")
                if not pending:
                    if exhausted:
                        break
                    continue
                try:
                    response = next(responses)
                except StopIteration:
                    message = f"the stream ended with {in_flight} requests unanswered"
                    raise _StreamBroken(QuantaError(grpc.StatusCode.UNAVAILABLE, message, STREAM_METHOD)) from None
                except grpc.RpcError as raw:
                    raise _StreamBroken(QuantaError.from_rpc_error(raw, STREAM_METHOD)) from None
                in_flight -= 1
                head = pending.popleft()
                answer_id = response.infer_response.id if response.HasField("infer_response") else ""
                if answer_id and answer_id != head.request_id:
                    message = f"the stream answered request {answer_id!r} where {head.request_id!r} was due"
                    raise QuantaError(grpc.StatusCode.INTERNAL, message, STREAM_METHOD)
                self.answered(head, response)
                if time.monotonic() - self.last_checkpoint >= self.checkpoint_interval:
                    self.checkpoint()
                self.report()
        finally:
            if not exhausted:
                requests.put(None)  # ends the request iterator that gRPC's thread is reading
            responses.cancel()

    def run(self) -> BatchSummary:
        self.last_checkpoint = self.last_progress = time.monotonic()
        attempt = 0
        while True:
            done_before = self.done
            try:
                self.run_stream()
                break
            except _StreamBroken as broken:
                error = broken.error
                if self.done > done_before:
                    attempt = 0
                if error.code not in TRANSIENT or attempt >= self.retries:
                    raise error from None
                attempt += 1
                self.retried += 1
                time.sleep(min(2.0, 0.1 * 2**attempt))
        self.checkpoint()
        self.sink.finish()
        self.checkpoint(complete=True)
        self.report(force=True)
        return self.summary(complete=True)


def _path(what: object) -> str:
    return what.path if isinstance(what, (Source, Sink)) else os.fspath(what)  # type: ignore[arg-type]


def batch_infer(
    client: Client,
    model: str,
    source: Union[str, os.PathLike, Source],
    sink: Union[str, os.PathLike, Sink],
    *,
    outputs: Optional[Sequence[str]] = None,
    version: str = "",
    window: int = 16,
    batch_rows: int = 1,
    errors: Union[None, str, os.PathLike] = None,
    max_failures: Optional[int] = None,
    checkpoint: Union[None, bool, str, os.PathLike] = None,
    checkpoint_interval: float = 1.0,
    resume: bool = False,
    sequence_key: Optional[str] = None,
    progress: Union[None, bool, Callable[[BatchProgress], None]] = None,
    retries: int = 4,
    input_name: Optional[str] = None,
    id_column: Optional[str] = "id",
    columns: Optional[Mapping[str, Sequence[str]]] = None,
    source_format: Optional[str] = None,
    sink_format: Optional[str] = None,
    timeout: Optional[float] = None,
) -> BatchSummary:
    """Runs ``model`` over every record of ``source`` and writes the results to ``sink``, in input order.

    Args:
        source, sink: paths (the format from the name, or ``source_format`` / ``sink_format``:
            npy, npz, jsonl, csv; see ``quanta_client.datasets``) or Source / Sink objects. A
            folder sink takes the source's layout (one file per record, or one array per output).
        outputs: only these outputs (None: every output).
        window: requests in flight on the stream at most.
        batch_rows: rows (dim 0) per request at most; consecutive records are joined up to it.
        errors: the errors file (JSON Lines); default ``SINK.errors.jsonl``.
        max_failures: stop with ``BatchFailed`` once more records than this have failed (None: never).
        checkpoint: the checkpoint file; default ``SINK.checkpoint.json``; False: none (no resume).
        resume: go on from the checkpoint, when there is one (a complete job is not run again).
        sequence_key: the field, column or array naming each record's sequence id (stateful models).
        progress: True: a progress line on stderr; a function: called with a ``BatchProgress``.
        retries: transient failures tried again this many times in a row, with backoff.
        input_name, id_column, columns: how a CSV or a folder of ``ID.npy`` maps to the inputs.
        timeout: the deadline of each ModelInfer retry of a rejected record (default: the client's).

    Returns a ``BatchSummary`` (rows, failures, wall time, rows/s, p50/p99 request latency).
    """
    sink_name = _path(sink)
    checkpoint_path: Optional[str]
    if checkpoint is False:
        if resume:
            raise ValueError("resume needs a checkpoint")
        checkpoint_path = None
    elif checkpoint is None or checkpoint is True:
        checkpoint_path = sink_name.rstrip("/") + ".checkpoint.json"
    else:
        checkpoint_path = os.fspath(checkpoint)
    errors_path = os.fspath(errors) if errors is not None else sink_name.rstrip("/") + ".errors.jsonl"

    if resume and checkpoint_path and os.path.exists(checkpoint_path):
        with open(checkpoint_path, encoding="utf-8") as file:
            saved = json.load(file)
        same = (saved.get("model"), saved.get("source"), saved.get("sink_path")) == (model, _path(source), sink_name)
        if saved.get("complete") and same:
            return BatchSummary(
                records=saved["records"], rows=saved["rows"], failures=saved["failures"], wall_s=0.0, rows_per_s=0.0,
                p50_ms=None, p99_ms=None, requests=0, retries=0, resumed_from=saved["records"], complete=True,
                errors_path=errors_path, checkpoint_path=checkpoint_path,
            )  # fmt: skip

    if sequence_key is not None and batch_rows != 1:
        raise ValueError("a sequence dataset runs one record per request: batch_rows must be 1")
    inputs = model_inputs(client, model, version)
    if isinstance(source, Source):
        src = source
    else:
        src = open_source(
            os.fspath(source), source_format, inputs=inputs, input_name=input_name, id_column=id_column, columns=columns
        )
    src.open(inputs, sequence_key)
    snk = sink if isinstance(sink, Sink) else open_sink(sink_name, sink_format, layout=src.layout or "files")
    job = _Job(
        client, model, src, snk, outputs=outputs, version=version, window=window, batch_rows=batch_rows,
        errors_path=errors_path, max_failures=max_failures, checkpoint_path=checkpoint_path,
        checkpoint_interval=checkpoint_interval, retries=retries, sequence_key=sequence_key, progress=progress,
        timeout=timeout,
    )  # fmt: skip
    job.total = src.count() if progress else None
    if sequence_key is not None:
        job.scan_sequences()
    job.start(resume)
    try:
        return job.run()
    except BaseException:
        # What is written is a prefix of the input in order: checkpoint it, so that a resume goes on from here.
        if not job.writing and job.errors_file is not None:
            try:
                job.checkpoint()
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
        raise
    finally:
        snk.close()
        if job.errors_file is not None:
            job.errors_file.close()
