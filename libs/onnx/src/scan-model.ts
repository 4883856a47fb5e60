import { byteSizeOf, onnxDataType, type OnnxDataTypeInfo } from './data-types.js';
import { OnnxError } from './errors.js';
import type { OnnxInitializerInfo, OnnxModelInfo, OnnxOpsetImport, OnnxTypeInfo, OnnxValueInfo } from './model-info.js';
import { HEADER_BYTES, readText, WIRE_LEN, type Scan, type WireCursor } from './wire-cursor.js';

// Walks a ModelProto (field numbers from onnx/onnx.proto3) and descends only into what the summary
// needs. Node bodies, value_info, doc strings and tensor payloads are skipped by moving the cursor;
// small messages (value infos, opset entries, string pairs, dims) are filled whole and read in place.

const NAME_MAX = 64 * 1024;
const DOC_MAX = 4 * 1024;
/** A value info or tensor header larger than this is not a real one. */
const SMALL_MESSAGE_MAX = 16 * 1024 * 1024;
const TYPE_DEPTH_MAX = 32;

interface GraphAcc {
  name: string;
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  initializers: OnnxInitializerInfo[];
  constants: OnnxInitializerInfo[];
  nodeCount: number;
  operators: Map<string, number>;
}

/** Scans a whole source (`c.size` bytes) as an ONNX ModelProto. */
export function* scanModel(c: WireCursor): Scan<OnnxModelInfo> {
  if (c.size === 0) throw new OnnxError('empty', 'the file is empty (0 bytes): not an ONNX model');
  const end = c.size;
  let irVersion = 0;
  let producerName = '';
  let producerVersion = '';
  let domain = '';
  let modelVersion = 0;
  let docString = '';
  const opsetImports: OnnxOpsetImport[] = [];
  const metadata: Record<string, string> = {};
  let graph: GraphAcc | undefined;

  while (c.pos < end) {
    if (c.lacks(HEADER_BYTES)) yield* c.fill(HEADER_BYTES);
    const { field, wire, at } = c.header(end);
    switch (field) {
      case 1:
        irVersion = c.uint(end, wire, 'ModelProto.ir_version', at);
        break;
      case 2:
        producerName = yield* readText(c, c.len(end, wire, 'ModelProto.producer_name', at), NAME_MAX);
        break;
      case 3:
        producerVersion = yield* readText(c, c.len(end, wire, 'ModelProto.producer_version', at), NAME_MAX);
        break;
      case 4:
        domain = yield* readText(c, c.len(end, wire, 'ModelProto.domain', at), NAME_MAX);
        break;
      case 5:
        modelVersion = c.uint(end, wire, 'ModelProto.model_version', at);
        break;
      case 6:
        docString = yield* readText(c, c.len(end, wire, 'ModelProto.doc_string', at), DOC_MAX);
        break;
      case 7: {
        const n = c.len(end, wire, 'ModelProto.graph', at);
        // A repeated singular message merges (protobuf semantics).
        graph ??= {
          name: '',
          inputs: [],
          outputs: [],
          initializers: [],
          constants: [],
          nodeCount: 0,
          operators: new Map(),
        };
        yield* scanGraph(c, c.pos + n, graph);
        break;
      }
      case 8: {
        const n = c.len(end, wire, 'ModelProto.opset_import', at);
        yield* fillSmall(c, n, 'ModelProto.opset_import', at);
        opsetImports.push(readOpset(c, c.pos + n));
        break;
      }
      case 14: {
        const n = c.len(end, wire, 'ModelProto.metadata_props', at);
        yield* fillSmall(c, n, 'ModelProto.metadata_props', at);
        const [key, value] = readStringPair(c, c.pos + n);
        metadata[key] = value;
        break;
      }
      default:
        c.skip(end, wire, field, at);
    }
  }

  if (irVersion <= 0) throw new OnnxError('no-ir-version', 'ModelProto.ir_version is missing: not an ONNX model');
  if (graph === undefined) throw new OnnxError('no-graph', 'the model has no graph (ModelProto.graph is missing)');
  if (irVersion >= 3 && opsetImports.length === 0) {
    throw new OnnxError(
      'no-opset',
      `the model (IR version ${irVersion}) imports no operator set (opset_import is empty)`,
    );
  }
  if (graph.outputs.length === 0) throw new OnnxError('no-outputs', `graph "${graph.name}" declares no outputs`);

  const initializerNames = new Set(graph.initializers.map((i) => i.name));
  const inputs = graph.inputs.filter((v) => !initializerNames.has(v.name));
  const initializerInputs = graph.inputs.filter((v) => initializerNames.has(v.name));
  let parameterCount = 0;
  let parameterBytes = 0;
  for (const init of graph.initializers) {
    parameterCount += init.elementCount;
    parameterBytes += init.byteSize;
  }
  let constantParameterCount = 0;
  let constantBytes = 0;
  for (const t of graph.constants) {
    constantParameterCount += t.elementCount;
    constantBytes += t.byteSize;
  }
  return {
    fileSize: c.size,
    irVersion,
    producerName,
    producerVersion,
    domain,
    modelVersion,
    docString,
    opsetImports,
    metadata,
    graphName: graph.name,
    inputs,
    outputs: graph.outputs,
    initializerInputs,
    initializerCount: graph.initializers.length,
    parameterCount,
    parameterBytes,
    constantCount: graph.constants.length,
    constantParameterCount,
    constantBytes,
    hasExternalData: graph.initializers.some((i) => i.external) || graph.constants.some((i) => i.external),
    initializers: graph.initializers,
    nodeCount: graph.nodeCount,
    operators: Object.fromEntries([...graph.operators].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
  };
}

function* fillSmall(c: WireCursor, n: number, what: string, at: number): Scan<void> {
  if (n > SMALL_MESSAGE_MAX)
    throw new OnnxError('malformed', `${what} at offset ${at} is ${n} bytes long, too large to be one`, at);
  if (c.lacks(n)) yield* c.fill(n);
}

function* scanGraph(c: WireCursor, end: number, g: GraphAcc): Scan<void> {
  while (c.pos < end) {
    if (c.lacks(HEADER_BYTES)) yield* c.fill(HEADER_BYTES);
    const { field, wire, at } = c.header(end);
    switch (field) {
      case 1: {
        const n = c.len(end, wire, 'GraphProto.node', at);
        yield* scanNode(c, c.pos + n, g);
        break;
      }
      case 2:
        g.name = yield* readText(c, c.len(end, wire, 'GraphProto.name', at), NAME_MAX);
        break;
      case 5: {
        const n = c.len(end, wire, 'GraphProto.initializer', at);
        g.initializers.push(yield* scanTensor(c, c.pos + n, at));
        break;
      }
      case 15: {
        const n = c.len(end, wire, 'GraphProto.sparse_initializer', at);
        g.initializers.push(yield* scanSparseTensor(c, c.pos + n, at));
        break;
      }
      case 11:
      case 12: {
        const what = field === 11 ? 'GraphProto.input' : 'GraphProto.output';
        const n = c.len(end, wire, what, at);
        yield* fillSmall(c, n, what, at);
        (field === 11 ? g.inputs : g.outputs).push(readValueInfo(c, c.pos + n, field === 11 ? 'input' : 'output'));
        break;
      }
      default:
        c.skip(end, wire, field, at);
    }
  }
}

// NodeProto: op_type = 4, domain = 7, attribute = 5. Inputs, outputs and attributes (which may hold
// subgraphs) are skipped, except the tensor (AttributeProto.t = 5) of a Constant node: exporters
// such as paddle2onnx keep every weight there instead of in initializers.
function* scanNode(c: WireCursor, end: number, g: GraphAcc): Scan<void> {
  let opType = '';
  let domain = '';
  const tensors: OnnxInitializerInfo[] = [];
  while (c.pos < end) {
    if (c.lacks(HEADER_BYTES)) yield* c.fill(HEADER_BYTES);
    const { field, wire, at } = c.header(end);
    if (field === 4) opType = yield* readText(c, c.len(end, wire, 'NodeProto.op_type', at), NAME_MAX);
    else if (field === 7) domain = yield* readText(c, c.len(end, wire, 'NodeProto.domain', at), NAME_MAX);
    else if (field === 5) {
      const stop = c.sub(end, wire, 'NodeProto.attribute', at);
      while (c.pos < stop) {
        if (c.lacks(HEADER_BYTES)) yield* c.fill(HEADER_BYTES);
        const a = c.header(stop);
        if (a.field === 5)
          tensors.push(yield* scanTensor(c, c.sub(stop, a.wire, 'AttributeProto.t', a.at), a.at, 'constant'));
        else c.skip(stop, a.wire, a.field, a.at);
      }
    } else c.skip(end, wire, field, at);
  }
  const standard = domain === '' || domain === 'ai.onnx';
  const key = standard ? opType : `${domain}:${opType}`;
  g.nodeCount += 1;
  g.operators.set(key, (g.operators.get(key) ?? 0) + 1);
  if (standard && opType === 'Constant') g.constants.push(...tensors);
}

interface TensorHeader {
  name: string;
  dims: number[];
  dataType: number;
  rawBytes: number | undefined;
  stringBytes: number;
  external: boolean;
  location: string | null;
}

// TensorProto: dims = 1, data_type = 2, name = 8, raw_data = 9, external_data = 13,
// data_location = 14; the typed payloads (float_data = 4, int32_data = 5, string_data = 6,
// int64_data = 7, double_data = 10, uint64_data = 11) are skipped, string lengths summed.
function* scanTensorHeader(c: WireCursor, end: number): Scan<TensorHeader> {
  const t: TensorHeader = {
    name: '',
    dims: [],
    dataType: 0,
    rawBytes: undefined,
    stringBytes: 0,
    external: false,
    location: null,
  };
  while (c.pos < end) {
    if (c.lacks(HEADER_BYTES)) yield* c.fill(HEADER_BYTES);
    const { field, wire, at } = c.header(end);
    switch (field) {
      case 1:
        if (wire === WIRE_LEN) {
          const n = c.len(end, wire, 'TensorProto.dims', at);
          yield* fillSmall(c, n, 'TensorProto.dims', at);
          const stop = c.pos + n;
          while (c.pos < stop) t.dims.push(c.varint(stop, 'TensorProto.dims'));
        } else {
          t.dims.push(c.uint(end, wire, 'TensorProto.dims', at));
        }
        break;
      case 2:
        t.dataType = c.uint(end, wire, 'TensorProto.data_type', at);
        break;
      case 6:
        {
          const n = c.len(end, wire, 'TensorProto.string_data', at);
          t.stringBytes += n;
          c.pos += n;
        }
        break;
      case 8:
        t.name = yield* readText(c, c.len(end, wire, 'TensorProto.name', at), NAME_MAX);
        break;
      case 9: {
        const n = c.len(end, wire, 'TensorProto.raw_data', at);
        t.rawBytes = (t.rawBytes ?? 0) + n;
        c.pos += n; // the payload itself is never read
        break;
      }
      case 13: {
        const n = c.len(end, wire, 'TensorProto.external_data', at);
        yield* fillSmall(c, n, 'TensorProto.external_data', at);
        const [key, value] = readStringPair(c, c.pos + n);
        if (key === 'location') t.location = value;
        break;
      }
      case 14:
        t.external = c.uint(end, wire, 'TensorProto.data_location', at) === 1;
        break;
      default:
        c.skip(end, wire, field, at);
    }
  }
  return t;
}

function tensorType(code: number, where: string, at: number): OnnxDataTypeInfo {
  const info = onnxDataType(code);
  if (info === undefined) {
    throw new OnnxError('unknown-elem-type', `${where} has element type ${code}, which ONNX does not define`, at);
  }
  return info;
}

function* scanTensor(c: WireCursor, end: number, at: number, role = 'initializer'): Scan<OnnxInitializerInfo> {
  const t = yield* scanTensorHeader(c, end);
  const where = `${role} "${t.name}"`;
  const info = tensorType(t.dataType, where, at);
  const elementCount = t.dims.reduce((a, b) => a * b, 1);
  if (t.dims.some((d) => d < 0) || !Number.isSafeInteger(elementCount)) {
    throw new OnnxError('malformed', `${where} has impossible dims [${t.dims.join(',')}]`, at);
  }
  const expected = byteSizeOf(info, elementCount);
  if (t.rawBytes !== undefined && expected !== undefined && t.rawBytes !== expected) {
    throw new OnnxError(
      'malformed',
      `${where}: raw_data has ${t.rawBytes} bytes, but dims [${t.dims.join(',')}] of ${info.name} need ${expected}`,
      at,
    );
  }
  return {
    name: t.name,
    elemType: info.code,
    onnxType: info.name,
    datatype: info.datatype,
    dims: t.dims,
    elementCount,
    byteSize: t.rawBytes ?? expected ?? t.stringBytes,
    external: t.external,
    location: t.external ? t.location : null,
    sparse: false,
  };
}

// SparseTensorProto: values = 1 (TensorProto, carries the name), indices = 2, dims = 3.
function* scanSparseTensor(c: WireCursor, end: number, at: number): Scan<OnnxInitializerInfo> {
  let values: TensorHeader | undefined;
  let indexBytes = 0;
  const dims: number[] = [];
  while (c.pos < end) {
    if (c.lacks(HEADER_BYTES)) yield* c.fill(HEADER_BYTES);
    const f = c.header(end);
    if (f.field === 1) {
      const n = c.len(end, f.wire, 'SparseTensorProto.values', f.at);
      values = yield* scanTensorHeader(c, c.pos + n);
    } else if (f.field === 2) {
      const n = c.len(end, f.wire, 'SparseTensorProto.indices', f.at);
      const idx = yield* scanTensorHeader(c, c.pos + n);
      indexBytes = idx.rawBytes ?? idx.dims.reduce((a, b) => a * b, 1) * 8;
    } else if (f.field === 3 && f.wire === WIRE_LEN) {
      const n = c.len(end, f.wire, 'SparseTensorProto.dims', f.at);
      yield* fillSmall(c, n, 'SparseTensorProto.dims', f.at);
      const stop = c.pos + n;
      while (c.pos < stop) dims.push(c.varint(stop, 'SparseTensorProto.dims'));
    } else if (f.field === 3) {
      dims.push(c.uint(end, f.wire, 'SparseTensorProto.dims', f.at));
    } else {
      c.skip(end, f.wire, f.field, f.at);
    }
  }
  if (values === undefined) throw new OnnxError('malformed', `sparse initializer at offset ${at} has no values`, at);
  const where = `sparse initializer "${values.name}"`;
  const info = tensorType(values.dataType, where, at);
  const nnz = values.dims.reduce((a, b) => a * b, 1);
  const dense = dims.reduce((a, b) => a * b, 1);
  if ([...dims, ...values.dims].some((d) => d < 0) || !Number.isSafeInteger(dense) || !Number.isSafeInteger(nnz)) {
    throw new OnnxError('malformed', `${where} has impossible dims [${dims.join(',')}]`, at);
  }
  return {
    name: values.name,
    elemType: info.code,
    onnxType: info.name,
    datatype: info.datatype,
    dims,
    elementCount: dense,
    byteSize: (values.rawBytes ?? byteSizeOf(info, nnz) ?? values.stringBytes) + indexBytes,
    external: values.external,
    location: values.external ? values.location : null,
    sparse: true,
  };
}

// ---- small messages, already filled whole: plain synchronous reads ----

// OperatorSetIdProto: domain = 1, version = 2.
function readOpset(c: WireCursor, end: number): OnnxOpsetImport {
  let domain = '';
  let version = 0;
  while (c.pos < end) {
    const { field, wire, at } = c.header(end);
    if (field === 1) domain = c.text(c.len(end, wire, 'OperatorSetIdProto.domain', at), NAME_MAX);
    else if (field === 2) version = c.uint(end, wire, 'OperatorSetIdProto.version', at);
    else c.skip(end, wire, field, at);
  }
  return { domain, version };
}

// StringStringEntryProto: key = 1, value = 2.
function readStringPair(c: WireCursor, end: number): [string, string] {
  let key = '';
  let value = '';
  while (c.pos < end) {
    const { field, wire, at } = c.header(end);
    if (field === 1) key = c.text(c.len(end, wire, 'StringStringEntryProto.key', at), NAME_MAX);
    else if (field === 2) value = c.text(c.len(end, wire, 'StringStringEntryProto.value', at), NAME_MAX);
    else c.skip(end, wire, field, at);
  }
  return [key, value];
}

// ValueInfoProto: name = 1, type = 2 (TypeProto), doc_string = 3.
function readValueInfo(c: WireCursor, end: number, role: 'input' | 'output'): OnnxValueInfo {
  const start = c.pos;
  let name = '';
  let type: OnnxTypeInfo | undefined;
  while (c.pos < end) {
    const { field, wire, at } = c.header(end);
    if (field === 1) name = c.text(c.len(end, wire, 'ValueInfoProto.name', at), NAME_MAX);
    else if (field === 2) {
      const n = c.len(end, wire, 'ValueInfoProto.type', at);
      type = readType(c, c.pos + n, 0, `graph ${role}`);
    } else c.skip(end, wire, field, at);
  }
  if (type === undefined) throw new OnnxError('malformed', `graph ${role} "${name}" has no type`, start);
  // Re-label element type errors with the value's name now that it is known.
  return { name, ...relabel(type, `graph ${role} "${name}"`, start) };
}

/** Element types are checked after the name is read (fields may come in any order). */
function relabel(type: OnnxTypeInfo, where: string, at: number): OnnxTypeInfo {
  if ((type.kind === 'tensor' || type.kind === 'sparse_tensor') && type.onnxType === null) {
    throw new OnnxError(
      'unknown-elem-type',
      type.elemType === 0
        ? `${where} has no element type (UNDEFINED)`
        : `${where} has element type ${type.elemType}, which ONNX does not define`,
      at,
    );
  }
  if (type.element !== undefined) relabel(type.element, `${where} (element)`, at);
  return type;
}

// TypeProto: tensor_type = 1, sequence_type = 4, map_type = 5, opaque_type = 7,
// sparse_tensor_type = 8, optional_type = 9; denotation = 6.
function readType(c: WireCursor, end: number, depth: number, where: string): OnnxTypeInfo {
  if (depth > TYPE_DEPTH_MAX)
    throw new OnnxError('malformed', `${where}: type nested deeper than ${TYPE_DEPTH_MAX}`, c.pos);
  let type: OnnxTypeInfo | undefined;
  while (c.pos < end) {
    const { field, wire, at } = c.header(end);
    switch (field) {
      case 1:
      case 8: {
        const n = c.len(end, wire, 'TypeProto.tensor_type', at);
        type = readTensorType(c, c.pos + n, field === 1 ? 'tensor' : 'sparse_tensor');
        break;
      }
      case 4:
      case 9: {
        const n = c.len(end, wire, field === 4 ? 'TypeProto.sequence_type' : 'TypeProto.optional_type', at);
        const stop = c.pos + n;
        let element: OnnxTypeInfo | undefined;
        while (c.pos < stop) {
          const f = c.header(stop);
          if (f.field === 1) element = readType(c, c.sub(stop, f.wire, 'elem_type', f.at), depth + 1, where);
          else c.skip(stop, f.wire, f.field, f.at);
        }
        type = { ...nonTensor(field === 4 ? 'sequence' : 'optional'), ...(element ? { element } : {}) };
        break;
      }
      case 5: {
        const n = c.len(end, wire, 'TypeProto.map_type', at);
        const stop = c.pos + n;
        let keyType = 0;
        let element: OnnxTypeInfo | undefined;
        while (c.pos < stop) {
          const f = c.header(stop);
          if (f.field === 1) keyType = c.uint(stop, f.wire, 'TypeProto.Map.key_type', f.at);
          else if (f.field === 2) element = readType(c, c.sub(stop, f.wire, 'value_type', f.at), depth + 1, where);
          else c.skip(stop, f.wire, f.field, f.at);
        }
        const key = onnxDataType(keyType);
        type = { ...nonTensor('map'), elemType: keyType, onnxType: key?.name ?? null, ...(element ? { element } : {}) };
        break;
      }
      case 7:
        c.skip(end, wire, field, at);
        type = nonTensor('opaque');
        break;
      default:
        c.skip(end, wire, field, at);
    }
  }
  if (type === undefined) throw new OnnxError('malformed', `${where}: TypeProto sets no type`, c.pos);
  return type;
}

function nonTensor(kind: 'sequence' | 'optional' | 'map' | 'opaque'): OnnxTypeInfo {
  return { kind, elemType: 0, onnxType: null, datatype: null, shape: null, dimParams: null };
}

// TypeProto.Tensor / SparseTensor: elem_type = 1, shape = 2 (TensorShapeProto: dim = 1, each
// Dimension: dim_value = 1, dim_param = 2, denotation = 3).
function readTensorType(c: WireCursor, end: number, kind: 'tensor' | 'sparse_tensor'): OnnxTypeInfo {
  let elemType = 0;
  let shape: number[] | null = null;
  let dimParams: (string | null)[] | null = null;
  while (c.pos < end) {
    const { field, wire, at } = c.header(end);
    if (field === 1) elemType = c.uint(end, wire, 'TypeProto.Tensor.elem_type', at);
    else if (field === 2) {
      const stop = c.sub(end, wire, 'TypeProto.Tensor.shape', at);
      shape = [];
      dimParams = [];
      while (c.pos < stop) {
        const f = c.header(stop);
        if (f.field !== 1) {
          c.skip(stop, f.wire, f.field, f.at);
          continue;
        }
        const dimEnd = c.sub(stop, f.wire, 'TensorShapeProto.dim', f.at);
        let value = -1;
        let param: string | null = null;
        while (c.pos < dimEnd) {
          const d = c.header(dimEnd);
          if (d.field === 1) {
            value = c.uint(dimEnd, d.wire, 'Dimension.dim_value', d.at);
            param = null;
          } else if (d.field === 2) {
            param = c.text(c.len(dimEnd, d.wire, 'Dimension.dim_param', d.at), NAME_MAX);
            value = -1;
          } else c.skip(dimEnd, d.wire, d.field, d.at);
        }
        shape.push(value < 0 ? -1 : value);
        dimParams.push(param);
      }
    } else c.skip(end, wire, field, at);
  }
  const info = onnxDataType(elemType);
  return { kind, elemType, onnxType: info?.name ?? null, datatype: info?.datatype ?? null, shape, dimParams };
}
