// A hand-encoded ONNX model (protobuf wire format, field numbers from onnx.proto) for tests that
// need a real onnxruntime session: y = Identity(x), any rank, one element type.

function varint(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

const num = (field: number, value: number): number[] => [...varint(field << 3), ...varint(value)];
const bytes = (field: number, body: number[]): number[] => [
  ...varint((field << 3) | 2),
  ...varint(body.length),
  ...body,
];
const str = (field: number, text: string): number[] => bytes(field, [...Buffer.from(text, 'utf8')]);

/** ONNX TensorProto.DataType numbers. */
export const ONNX_ELEM_TYPE = {
  float32: 1,
  uint8: 2,
  int8: 3,
  uint16: 4,
  int16: 5,
  int32: 6,
  int64: 7,
  string: 8,
  bool: 9,
  float16: 10,
  float64: 11,
  uint32: 12,
  uint64: 13,
} as const;

export function identityModel(elemType: number): Uint8Array {
  // ValueInfoProto{name=1, type=2: TypeProto{tensor_type=1: {elem_type=1}}}; no shape: any rank
  const valueInfo = (name: string): number[] => [...str(1, name), ...bytes(2, bytes(1, num(1, elemType)))];
  const node = [...str(1, 'x'), ...str(2, 'y'), ...str(4, 'Identity')];
  const graph = [...bytes(1, node), ...str(2, 'identity'), ...bytes(11, valueInfo('x')), ...bytes(12, valueInfo('y'))];
  const opset = [...str(1, ''), ...num(2, 13)];
  return Uint8Array.from([...num(1, 8), ...bytes(7, graph), ...bytes(8, opset)]);
}
