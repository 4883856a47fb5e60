import { OnnxDataType } from './data-types.js';
import { ProtoWriter } from './proto-writer.js';

// A plain description of an ONNX model and its encoding as a ModelProto (field numbers from
// onnx/onnx.proto3). Only what our builders and tests need: tensors with raw data (or external
// data), nodes with scalar/list/tensor attributes, typed graph inputs and outputs.

export interface TensorSpec {
  readonly name: string;
  readonly dataType: number;
  readonly dims: readonly number[];
  /** Little-endian element bytes; several chunks form one raw_data field. */
  readonly raw?: Uint8Array | readonly Uint8Array[];
  /** Data in a file beside the model (data_location EXTERNAL); `raw` is then not written. */
  readonly external?: { readonly location: string; readonly offset?: number; readonly length?: number };
}

/** A dim: a size, a symbolic name (`N`), or null for an unknown unnamed dim. */
export type DimSpec = number | string | null;

export interface ValueSpec {
  readonly name: string;
  readonly dataType: number;
  /** null: no shape (any rank); [] is a scalar. */
  readonly shape: readonly DimSpec[] | null;
}

export type AttributeValue =
  | { readonly f: number }
  | { readonly i: number }
  | { readonly s: string }
  | { readonly floats: readonly number[] }
  | { readonly ints: readonly number[] }
  | { readonly strings: readonly string[] }
  | { readonly t: TensorSpec };

export interface NodeSpec {
  readonly opType: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly name?: string;
  readonly domain?: string;
  readonly attributes?: Readonly<Record<string, AttributeValue>>;
}

export interface GraphSpec {
  readonly name: string;
  readonly nodes: readonly NodeSpec[];
  readonly initializers: readonly TensorSpec[];
  readonly inputs: readonly ValueSpec[];
  readonly outputs: readonly ValueSpec[];
  readonly docString?: string;
}

export interface ModelSpec {
  /** Default 8 (the IR of opset 17). */
  readonly irVersion?: number;
  /** Default [{ domain: '', version: 17 }]. */
  readonly opsetImports?: readonly { readonly domain: string; readonly version: number }[];
  readonly producerName?: string;
  readonly producerVersion?: string;
  readonly domain?: string;
  readonly modelVersion?: number;
  readonly docString?: string;
  readonly metadata?: Readonly<Record<string, string>>;
  readonly graph: GraphSpec;
}

export const DEFAULT_OPSET = 17;
export const DEFAULT_IR_VERSION = 8;

/** FLOAT tensor from values (written little-endian whatever the host). */
export function floatTensor(name: string, dims: readonly number[], values: ArrayLike<number>): TensorSpec {
  const raw = new Uint8Array(values.length * 4);
  const view = new DataView(raw.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i] ?? 0, true);
  return { name, dataType: OnnxDataType.FLOAT, dims, raw };
}

/** INT64 tensor from values. */
export function int64Tensor(name: string, dims: readonly number[], values: readonly (number | bigint)[]): TensorSpec {
  const raw = new Uint8Array(values.length * 8);
  const view = new DataView(raw.buffer);
  values.forEach((v, i) => view.setBigInt64(i * 8, BigInt(v), true));
  return { name, dataType: OnnxDataType.INT64, dims, raw };
}

// TensorProto: dims = 1, data_type = 2, name = 8, raw_data = 9, external_data = 13, data_location = 14.
export function encodeTensor(t: TensorSpec): ProtoWriter {
  const w = new ProtoWriter();
  if (t.dims.length > 0) w.packedVarints(1, t.dims);
  w.varint(2, t.dataType);
  if (t.name !== '') w.string(8, t.name);
  if (t.external !== undefined) {
    const entries: [string, string][] = [['location', t.external.location]];
    if (t.external.offset !== undefined) entries.push(['offset', String(t.external.offset)]);
    if (t.external.length !== undefined) entries.push(['length', String(t.external.length)]);
    for (const [key, value] of entries) w.message(13, new ProtoWriter().string(1, key).string(2, value));
    w.varint(14, 1);
  } else if (t.raw !== undefined) {
    w.bytes(9, t.raw);
  }
  return w;
}

// ValueInfoProto: name = 1, type = 2 -> TypeProto.tensor_type = 1 -> elem_type = 1, shape = 2 ->
// dim = 1 -> dim_value = 1 | dim_param = 2.
function encodeValue(v: ValueSpec): ProtoWriter {
  const tensorType = new ProtoWriter().varint(1, v.dataType);
  if (v.shape !== null) {
    const shape = new ProtoWriter();
    for (const d of v.shape) {
      const dim = new ProtoWriter();
      if (typeof d === 'number') dim.varint(1, d);
      else if (typeof d === 'string') dim.string(2, d);
      shape.message(1, dim);
    }
    tensorType.message(2, shape);
  }
  return new ProtoWriter().string(1, v.name).message(2, new ProtoWriter().message(1, tensorType));
}

// AttributeProto: name = 1, f = 2, i = 3, s = 4, t = 5, floats = 7, ints = 8, strings = 9, type = 20
// (FLOAT 1, INT 2, STRING 3, TENSOR 4, FLOATS 6, INTS 7, STRINGS 8).
function encodeAttribute(name: string, a: AttributeValue): ProtoWriter {
  const w = new ProtoWriter().string(1, name);
  if ('f' in a) w.float(2, a.f).varint(20, 1);
  else if ('i' in a) w.varint(3, a.i).varint(20, 2);
  else if ('s' in a) w.string(4, a.s).varint(20, 3);
  else if ('t' in a) w.message(5, encodeTensor(a.t)).varint(20, 4);
  else if ('floats' in a) {
    for (const f of a.floats) w.float(7, f);
    w.varint(20, 6);
  } else if ('ints' in a) w.packedVarints(8, a.ints).varint(20, 7);
  else {
    for (const s of a.strings) w.string(9, s);
    w.varint(20, 8);
  }
  return w;
}

// NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5, domain = 7.
export function encodeNode(n: NodeSpec): ProtoWriter {
  const w = new ProtoWriter();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  if (n.name !== undefined) w.string(3, n.name);
  w.string(4, n.opType);
  for (const [name, value] of Object.entries(n.attributes ?? {})) w.message(5, encodeAttribute(name, value));
  if (n.domain !== undefined && n.domain !== '') w.string(7, n.domain);
  return w;
}

// GraphProto: node = 1, name = 2, initializer = 5, doc_string = 10, input = 11, output = 12.
function encodeGraph(g: GraphSpec): ProtoWriter {
  const w = new ProtoWriter();
  for (const n of g.nodes) w.message(1, encodeNode(n));
  w.string(2, g.name);
  for (const t of g.initializers) w.message(5, encodeTensor(t));
  if (g.docString !== undefined) w.string(10, g.docString);
  for (const v of g.inputs) w.message(11, encodeValue(v));
  for (const v of g.outputs) w.message(12, encodeValue(v));
  return w;
}

// ModelProto: ir_version = 1, producer_name = 2, producer_version = 3, domain = 4,
// model_version = 5, doc_string = 6, graph = 7, opset_import = 8, metadata_props = 14.
function encodeModelWriter(m: ModelSpec): ProtoWriter {
  const w = new ProtoWriter().varint(1, m.irVersion ?? DEFAULT_IR_VERSION);
  w.string(2, m.producerName ?? 'quanta');
  if (m.producerVersion !== undefined) w.string(3, m.producerVersion);
  if (m.domain !== undefined) w.string(4, m.domain);
  if (m.modelVersion !== undefined) w.varint(5, m.modelVersion);
  if (m.docString !== undefined) w.string(6, m.docString);
  w.message(7, encodeGraph(m.graph));
  for (const o of m.opsetImports ?? [{ domain: '', version: DEFAULT_OPSET }]) {
    const opset = new ProtoWriter();
    if (o.domain !== '') opset.string(1, o.domain);
    w.message(8, opset.varint(2, o.version));
  }
  for (const [key, value] of Object.entries(m.metadata ?? {})) {
    w.message(14, new ProtoWriter().string(1, key).string(2, value));
  }
  return w;
}

/** The model as one ModelProto byte string. */
export function encodeModel(m: ModelSpec): Uint8Array {
  return encodeModelWriter(m).finish();
}

/** The model as its parts in order (large raw data not copied), e.g. to stream to a file. */
export function encodeModelChunks(m: ModelSpec): Uint8Array[] {
  return encodeModelWriter(m).chunks();
}
