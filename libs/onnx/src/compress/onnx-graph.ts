import { OnnxDataType } from '../data-types.js';
import { CompressError } from './compress-error.js';
import { readFields, text, varints, type WireField } from './wire-fields.js';

// The parts of a ModelProto the rewriter reads (field numbers from onnx/onnx.proto3). Every message
// keeps its fields, so whatever is not rewritten is written back from its original bytes.

export interface TensorView {
  readonly name: string;
  readonly dataType: number;
  readonly dims: readonly number[];
  readonly elementCount: number;
  readonly external: boolean;
  readonly fields: readonly WireField[];
}

export interface AttributeView {
  readonly name: string;
  readonly field: WireField;
  readonly i?: number;
  readonly f?: number;
  readonly t?: TensorView;
  /** Holds a subgraph (AttributeProto.g = 6 or graphs = 11). */
  readonly hasGraph: boolean;
}

export interface NodeView {
  /** Position among the graph's nodes. */
  readonly index: number;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly name: string;
  readonly opType: string;
  readonly domain: string;
  readonly attributes: ReadonlyMap<string, AttributeView>;
  readonly field: WireField;
}

export interface ValueView {
  readonly name: string;
  readonly field: WireField;
}

export interface GraphView {
  readonly fields: readonly WireField[];
  readonly nodes: readonly NodeView[];
  readonly initializers: ReadonlyMap<string, TensorView>;
  /** The name of the initializer each GraphProto.initializer field holds. */
  readonly initializerNames: ReadonlyMap<WireField, string>;
  /** The name each GraphProto.value_info field describes. */
  readonly valueInfoNames: ReadonlyMap<WireField, string>;
  readonly inputs: readonly ValueView[];
  readonly outputs: readonly ValueView[];
  /** Every value, node and initializer name in the graph, for picking fresh names. */
  readonly names: ReadonlySet<string>;
}

export interface ModelView {
  readonly fields: readonly WireField[];
  readonly irVersion: number;
  readonly graphField: WireField;
  readonly graph: GraphView;
  /** Version of the default ('' / 'ai.onnx') operator set, 0 when not imported. */
  readonly opset: number;
  /** Every imported operator set domain ('' for the default one). */
  readonly domains: ReadonlySet<string>;
}

// TensorProto: dims = 1, data_type = 2, float_data = 4, name = 8, raw_data = 9, data_location = 14.
export function readTensor(payload: Uint8Array): TensorView {
  const fields = readFields(payload);
  const dims = varints(fields, 1);
  let dataType = 0;
  let name = '';
  let external = false;
  for (const f of fields) {
    if (f.field === 2 && f.wire === 0) dataType = f.value;
    else if (f.field === 8 && f.wire === 2) name = text(f);
    else if (f.field === 14 && f.wire === 0) external = f.value === 1;
  }
  return { name, dataType, dims, elementCount: dims.reduce((a, b) => a * b, 1), external, fields };
}

/** The elements of a FLOAT tensor (raw_data or float_data), as a fresh array. */
export function floatData(t: TensorView): Float32Array {
  if (t.dataType !== OnnxDataType.FLOAT) throw new Error(`tensor "${t.name}" is not FLOAT`);
  const raw = t.fields.filter((f) => f.field === 9 && f.wire === 2);
  const out = new Float32Array(t.elementCount);
  if (raw.length > 0) {
    const bytes = raw.length === 1 ? raw[0]!.payload : concat(raw.map((f) => f.payload));
    if (bytes.length !== t.elementCount * 4) {
      throw new CompressError(
        'bad-model',
        `tensor "${t.name}" has ${bytes.length} bytes of raw_data, ` +
          `but dims [${t.dims.join(',')}] need ${t.elementCount * 4}`,
      );
    }
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  let k = 0;
  for (const f of t.fields) {
    if (f.field !== 4) continue;
    const bytes = f.wire === 2 ? f.payload : f.wire === 5 ? f.payload : new Uint8Array(0);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let at = 0; at + 4 <= bytes.length; at += 4) {
      if (k < out.length) out[k] = view.getFloat32(at, true);
      k += 1;
    }
  }
  if (k !== t.elementCount) {
    throw new CompressError(
      'bad-model',
      `tensor "${t.name}" has ${k} float_data values, but dims [${t.dims.join(',')}] need ${t.elementCount}`,
    );
  }
  return out;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// AttributeProto: name = 1, f = 2, i = 3, t = 5, g = 6, graphs = 11.
function readAttribute(field: WireField): AttributeView {
  let hasGraph = false;
  let name = '';
  let i: number | undefined;
  let f: number | undefined;
  let t: TensorView | undefined;
  for (const a of readFields(field.payload)) {
    if (a.field === 1 && a.wire === 2) name = text(a);
    else if (a.field === 2 && a.wire === 5)
      f = new DataView(a.payload.buffer, a.payload.byteOffset, 4).getFloat32(0, true);
    else if (a.field === 3 && a.wire === 0) i = a.value;
    else if (a.field === 5 && a.wire === 2) t = readTensor(a.payload);
    else if (a.field === 6 || a.field === 11) hasGraph = true;
  }
  return {
    name,
    field,
    hasGraph,
    ...(i === undefined ? {} : { i }),
    ...(f === undefined ? {} : { f }),
    ...(t === undefined ? {} : { t }),
  };
}

// NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5, domain = 7.
function readNode(field: WireField, index: number): NodeView {
  const inputs: string[] = [];
  const outputs: string[] = [];
  let name = '';
  let opType = '';
  let domain = '';
  const attributes = new Map<string, AttributeView>();
  for (const f of readFields(field.payload)) {
    if (f.wire !== 2) continue;
    if (f.field === 1) inputs.push(text(f));
    else if (f.field === 2) outputs.push(text(f));
    else if (f.field === 3) name = text(f);
    else if (f.field === 4) opType = text(f);
    else if (f.field === 7) domain = text(f);
    else if (f.field === 5) {
      const a = readAttribute(f);
      attributes.set(a.name, a);
    }
  }
  return { index, inputs, outputs, name, opType, domain: domain === 'ai.onnx' ? '' : domain, attributes, field };
}

// ValueInfoProto: name = 1.
function readValueName(field: WireField): ValueView {
  const name = readFields(field.payload).find((f) => f.field === 1 && f.wire === 2);
  return { name: name === undefined ? '' : text(name), field };
}

// GraphProto: node = 1, initializer = 5, input = 11, output = 12, value_info = 13,
// sparse_initializer = 15.
function readGraph(payload: Uint8Array): GraphView {
  const fields = readFields(payload);
  const nodes: NodeView[] = [];
  const initializers = new Map<string, TensorView>();
  const initializerNames = new Map<WireField, string>();
  const valueInfoNames = new Map<WireField, string>();
  const inputs: ValueView[] = [];
  const outputs: ValueView[] = [];
  const names = new Set<string>();
  for (const f of fields) {
    if (f.wire !== 2) continue;
    if (f.field === 1) {
      const node = readNode(f, nodes.length);
      nodes.push(node);
      for (const v of [...node.inputs, ...node.outputs, node.name]) names.add(v);
    } else if (f.field === 5) {
      const t = readTensor(f.payload);
      initializers.set(t.name, t);
      initializerNames.set(f, t.name);
      names.add(t.name);
    } else if (f.field === 11 || f.field === 12 || f.field === 13) {
      const v = readValueName(f);
      names.add(v.name);
      if (f.field === 11) inputs.push(v);
      else if (f.field === 12) outputs.push(v);
      else valueInfoNames.set(f, v.name);
    } else if (f.field === 15) {
      const values = readFields(f.payload).find((s) => s.field === 1 && s.wire === 2);
      if (values !== undefined) names.add(readTensor(values.payload).name);
    }
  }
  return { fields, nodes, initializers, initializerNames, valueInfoNames, inputs, outputs, names };
}

// ModelProto: ir_version = 1, graph = 7, opset_import = 8 (OperatorSetIdProto: domain = 1, version = 2).
export function readModel(bytes: Uint8Array): ModelView {
  if (bytes.length === 0) throw new CompressError('bad-model', 'the model is empty (0 bytes)');
  const fields = readFields(bytes);
  let irVersion = 0;
  let opset = 0;
  const domains = new Set<string>();
  const graphs = fields.filter((f) => f.field === 7 && f.wire === 2);
  for (const f of fields) {
    if (f.field === 1 && f.wire === 0) irVersion = f.value;
    else if (f.field === 8 && f.wire === 2) {
      const entry = readFields(f.payload);
      const domain = entry.find((e) => e.field === 1 && e.wire === 2);
      const version = entry.find((e) => e.field === 2 && e.wire === 0);
      const d = domain === undefined ? '' : text(domain);
      domains.add(d === 'ai.onnx' ? '' : d);
      if ((d === '' || d === 'ai.onnx') && version !== undefined) opset = version.value;
    }
  }
  const graphField = graphs[0];
  if (graphField === undefined || irVersion === 0) {
    throw new CompressError('bad-model', `not an ONNX model: ${irVersion === 0 ? 'no ir_version' : 'no graph'}`);
  }
  if (graphs.length > 1)
    throw new CompressError(
      'bad-model',
      'the model has its graph split over several fields; save it again with onnx.save',
    );
  return { fields, irVersion, graphField, graph: readGraph(graphField.payload), opset, domains };
}
