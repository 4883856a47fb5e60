"""numpy arrays <-> KServe v2 tensors in raw form.

Raw form (``raw_input_contents`` / ``raw_output_contents``): a tensor's elements flattened in
row-major order, little-endian, with no padding; BOOL is one byte per element (0 or 1); each BYTES
element is a 4-byte little-endian length followed by that many bytes. The raw form is the only one
that carries FP16 and BF16, and it skips protobuf's per-element encoding.
"""

from __future__ import annotations

import struct
from typing import Dict, Iterable, Sequence, Tuple

import numpy as np

from .gen.inference import grpc_service_pb2 as pb

# KServe datatype -> the little-endian numpy dtype of its raw elements.
_FIXED: Dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}

#: Every KServe v2 datatype this module reads; all but BF16 can also be written.
DATATYPES: Tuple[str, ...] = tuple(_FIXED) + ("BF16", "BYTES")

_LENGTH = struct.Struct("<I")


def datatype_of(array: np.ndarray) -> str:
    """The KServe datatype of a numpy array; ``str``, ``bytes`` and object arrays are BYTES.

    numpy has no bfloat16, so BF16 is never the answer: send such data as FP32 or FP16.
    """
    kind, size = array.dtype.kind, array.dtype.itemsize
    if kind == "b":
        return "BOOL"
    if kind in "ui" and size in (1, 2, 4, 8):
        return f"{'UINT' if kind == 'u' else 'INT'}{size * 8}"
    if kind == "f" and size in (2, 4, 8):
        return f"FP{size * 8}"
    if kind in "SUO":
        return "BYTES"
    raise ValueError(
        f"numpy dtype {array.dtype} has no KServe datatype (use bool, [u]int8..64, float16/32/64, bytes or str)"
    )


def _element_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview, np.bytes_)):
        return bytes(value)
    raise ValueError(f"a BYTES element must be bytes or str, got {type(value).__name__}")


def encode_bytes(elements: Iterable[object]) -> bytes:
    """BYTES elements (bytes or str, the latter as UTF-8) framed with 4-byte little-endian lengths."""
    parts = []
    for element in elements:
        data = _element_bytes(element)
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def decode_bytes(raw: bytes, count: int) -> np.ndarray:
    """``count`` framed BYTES elements as a flat object array of ``bytes``."""
    out = np.empty(count, dtype=object)
    at = 0
    view = memoryview(raw)
    for i in range(count):
        if at + 4 > len(raw):
            raise ValueError(f"BYTES tensor: element {i} of {count} has no length prefix ({len(raw)} bytes in all)")
        (length,) = _LENGTH.unpack_from(raw, at)
        at += 4
        if at + length > len(raw):
            raise ValueError(f"BYTES tensor: element {i} says {length} bytes but {len(raw) - at} remain")
        out[i] = bytes(view[at : at + length])
        at += length
    if at != len(raw):
        raise ValueError(f"BYTES tensor: {len(raw) - at} bytes left over after {count} elements")
    return out


def to_raw(array: np.ndarray) -> Tuple[str, Sequence[int], bytes]:
    """A numpy array as (datatype, shape, raw bytes)."""
    array = np.asarray(array)
    datatype = datatype_of(array)
    if datatype == "BYTES":
        # tolist() gives bytes for "S" arrays, str for "U" arrays and the elements themselves for object arrays.
        return datatype, array.shape, encode_bytes(array.reshape(-1).tolist())
    # Copies only when the array is not already C-ordered little-endian.
    data = np.ascontiguousarray(array, dtype=_FIXED[datatype])
    return datatype, array.shape, data.tobytes()


def _count(shape: Sequence[int]) -> int:
    count = 1
    for dim in shape:
        if dim < 0:
            raise ValueError(f"shape {list(shape)} has a negative dimension")
        count *= dim
    return count


def from_raw(datatype: str, shape: Sequence[int], raw: bytes) -> np.ndarray:
    """Raw bytes as a writable, native-byte-order numpy array of ``shape``.

    BYTES gives an object array of ``bytes``; BF16 is widened (exactly) to float32.
    """
    shape = tuple(int(d) for d in shape)
    count = _count(shape)
    if datatype == "BYTES":
        return decode_bytes(raw, count).reshape(shape)
    if datatype == "BF16":
        if len(raw) != count * 2:
            raise ValueError(f"BF16 tensor of shape {list(shape)} needs {count * 2} bytes, got {len(raw)}")
        # bfloat16 is the upper half of a float32.
        widened = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return widened.view(np.float32).reshape(shape)
    dtype = _FIXED.get(datatype)
    if dtype is None:
        raise ValueError(f"unknown KServe datatype {datatype!r} (known: {', '.join(DATATYPES)})")
    if len(raw) != count * dtype.itemsize:
        raise ValueError(
            f"{datatype} tensor of shape {list(shape)} needs {count * dtype.itemsize} bytes, got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def from_contents(datatype: str, shape: Sequence[int], contents: pb.InferTensorContents) -> np.ndarray:
    """A tensor in typed form (``InferTensorContents``), for servers that answer without raw outputs."""
    shape = tuple(int(d) for d in shape)
    if datatype == "BYTES":
        out = np.empty(len(contents.bytes_contents), dtype=object)
        out[:] = list(contents.bytes_contents)
        return out.reshape(shape)
    field = {
        "BOOL": "bool_contents",
        "UINT8": "uint_contents",
        "UINT16": "uint_contents",
        "UINT32": "uint_contents",
        "UINT64": "uint64_contents",
        "INT8": "int_contents",
        "INT16": "int_contents",
        "INT32": "int_contents",
        "INT64": "int64_contents",
        "FP32": "fp32_contents",
        "FP64": "fp64_contents",
    }.get(datatype)
    if field is None:
        raise ValueError(f"{datatype} has no typed form (FP16 and BF16 travel only in raw form)")
    return np.array(getattr(contents, field), dtype=_FIXED[datatype].newbyteorder("=")).reshape(shape)
