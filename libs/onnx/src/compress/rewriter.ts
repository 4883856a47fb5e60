import { OnnxDataType } from '../data-types.js';
import { encodeNode, encodeTensor, type NodeSpec, type TensorSpec } from '../model-spec.js';
import { ProtoWriter } from '../proto-writer.js';
import { CompressError } from './compress-error.js';
import type { CompressMethod, CompressResult, LeftOp } from './compress-types.js';
import { floatData, type GraphView, type ModelView, type NodeView, type TensorView } from './onnx-graph.js';
import { readFields } from './wire-fields.js';
import { bytesOf } from './weight-math.js';

// The state of one rewrite and its encoding. Methods record what replaces what (constants that
// replace a weight, nodes that restore it under its name, nodes that replace nodes); encode() then
// writes the model, copying every field nothing replaced byte for byte (fields it does not know
// included). Only the main graph is rewritten; subgraphs (If, Loop, Scan bodies) still see the
// weights they name, restored in float32.

const WEIGHT_OPS = 'MatMul, Gemm, Conv, LSTM, GRU and RNN';

/** A tensor with a value known before run time: an initializer or a Constant node's `value`. */
export interface Source {
  readonly tensor: TensorView;
  /** The Constant node that holds it; undefined for an initializer. */
  readonly node?: NodeView;
  /** Made by the rewriter (a folded bias): written as a new initializer. */
  readonly added?: true;
}

/** A node to write: described, or an encoded NodeProto payload. */
export type NodeOut = NodeSpec | Uint8Array;

export interface Replacement {
  /** Constants that replace the source (initializers, or Constant nodes when the source was one). */
  readonly tensors: TensorSpec[];
  /** Nodes that compute the source's name from them. */
  readonly nodes: NodeSpec[];
}

export interface Use {
  readonly node: NodeView;
  readonly index: number;
}

export class Rewriter {
  readonly sources = new Map<string, Source>();
  readonly uses = new Map<string, Use[]>();
  readonly graphInputs: ReadonlySet<string>;
  readonly graphOutputs: ReadonlySet<string>;
  readonly names: Set<string>;
  readonly replacements = new Map<string, Replacement>();
  /** Sources no longer needed (int8-dynamic weights whose every reader was rewritten). */
  readonly removed = new Set<string>();
  /** Node index -> the nodes that take its place (none: the node is dropped). */
  readonly nodeReplacements = new Map<number, NodeOut[]>();
  /** New float32 values of sources, under their names (BatchNormalization folded into Conv). */
  readonly overrides = new Map<string, Float32Array>();
  /** Values no longer produced, whose value_info entries are dropped. */
  readonly removedValues = new Set<string>();
  readonly foldedNodes = new Set<number>();
  /** Operator sets the new nodes need that the model does not import: domain -> version. */
  readonly extraOpsets = new Map<string, number>();
  /** Initializers added at the end of the graph. */
  readonly extraInitializers: TensorSpec[] = [];
  readonly rewrittenNodes = new Set<number>();
  readonly nodeReasons = new Map<number, string>();
  readonly extraLeft: { op: string; reason: string }[] = [];
  readonly parameters: Record<string, string> = {};

  constructor(
    readonly model: ModelView,
    readonly graph: GraphView,
  ) {
    for (const [name, tensor] of graph.initializers) this.sources.set(name, { tensor });
    for (const node of graph.nodes) {
      const value = node.attributes.get('value')?.t;
      if (node.domain === '' && node.opType === 'Constant' && value !== undefined && node.outputs[0] !== undefined) {
        this.sources.set(node.outputs[0], { tensor: { ...value, name: node.outputs[0] }, node });
      }
      node.inputs.forEach((name, index) => {
        if (name === '') return;
        const list = this.uses.get(name) ?? [];
        list.push({ node, index });
        this.uses.set(name, list);
      });
    }
    for (const [name, s] of this.sources) {
      if (s.tensor.external) {
        throw new CompressError(
          'external-data',
          `${s.node === undefined ? 'initializer' : 'constant'} "${name}" keeps its data in an external file: ` +
            'compress takes self-contained models ' +
            '(save it with onnx.save_model(..., save_as_external_data=False))',
        );
      }
    }
    this.graphInputs = new Set(graph.inputs.map((v) => v.name));
    this.graphOutputs = new Set(graph.outputs.map((v) => v.name));
    this.names = new Set(graph.names);
  }

  fresh(base: string): string {
    let name = base;
    for (let k = 1; this.names.has(name); k++) name = `${base}_${k}`;
    this.names.add(name);
    return name;
  }

  /** A float source's values (after folding). */
  data(name: string, source: Source): Float32Array {
    return this.overrides.get(name) ?? floatData(source.tensor);
  }

  floatSource(name: string): Source | undefined {
    const s = this.sources.get(name);
    return s !== undefined && s.tensor.dataType === OnnxDataType.FLOAT ? s : undefined;
  }

  /** Why a float source cannot be replaced by a computed value of the same name, or undefined. */
  blocked(name: string): string | undefined {
    if (this.graphInputs.has(name))
      return `"${name}" is also a graph input (callers may override it), so it stays float32`;
    if (this.graphOutputs.has(name)) return `"${name}" is also a graph output, so it stays float32`;
    return undefined;
  }

  leaveNodes(uses: readonly Use[], reason: string): void {
    for (const u of uses) if (!this.nodeReasons.has(u.node.index)) this.nodeReasons.set(u.node.index, reason);
  }

  replace(name: string, replacement: Replacement): void {
    this.replacements.set(name, replacement);
    for (const u of this.uses.get(name) ?? []) this.rewrittenNodes.add(u.node.index);
  }

  /**
   * Sources whose values changed but that no method replaced are written back in float32; the
   * constants of added sources, and from IR 4 on those replacing Constant nodes (an initializer
   * is smaller than a Constant node; before IR 4 it would also have to be a graph input), become
   * initializers at the end of the graph.
   */
  finish(): void {
    for (const [name, values] of this.overrides) {
      if (this.replacements.has(name)) continue;
      const source = this.sources.get(name)!;
      this.replacements.set(name, {
        tensors: [{ name, dataType: OnnxDataType.FLOAT, dims: source.tensor.dims, raw: bytesOf(values) }],
        nodes: [],
      });
    }
    for (const [name, r] of this.replacements) {
      const source = this.sources.get(name);
      if (source?.added === true || (source?.node !== undefined && this.model.irVersion >= 4))
        this.extraInitializers.push(...r.tensors);
    }
  }

  leaveAll(reason: string): void {
    for (const node of this.graph.nodes) this.nodeReasons.set(node.index, reason);
  }

  defaultReason(node: NodeView, method: CompressMethod): string {
    const hasFloatConstant = node.inputs.some((name) => this.floatSource(name) !== undefined);
    if (!hasFloatConstant) return 'no float32 constants to rewrite: computes in float32';
    switch (method) {
      case 'fp16':
        return 'its float32 constants are kept';
      case 'int8-dynamic':
        return node.opType === 'Conv' || node.opType === 'GRU' || node.opType === 'RNN'
          ? `int8-dynamic rewrites MatMul, Gemm and LSTM only; ${node.opType} stays float32 ` +
              '(int8-weights stores its weights in int8)'
          : 'int8-dynamic rewrites MatMul, Gemm and LSTM only';
      default:
        return `not a weight of ${WEIGHT_OPS}: its constants stay float32`;
    }
  }

  encode(): Uint8Array {
    const graph = new ProtoWriter();
    // Nodes that restore replaced initializers come first: they read only constants.
    for (const [name, r] of this.replacements) {
      if (this.sources.get(name)?.node === undefined) for (const n of r.nodes) writeNode(graph, n);
    }
    let nodeIndex = 0;
    for (const f of this.graph.fields) {
      if (f.field === 1 && f.wire === 2) {
        const node = this.graph.nodes[nodeIndex++]!;
        const output = node.outputs[0] ?? '';
        const constant = this.sources.get(output)?.node === node;
        const replacement = constant ? this.replacements.get(output) : undefined;
        const nodes = this.nodeReplacements.get(node.index);
        if (replacement !== undefined) {
          // Before IR 4 the constants stay Constant nodes (see finish()).
          for (const t of this.model.irVersion >= 4 ? [] : replacement.tensors) {
            const keepName =
              t.name === output && node.name !== '' ? { name: node.name } : { name: this.fresh(`${t.name}_Constant`) };
            graph.message(
              1,
              encodeNode({
                opType: 'Constant',
                ...keepName,
                inputs: [],
                outputs: [t.name],
                attributes: { value: { t } },
              }),
            );
          }
          for (const n of replacement.nodes) graph.message(1, encodeNode(n));
        } else if (nodes !== undefined) {
          for (const n of nodes) writeNode(graph, n);
        } else if (!(constant && this.removed.has(output))) {
          graph.raw(f.span);
        }
      } else if (f.field === 5 && f.wire === 2) {
        const name = this.graph.initializerNames.get(f) ?? '';
        const replacement = this.replacements.get(name);
        if (replacement !== undefined) for (const t of replacement.tensors) graph.message(5, encodeTensor(t));
        else if (!this.removed.has(name)) graph.raw(f.span);
      } else if (f.field === 13 && f.wire === 2 && this.removedValues.has(this.graph.valueInfoNames.get(f) ?? '')) {
        continue;
      } else {
        graph.raw(f.span);
      }
    }
    for (const t of this.extraInitializers) graph.message(5, encodeTensor(t));
    const model = new ProtoWriter();
    for (const f of this.model.fields) {
      if (f === this.model.graphField) model.message(7, graph);
      else model.raw(f.span);
    }
    // OperatorSetIdProto: domain = 1, version = 2.
    for (const [domain, version] of this.extraOpsets) {
      if (!this.model.domains.has(domain)) model.message(8, new ProtoWriter().string(1, domain).varint(2, version));
    }
    return model.finish();
  }

  result(bytes: Uint8Array, method: CompressMethod): CompressResult {
    this.finish();
    const changed = this.replacements.size > 0 || this.nodeReplacements.size > 0;
    // new Uint8Array(...) copies (Buffer#slice would share the memory).
    const out = changed ? this.encode() : new Uint8Array(bytes);
    const rewritten = new Map<string, number>();
    const left = new Map<string, LeftOp>();
    const addLeft = (op: string, reason: string): void => {
      const key = `${op}\u0000${reason}`;
      const prev = left.get(key);
      left.set(key, { op, reason, count: (prev?.count ?? 0) + 1 });
    };
    for (const node of this.graph.nodes) {
      if (node.domain === '' && node.opType === 'Constant') continue;
      const op = node.domain === '' ? node.opType : `${node.domain}:${node.opType}`;
      if (this.rewrittenNodes.has(node.index) || this.foldedNodes.has(node.index))
        rewritten.set(op, (rewritten.get(op) ?? 0) + 1);
      else addLeft(op, this.nodeReasons.get(node.index) ?? this.defaultReason(node, method));
    }
    for (const { op, reason } of this.extraLeft) addLeft(op, reason);
    return {
      model: out,
      sizeBefore: bytes.length,
      sizeAfter: out.length,
      rewritten: [...rewritten].map(([op, count]) => ({ op, count })),
      left: [...left.values()],
      parameters: { ...this.parameters },
    };
  }
}

export function writeNode(graph: ProtoWriter, n: NodeOut): void {
  if (n instanceof Uint8Array) graph.message(1, new ProtoWriter().raw(n));
  else graph.message(1, encodeNode(n));
}

/**
 * A node's NodeProto with new inputs and outputs (fields 1 and 2) and optionally a new name (3),
 * op type (4) and domain (7); every other field (attributes, doc string) as it was.
 */
export function reencodeNode(
  node: NodeView,
  inputs: readonly string[],
  outputs: readonly string[],
  as?: { readonly opType: string; readonly domain: string; readonly name: string },
): Uint8Array {
  const w = new ProtoWriter();
  for (const i of inputs) w.string(1, i);
  for (const o of outputs) w.string(2, o);
  if (as !== undefined) {
    if (as.name !== '') w.string(3, as.name);
    w.string(4, as.opType);
    if (as.domain !== '') w.string(7, as.domain);
  }
  const replaced = as === undefined ? [1, 2] : [1, 2, 3, 4, 7];
  for (const f of readFields(node.field.payload)) if (!replaced.includes(f.field)) w.raw(f.span);
  return w.finish();
}
