"""numpy <-> KServe raw tensors, byte for byte, for every datatype (no server)."""

import numpy as np
import pytest

from quanta_client import DATATYPES, datatype_of, from_raw, to_raw
from quanta_client.gen.inference import grpc_service_pb2 as pb
from quanta_client.tensors import decode_bytes, encode_bytes, from_contents

# (array, KServe datatype, the raw bytes written by hand from the protocol's definition:
# row-major, little-endian, BOOL one byte, BYTES a 4-byte little-endian length per element).
CASES = [
    (np.array([True, False, True]), "BOOL", b"\x01\x00\x01"),
    (np.array([0, 255], dtype=np.uint8), "UINT8", b"\x00\xff"),
    (np.array([1, 0xABCD], dtype=np.uint16), "UINT16", b"\x01\x00\xcd\xab"),
    (np.array([0xDEADBEEF], dtype=np.uint32), "UINT32", b"\xef\xbe\xad\xde"),
    (np.array([2**64 - 1, 2**53 + 1], dtype=np.uint64), "UINT64", b"\xff" * 8 + b"\x01\x00\x00\x00\x00\x00\x20\x00"),
    (np.array([-1, 127], dtype=np.int8), "INT8", b"\xff\x7f"),
    (np.array([-2, 0x1234], dtype=np.int16), "INT16", b"\xfe\xff\x34\x12"),
    (np.array([-2], dtype=np.int32), "INT32", b"\xfe\xff\xff\xff"),
    (np.array([-(2**63)], dtype=np.int64), "INT64", b"\x00" * 7 + b"\x80"),
    (np.array([1.0, -2.0], dtype=np.float16), "FP16", b"\x00\x3c\x00\xc0"),
    (np.array([1.0], dtype=np.float32), "FP32", b"\x00\x00\x80\x3f"),
    (np.array([1.0], dtype=np.float64), "FP64", b"\x00" * 6 + b"\xf0\x3f"),
    (np.array(["ab", "", "é"]), "BYTES", b"\x02\x00\x00\x00ab" + b"\x00\x00\x00\x00" + b"\x02\x00\x00\x00\xc3\xa9"),
]


@pytest.mark.parametrize("array,datatype,raw", CASES, ids=[c[1] for c in CASES])
def test_each_datatype_encodes_to_the_protocols_bytes_and_back(array, datatype, raw):
    got_type, shape, got_raw = to_raw(array)
    assert (got_type, tuple(shape), got_raw) == (datatype, array.shape, raw)
    back = from_raw(datatype, shape, raw)
    if datatype == "BYTES":
        assert back.dtype == object
        assert back.tolist() == [s.encode("utf-8") for s in array.tolist()]
    else:
        assert back.dtype == array.dtype
        assert back.tobytes() == array.tobytes()


def test_the_cases_cover_every_writable_datatype():
    assert sorted(c[1] for c in CASES) == sorted(d for d in DATATYPES if d != "BF16")


def test_bytes_elements_may_be_bytes_str_or_objects_and_come_back_as_bytes():
    arrays = (
        np.array([b"x\x00y", b"z"], dtype=object),
        np.array([b"xy", b"z"]),
        np.array(["xy", "z"], dtype=object),
    )
    for array in arrays:
        datatype, shape, raw = to_raw(array)
        assert datatype == "BYTES"
        expected = [e if isinstance(e, bytes) else e.encode() for e in array.tolist()]
        assert from_raw("BYTES", shape, raw).tolist() == expected
    assert encode_bytes([b"\x00" * 300]) == b"\x2c\x01\x00\x00" + b"\x00" * 300


def test_shapes_survive_scalars_empty_and_multi_dimensional_tensors():
    for array in (np.float32(2.5), np.zeros((0, 3), dtype=np.int32), np.arange(24, dtype=np.int64).reshape(2, 3, 4)):
        datatype, shape, raw = to_raw(np.asarray(array))
        back = from_raw(datatype, shape, raw)
        assert back.shape == np.asarray(array).shape
        np.testing.assert_array_equal(back, array)


def test_big_endian_and_non_contiguous_arrays_are_sent_little_endian_row_major():
    big = np.array([1, 2], dtype=">i4")
    assert to_raw(big)[2] == b"\x01\x00\x00\x00\x02\x00\x00\x00"
    transposed = np.arange(6, dtype=np.uint8).reshape(2, 3).T  # logical rows [0,3],[1,4],[2,5]
    assert to_raw(transposed)[1:] == ((3, 2), bytes([0, 3, 1, 4, 2, 5]))


def test_decoded_arrays_are_writable_and_in_native_byte_order():
    out = from_raw("FP32", [2], b"\x00\x00\x80\x3f" * 2)
    out[0] = 7
    assert out.dtype.isnative and out.tolist() == [7.0, 1.0]


def test_bf16_is_read_as_float32():
    # 0x3f80 is 1.0; 0x4049 is 3.140625 (the upper half of float32 0x40490000).
    out = from_raw("BF16", [2], b"\x80\x3f\x49\x40")
    assert out.dtype == np.float32 and out.tolist() == [1.0, 3.140625]


def test_typed_contents_are_read_for_servers_that_answer_without_raw_outputs():
    contents = pb.InferTensorContents(int64_contents=[1, -2, 3, 4])
    np.testing.assert_array_equal(from_contents("INT64", [2, 2], contents), np.array([[1, -2], [3, 4]], dtype=np.int64))
    assert from_contents("UINT8", [2], pb.InferTensorContents(uint_contents=[0, 255])).dtype == np.uint8
    assert from_contents("BYTES", [1], pb.InferTensorContents(bytes_contents=[b"q"])).tolist() == [b"q"]
    with pytest.raises(ValueError, match="FP16 has no typed form"):
        from_contents("FP16", [1], pb.InferTensorContents())


@pytest.mark.parametrize(
    "datatype,shape,raw,message",
    [
        ("FP32", [3], b"\x00" * 8, "FP32 tensor of shape \\[3\\] needs 12 bytes, got 8"),
        ("INT64", [-1], b"", "negative dimension"),
        ("FP8", [1], b"\x00", "unknown KServe datatype 'FP8'"),
        ("BYTES", [2], b"\x01\x00\x00\x00a\x01\x00", "element 1 of 2 has no length prefix"),
        ("BYTES", [1], b"\x05\x00\x00\x00abc", "element 0 says 5 bytes but 3 remain"),
        ("BYTES", [1], b"\x01\x00\x00\x00ab", "1 bytes left over after 1 elements"),
    ],
)
def test_malformed_raw_tensors_are_refused_with_what_is_wrong(datatype, shape, raw, message):
    with pytest.raises(ValueError, match=message):
        from_raw(datatype, shape, raw)


def test_arrays_without_a_kserve_datatype_are_refused():
    with pytest.raises(ValueError, match="complex128 has no KServe datatype"):
        datatype_of(np.array([1j]))
    with pytest.raises(ValueError, match="must be bytes or str, got int"):
        to_raw(np.array([1, "a"], dtype=object))


def test_decode_bytes_gives_a_flat_object_array():
    assert decode_bytes(b"", 0).shape == (0,)
