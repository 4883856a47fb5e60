import { OnnxDataType } from '../data-types.js';
import { encodeNode, encodeTensor, type AttributeValue, type NodeSpec, type TensorSpec } from '../model-spec.js';
import { ProtoWriter } from '../proto-writer.js';
import { CompressError } from './compress-error.js';
import { floatData, readModel, type GraphView, type ModelView, type NodeView, type TensorView } from './onnx-graph.js';
import { readFields } from './wire-fields.js';
import { bytesOf, FLOAT16_MAX, pruneByMagnitude, quantizeInt8, toFloat16, transpose2d } from './weight-math.js';

// Rewrites a ModelProto's weights. Everything that is not rewritten is copied byte for byte (fields
// it does not know included); a rewritten weight keeps its name as the output of the node that
// restores it in float32, so the nodes that read it, the graph inputs and outputs and the opset
// imports stay as they were. Only the main graph is rewritten; subgraphs (If, Loop, Scan bodies)
// still see the weights they name, restored in float32.

export type CompressMethod = 'int8-weights' | 'int8-dynamic' | 'fp16' | 'prune';

export const COMPRESS_METHODS: readonly CompressMethod[] = ['int8-weights', 'int8-dynamic', 'fp16', 'prune'];

export interface CompressOptions {
  readonly method: CompressMethod;
  /** Fraction of weights set to zero by magnitude, 0 < s < 1: required for 'prune', optional for 'int8-weights' (prune, then quantize). */
  readonly sparsity?: number;
}

export interface OpCount {
  readonly op: string;
  readonly count: number;
}

export interface LeftOp {
  readonly op: string;
  readonly count: number;
  readonly reason: string;
}

export interface CompressResult {
  /** The rewritten ModelProto. */
  readonly model: Uint8Array;
  readonly sizeBefore: number;
  readonly sizeAfter: number;
  /** Nodes whose weights (or, for int8-dynamic, whose computation) were rewritten, by op type. */
  readonly rewritten: readonly OpCount[];
  /** What stays float32, by op type and reason: nodes not rewritten, and parts (biases) of rewritten ones. */
  readonly left: readonly LeftOp[];
  /** The method's parameters, for lineage. */
  readonly parameters: Readonly<Record<string, string>>;
}

/**
 * Weights with fewer elements stay float32 under int8-weights, int8-dynamic and prune: the nodes,
 * names and per-channel scales that restore them cost about as much as they save.
 */
export const MIN_WEIGHT_ELEMENTS = 256;

/** Constants with fewer elements stay float32 under fp16: the Cast node costs more than it saves. */
export const MIN_FP16_ELEMENTS = 64;

const WEIGHT_OPS = 'MatMul, Gemm, Conv, LSTM, GRU and RNN';

const MS_DOMAIN = 'com.microsoft';

/** Where a tensor is a weight: the axis of its output channels, -1 for one scale per tensor. */
function weightAxis(node: NodeView, index: number, dims: readonly number[]): number | undefined {
  if (node.domain !== '') return undefined;
  switch (node.opType) {
    case 'Conv':
      return index === 1 && dims.length >= 3 ? 0 : undefined;
    case 'MatMul':
      return index === 1 ? (dims.length >= 2 ? dims.length - 1 : -1) : undefined;
    case 'Gemm':
      return index === 1 && dims.length === 2 ? ((node.attributes.get('transB')?.i ?? 0) === 1 ? 0 : 1) : undefined;
    case 'LSTM':
    case 'GRU':
    case 'RNN':
      // W [directions, gates*hidden, input] and R [directions, gates*hidden, hidden].
      return (index === 1 || index === 2) && dims.length === 3 ? 1 : undefined;
    default:
      return undefined;
  }
}

function isBias(node: NodeView, index: number): boolean {
  if (node.domain !== '') return false;
  if (node.opType === 'Conv' || node.opType === 'Gemm') return index === 2;
  if (node.opType === 'LSTM' || node.opType === 'GRU' || node.opType === 'RNN') return index === 3;
  return false;
}

/** A tensor with a value known before run time: an initializer or a Constant node's `value`. */
interface Source {
  readonly tensor: TensorView;
  /** The Constant node that holds it; undefined for an initializer. */
  readonly node?: NodeView;
  /** Made by the rewriter (a folded bias): written as a new initializer. */
  readonly added?: true;
}

/** A node to write: described, or an encoded NodeProto payload. */
type NodeOut = NodeSpec | Uint8Array;

interface Replacement {
  /** Constants that replace the source (initializers, or Constant nodes when the source was one). */
  readonly tensors: TensorSpec[];
  /** Nodes that compute the source's name from them. */
  readonly nodes: NodeSpec[];
}

interface Use {
  readonly node: NodeView;
  readonly index: number;
}

function validate(options: CompressOptions): void {
  const method: unknown = options.method;
  if (typeof method !== 'string' || !(COMPRESS_METHODS as readonly string[]).includes(method)) {
    throw new CompressError('bad-options', `unknown compression method ${JSON.stringify(method)}: use one of ${COMPRESS_METHODS.join(', ')}`);
  }
  const s = options.sparsity;
  if (s === undefined) {
    if (method === 'prune') throw new CompressError('bad-options', 'prune needs a sparsity: the fraction of weights to set to zero, between 0 and 1 (e.g. 0.5)');
    return;
  }
  if (method !== 'prune' && method !== 'int8-weights') {
    throw new CompressError('bad-options', `sparsity applies to prune and int8-weights, not to ${method}`);
  }
  if (typeof s !== 'number' || !Number.isFinite(s) || s <= 0 || s >= 1) {
    throw new CompressError('bad-options', `sparsity must be a number between 0 and 1 (both excluded), got ${String(s)}`);
  }
}

class Rewriter {
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
          `${s.node === undefined ? 'initializer' : 'constant'} "${name}" keeps its data in an external file: compress takes self-contained models (save it with onnx.save_model(..., save_as_external_data=False))`,
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
    if (this.graphInputs.has(name)) return `"${name}" is also a graph input (callers may override it), so it stays float32`;
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

  /** Weights read only as weights by the same layout: name -> [source, axis]. */
  weights(): Map<string, { source: Source; axis: number }> {
    const out = new Map<string, { source: Source; axis: number }>();
    for (const [name, uses] of this.uses) {
      const source = this.floatSource(name);
      if (source === undefined) continue;
      const axes = uses.map((u) => weightAxis(u.node, u.index, source.tensor.dims));
      const weightUses = uses.filter((_, k) => axes[k] !== undefined);
      if (weightUses.length === 0) continue;
      const other = uses.find((_, k) => axes[k] === undefined);
      let reason: string | undefined;
      if (other !== undefined) reason = `weight "${name}" is also input ${other.index} of ${other.node.opType}, so it stays float32`;
      else if (new Set(axes).size > 1) reason = `weight "${name}" is read with different layouts, so it stays float32`;
      else reason = this.blocked(name);
      if (reason === undefined && source.tensor.elementCount < MIN_WEIGHT_ELEMENTS) {
        reason = `weight "${name}" has ${source.tensor.elementCount} elements, under ${MIN_WEIGHT_ELEMENTS}: kept in float32`;
      }
      if (reason !== undefined) this.leaveNodes(weightUses, reason);
      else out.set(name, { source, axis: axes[0]! });
    }
    return out;
  }

  noteBiases(): void {
    for (const index of this.rewrittenNodes) {
      const node = this.graph.nodes[index]!;
      node.inputs.forEach((name, k) => {
        if (isBias(node, k) && this.floatSource(name) !== undefined && !this.replacements.has(name)) {
          this.extraLeft.push({ op: node.opType, reason: 'bias stays float32 (added after the product, small)' });
        }
      });
    }
  }

  // --- int8-weights and prune -------------------------------------------------------------------

  int8Weights(sparsity: number | undefined): void {
    const opset = this.model.opset;
    if (opset < 7) {
      this.parameters['dequantize'] = 'none';
      this.leaveAll(`opset ${opset}: restoring int8 weights needs Cast and broadcasting Mul (opset 7 or later)`);
      return;
    }
    // Per-axis DequantizeLinear is opset 13; before it the same per-channel arithmetic is written
    // as Cast + Mul, since raising the opset could change other operators (Clip, Softmax, Slice...).
    const qdq = opset >= 13;
    Object.assign(this.parameters, {
      weights: 'int8 symmetric, zero point 0',
      axis: 'per-channel',
      dequantize: qdq ? 'DequantizeLinear' : `Cast+Mul (opset ${opset} < 13)`,
      minElements: String(MIN_WEIGHT_ELEMENTS),
    });
    if (sparsity !== undefined) this.parameters['sparsity'] = String(sparsity);
    for (const [name, { source, axis }] of this.weights()) {
      const dims = source.tensor.dims;
      let w = this.data(name, source);
      if (sparsity !== undefined) w = pruneByMagnitude(w, sparsity);
      const q = quantizeInt8(w, dims, axis);
      const channels = q.scales.length;
      const qName = this.fresh(`${name}_quantized`);
      const sName = this.fresh(`${name}_scale`);
      const quantized: TensorSpec = { name: qName, dataType: OnnxDataType.INT8, dims, raw: bytesOf(q.values) };
      if (qdq) {
        const zName = this.fresh(`${name}_zero_point`);
        const scaleDims = axis < 0 ? [] : [channels];
        this.replace(name, {
          tensors: [
            quantized,
            { name: sName, dataType: OnnxDataType.FLOAT, dims: scaleDims, raw: bytesOf(q.scales) },
            { name: zName, dataType: OnnxDataType.INT8, dims: scaleDims, raw: new Uint8Array(channels) },
          ],
          nodes: [
            {
              opType: 'DequantizeLinear',
              name: this.fresh(`${name}_DequantizeLinear`),
              inputs: [qName, sName, zName],
              outputs: [name],
              ...(axis < 0 ? {} : { attributes: { axis: { i: axis } } }),
            },
          ],
        });
      } else {
        // Scale shaped [C, 1, ..., 1] so it broadcasts along `axis` from the right.
        const scaleDims = axis < 0 ? [] : [channels, ...dims.slice(axis + 1).map(() => 1)];
        const castName = this.fresh(`${name}_quantized_float`);
        this.replace(name, {
          tensors: [quantized, { name: sName, dataType: OnnxDataType.FLOAT, dims: scaleDims, raw: bytesOf(q.scales) }],
          nodes: [
            { opType: 'Cast', name: this.fresh(`${name}_Cast`), inputs: [qName], outputs: [castName], attributes: { to: { i: OnnxDataType.FLOAT } } },
            { opType: 'Mul', name: this.fresh(`${name}_Mul`), inputs: [castName, sName], outputs: [name] },
          ],
        });
      }
    }
    this.noteBiases();
  }

  prune(sparsity: number): void {
    Object.assign(this.parameters, { sparsity: String(sparsity), scope: 'per-tensor magnitude', minElements: String(MIN_WEIGHT_ELEMENTS) });
    for (const [name, { source }] of this.weights()) {
      const w = pruneByMagnitude(this.data(name, source), sparsity);
      this.replace(name, { tensors: [{ name, dataType: OnnxDataType.FLOAT, dims: source.tensor.dims, raw: bytesOf(w) }], nodes: [] });
    }
    this.noteBiases();
  }

  // --- fp16 -------------------------------------------------------------------------------------

  fp16(): void {
    const opset = this.model.opset;
    Object.assign(this.parameters, { storage: 'float16', compute: 'float32 (Cast after each weight)', minElements: String(MIN_FP16_ELEMENTS) });
    if (opset < 6) {
      this.leaveAll(`opset ${opset}: Cast with a numeric 'to' needs opset 6 or later`);
      return;
    }
    for (const [name, uses] of this.uses) {
      const source = this.floatSource(name);
      if (source === undefined || uses.length === 0 || this.removed.has(name)) continue;
      let reason = this.blocked(name);
      const w = reason === undefined && source.tensor.elementCount >= MIN_FP16_ELEMENTS ? this.data(name, source) : undefined;
      if (reason === undefined && w === undefined) {
        reason = `constant "${name}" has ${source.tensor.elementCount} elements, under ${MIN_FP16_ELEMENTS}: kept in float32`;
      }
      if (reason === undefined && w !== undefined) {
        const big = w.find((x) => Math.abs(x) > FLOAT16_MAX);
        if (big !== undefined) reason = `constant "${name}" holds ${big}, beyond float16's range (±${FLOAT16_MAX}): kept in float32`;
      }
      if (reason !== undefined || w === undefined) {
        this.leaveNodes(uses, reason ?? '');
        continue;
      }
      const halfName = this.fresh(`${name}_fp16`);
      this.replace(name, {
        tensors: [{ name: halfName, dataType: OnnxDataType.FLOAT16, dims: source.tensor.dims, raw: bytesOf(toFloat16(w)) }],
        nodes: [{ opType: 'Cast', name: this.fresh(`${name}_Cast`), inputs: [halfName], outputs: [name], attributes: { to: { i: OnnxDataType.FLOAT } } }],
      });
    }
  }

  // --- int8-dynamic -----------------------------------------------------------------------------

  int8Dynamic(): void {
    const opset = this.model.opset;
    // Weights use 7 bits, as onnxruntime's dynamic quantizer does for MatMulInteger: u8 x s8
    // products summed in pairs then fit int16, so CPUs without VNNI do not saturate.
    const qmax = 64;
    Object.assign(this.parameters, {
      activations: 'uint8 per tensor, at run time (DynamicQuantizeLinear)',
      weights: `int8 symmetric per-channel, range ±${qmax} (LSTM ±127)`,
      minElements: String(MIN_WEIGHT_ELEMENTS),
    });
    if (opset < 11) {
      this.leaveAll(`opset ${opset}: DynamicQuantizeLinear needs opset 11 or later, and raising the opset could change other operators`);
      return;
    }
    const quantizedWeights = new Map<string, { q: string; scale: string; zero: string }>();
    const quantizedActivations = new Map<string, { q: string; scale: string; zero: string }>();
    const rewrittenUses = new Map<string, number>();
    for (const node of this.graph.nodes) {
      if (node.domain === '' && node.opType === 'LSTM') {
        this.dynamicLstm(node, rewrittenUses);
        continue;
      }
      if (node.domain !== '' || (node.opType !== 'MatMul' && node.opType !== 'Gemm')) continue;
      const [a, b, c] = node.inputs;
      const y = node.outputs[0];
      const source = b === undefined ? undefined : this.floatSource(b);
      if (a === undefined || b === undefined || y === undefined || source === undefined) {
        this.nodeReasons.set(node.index, 'its weight is not a float32 constant');
        continue;
      }
      const dims = source.tensor.dims;
      const gemm = node.opType === 'Gemm';
      const transB = gemm && (node.attributes.get('transB')?.i ?? 0) === 1;
      let reason: string | undefined;
      if (dims.length !== 2) reason = `weight "${b}" has rank ${dims.length}; MatMulInteger takes a 2-D weight`;
      else if (gemm && (node.attributes.get('transA')?.i ?? 0) !== 0) reason = 'Gemm with transA=1 stays float32';
      else if (gemm && (node.attributes.get('alpha')?.f ?? 1) !== 1) reason = 'Gemm with alpha != 1 stays float32';
      else if (gemm && c !== undefined && c !== '' && (node.attributes.get('beta')?.f ?? 1) !== 1) reason = 'Gemm with beta != 1 stays float32';
      else if (source.tensor.elementCount < MIN_WEIGHT_ELEMENTS) reason = `weight "${b}" has ${source.tensor.elementCount} elements, under ${MIN_WEIGHT_ELEMENTS}: kept in float32`;
      else reason = this.blocked(b);
      if (reason !== undefined) {
        this.nodeReasons.set(node.index, reason);
        continue;
      }
      const key = `${b}\u0000${transB ? 'T' : ''}`;
      let w = quantizedWeights.get(key);
      if (w === undefined) {
        const [rows, cols] = [dims[0]!, dims[1]!];
        const kn = transB ? transpose2d(floatData(source.tensor), rows, cols) : floatData(source.tensor);
        const n = transB ? rows : cols;
        const q = quantizeInt8(kn, [transB ? cols : rows, n], 1, qmax);
        w = { q: this.fresh(`${b}_quantized`), scale: this.fresh(`${b}_scale`), zero: this.fresh(`${b}_zero_point`) };
        this.extraInitializers.push(
          { name: w.q, dataType: OnnxDataType.INT8, dims: [transB ? cols : rows, n], raw: bytesOf(q.values) },
          { name: w.scale, dataType: OnnxDataType.FLOAT, dims: [n], raw: bytesOf(q.scales) },
          { name: w.zero, dataType: OnnxDataType.INT8, dims: [n], raw: new Uint8Array(n) },
        );
        quantizedWeights.set(key, w);
      }
      const nodes: NodeSpec[] = [];
      let x = quantizedActivations.get(a);
      if (x === undefined) {
        x = { q: this.fresh(`${a}_quantized`), scale: this.fresh(`${a}_scale`), zero: this.fresh(`${a}_zero_point`) };
        nodes.push({ opType: 'DynamicQuantizeLinear', name: this.fresh(`${a}_DynamicQuantizeLinear`), inputs: [a], outputs: [x.q, x.scale, x.zero] });
        quantizedActivations.set(a, x);
      }
      const base = node.name === '' ? y : node.name;
      const integer = this.fresh(`${y}_MatMulInteger`);
      const asFloat = this.fresh(`${y}_MatMulInteger_float`);
      const scale = this.fresh(`${y}_scale`);
      const product = c !== undefined && c !== '' ? this.fresh(`${y}_product`) : y;
      const to: Record<string, AttributeValue> = { to: { i: OnnxDataType.FLOAT } };
      nodes.push(
        { opType: 'MatMulInteger', name: this.fresh(`${base}_MatMulInteger`), inputs: [x.q, w.q, x.zero, w.zero], outputs: [integer] },
        { opType: 'Cast', name: this.fresh(`${base}_Cast`), inputs: [integer], outputs: [asFloat], attributes: to },
        { opType: 'Mul', name: this.fresh(`${base}_scales_Mul`), inputs: [x.scale, w.scale], outputs: [scale] },
        { opType: 'Mul', name: this.fresh(`${base}_Mul`), inputs: [asFloat, scale], outputs: [product] },
      );
      if (product !== y) nodes.push({ opType: 'Add', name: this.fresh(`${base}_bias_Add`), inputs: [product, c!], outputs: [y] });
      this.nodeReplacements.set(node.index, nodes);
      this.rewrittenNodes.add(node.index);
      rewrittenUses.set(b, (rewrittenUses.get(b) ?? 0) + 1);
    }
    for (const [name, count] of rewrittenUses) {
      if ((this.uses.get(name)?.length ?? 0) === count) this.removed.add(name);
    }
    this.noteBiases();
  }

  /**
   * LSTM -> com.microsoft DynamicQuantizeLSTM, as onnxruntime's quantize_dynamic emits it: W and R
   * int8 per gate row (full range, as its quantizer uses for LSTM), stored transposed
   * ([directions, input, 4*hidden] and [directions, hidden, 4*hidden]), scales and zero points
   * [directions, 4*hidden]; every other input and attribute as they were. onnxruntime only.
   */
  dynamicLstm(node: NodeView, rewrittenUses: Map<string, number>): void {
    const [wName, rName] = [node.inputs[1], node.inputs[2]];
    const w = wName === undefined ? undefined : this.floatSource(wName);
    const r = rName === undefined ? undefined : this.floatSource(rName);
    let reason: string | undefined;
    if (w === undefined || r === undefined || wName === undefined || rName === undefined) reason = 'its W or R is not a float32 constant';
    else if (w.tensor.dims.length !== 3 || r.tensor.dims.length !== 3) reason = 'W and R must be 3-D';
    else if (w.tensor.elementCount + r.tensor.elementCount < MIN_WEIGHT_ELEMENTS) {
      reason = `W and R have ${w.tensor.elementCount + r.tensor.elementCount} elements, under ${MIN_WEIGHT_ELEMENTS}: kept in float32`;
    } else reason = this.blocked(wName) ?? this.blocked(rName);
    if (reason !== undefined) {
      this.nodeReasons.set(node.index, reason);
      return;
    }
    const quantized = [w!, r!].map((source, k) => {
      const name = k === 0 ? wName! : rName!;
      const [dirs, rows, cols] = source.tensor.dims as [number, number, number];
      const q = quantizeInt8(floatData(source.tensor), [dirs * rows, cols], 0);
      // Each direction's [rows, cols] block becomes [cols, rows].
      const t = new Int8Array(q.values.length);
      for (let d = 0; d < dirs; d++) {
        for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[d * rows * cols + j * rows + i] = q.values[d * rows * cols + i * cols + j]!;
      }
      const names = { q: this.fresh(`${name}_quantized`), scale: this.fresh(`${name}_scale`), zero: this.fresh(`${name}_zero_point`) };
      this.extraInitializers.push(
        { name: names.q, dataType: OnnxDataType.INT8, dims: [dirs, cols, rows], raw: bytesOf(t) },
        { name: names.scale, dataType: OnnxDataType.FLOAT, dims: [dirs, rows], raw: bytesOf(q.scales) },
        { name: names.zero, dataType: OnnxDataType.INT8, dims: [dirs, rows], raw: new Uint8Array(dirs * rows) },
      );
      rewrittenUses.set(name, (rewrittenUses.get(name) ?? 0) + 1);
      return names;
    });
    const [qw, qr] = quantized as [{ q: string; scale: string; zero: string }, { q: string; scale: string; zero: string }];
    const rest = [3, 4, 5, 6, 7].map((k) => node.inputs[k] ?? '');
    const inputs = [node.inputs[0] ?? '', qw.q, qr.q, ...rest, qw.scale, qw.zero, qr.scale, qr.zero];
    const name = node.name === '' ? '' : this.fresh(`${node.name}_quant`);
    this.nodeReplacements.set(node.index, [reencodeNode(node, inputs, node.outputs, { opType: 'DynamicQuantizeLSTM', domain: MS_DOMAIN, name })]);
    this.rewrittenNodes.add(node.index);
    this.extraOpsets.set(MS_DOMAIN, 1);
  }

  // --- BatchNormalization folded into the Conv before it -----------------------------------------

  /**
   * Conv -> BatchNormalization (inference form, constant parameters, the Conv's output read by the
   * BatchNormalization alone) becomes one Conv with W' = W * s and b' = (b - mean) * s + beta per
   * output channel, s = scale / sqrt(var + epsilon): the same function, as onnxruntime computes it
   * after its own folding at load, and as its quantizer prepares models. Skipped in models with
   * subgraphs, which could read the Conv's output by name.
   */
  foldBatchNorms(): void {
    // Before IR 4 every initializer must also be a graph input, so no bias initializer can be added.
    if (this.model.irVersion < 4 || this.graph.nodes.some((n) => [...n.attributes.values()].some((a) => a.hasGraph))) return;
    const producer = new Map<string, NodeView>();
    for (const n of this.graph.nodes) for (const o of n.outputs) producer.set(o, n);
    let folded = 0;
    for (const bn of this.graph.nodes) {
      if (bn.domain !== '' || bn.opType !== 'BatchNormalization') continue;
      if (bn.outputs.slice(1).some((o) => o !== '') || (bn.attributes.get('training_mode')?.i ?? 0) !== 0 || (bn.attributes.get('spatial')?.i ?? 1) !== 1) continue;
      const [x, scaleName, betaName, meanName, varName] = bn.inputs;
      const y = bn.outputs[0];
      const conv = x === undefined ? undefined : producer.get(x);
      if (conv === undefined || x === undefined || y === undefined || conv.domain !== '' || conv.opType !== 'Conv' || conv.outputs.length !== 1) continue;
      if ((this.uses.get(x)?.length ?? 0) !== 1 || this.graphOutputs.has(x) || this.nodeReplacements.has(conv.index)) continue;
      const params = [scaleName, betaName, meanName, varName].map((n) => (n === undefined ? undefined : this.floatSource(n)));
      const [wName, bName] = [conv.inputs[1], conv.inputs[2]];
      const w = wName === undefined ? undefined : this.floatSource(wName);
      const b = bName === undefined || bName === '' ? undefined : this.floatSource(bName);
      if (params.some((p) => p === undefined) || w === undefined || wName === undefined) continue;
      if (bName !== undefined && bName !== '' && b === undefined) continue;
      // The weight and bias change value: no other node may read them.
      if ((this.uses.get(wName)?.length ?? 0) !== 1 || this.blocked(wName) !== undefined) continue;
      if (b !== undefined && ((this.uses.get(bName!)?.length ?? 0) !== 1 || this.blocked(bName!) !== undefined)) continue;
      const channels = w.tensor.dims[0] ?? 0;
      const [gamma, beta, mean, variance] = params.map((p, k) => this.data(bn.inputs[k + 1]!, p!));
      if ([gamma, beta, mean, variance].some((a) => a!.length !== channels)) continue;
      const epsilon = bn.attributes.get('epsilon')?.f ?? 1e-5;
      const weights = Float32Array.from(this.data(wName, w));
      const bias = b === undefined ? new Float32Array(channels) : Float32Array.from(this.data(bName!, b));
      const inner = weights.length / channels;
      for (let c = 0; c < channels; c++) {
        const s = gamma![c]! / Math.sqrt(variance![c]! + epsilon);
        for (let i = c * inner; i < (c + 1) * inner; i++) weights[i] = weights[i]! * s;
        bias[c] = (bias[c]! - mean![c]!) * s + beta![c]!;
      }
      this.overrides.set(wName, weights);
      let biasName = bName;
      if (b !== undefined) this.overrides.set(bName!, bias);
      else {
        biasName = this.fresh(`${conv.name === '' ? wName : conv.name}_bias`);
        const tensor: TensorView = { name: biasName, dataType: OnnxDataType.FLOAT, dims: [channels], elementCount: channels, external: false, fields: [] };
        this.sources.set(biasName, { tensor, added: true });
        this.overrides.set(biasName, bias);
        this.uses.set(biasName, [{ node: conv, index: 2 }]);
      }
      // The BatchNormalization's parameters lose this reader; those read by nothing else go.
      for (const name of bn.inputs.slice(1)) {
        const rest = (this.uses.get(name) ?? []).filter((u) => u.node !== bn);
        this.uses.set(name, rest);
        if (rest.length === 0 && !this.graphOutputs.has(name) && !this.graphInputs.has(name)) this.removed.add(name);
      }
      this.uses.delete(x);
      this.removedValues.add(x);
      const inputs = [conv.inputs[0] ?? '', wName, biasName!];
      this.nodeReplacements.set(conv.index, [reencodeNode(conv, inputs, [y])]);
      this.nodeReplacements.set(bn.index, []);
      this.foldedNodes.add(bn.index);
      this.rewrittenNodes.add(conv.index);
      folded += 1;
    }
    if (folded > 0) this.parameters['batchNorm'] = `${folded} folded into the Conv before each`;
  }

  /** Sources whose values changed but that no method replaced are written back in float32. */
  finish(): void {
    for (const [name, values] of this.overrides) {
      if (this.replacements.has(name)) continue;
      const source = this.sources.get(name)!;
      this.replacements.set(name, { tensors: [{ name, dataType: OnnxDataType.FLOAT, dims: source.tensor.dims, raw: bytesOf(values) }], nodes: [] });
    }
    for (const [name, source] of this.sources) {
      const r = this.replacements.get(name);
      if (source.added !== true || r === undefined) continue;
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
          ? `int8-dynamic rewrites MatMul, Gemm and LSTM only; ${node.opType} stays float32 (int8-weights stores its weights in int8)`
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
          // From IR 4 on, new constants become initializers (smaller than Constant nodes); before
          // it an initializer would also have to be a graph input.
          for (const t of replacement.tensors) {
            if (this.model.irVersion >= 4) {
              this.extraInitializers.push(t);
              continue;
            }
            const keepName = t.name === output && node.name !== '' ? { name: node.name } : { name: this.fresh(`${t.name}_Constant`) };
            graph.message(1, encodeNode({ opType: 'Constant', ...keepName, inputs: [], outputs: [t.name], attributes: { value: { t } } }));
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
      if (this.rewrittenNodes.has(node.index) || this.foldedNodes.has(node.index)) rewritten.set(op, (rewritten.get(op) ?? 0) + 1);
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

function writeNode(graph: ProtoWriter, n: NodeOut): void {
  if (n instanceof Uint8Array) graph.message(1, new ProtoWriter().raw(n));
  else graph.message(1, encodeNode(n));
}

/**
 * A node's NodeProto with new inputs and outputs (fields 1 and 2) and optionally a new name (3),
 * op type (4) and domain (7); every other field (attributes, doc string) as it was.
 */
function reencodeNode(
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

/**
 * Rewrites a model with one compression method. Throws CompressError for bad options and models
 * it cannot take (not ONNX, external data); weights it cannot rewrite are left float32 and listed
 * in `left` with the reason.
 */
export function compressModel(model: Uint8Array, options: CompressOptions): CompressResult {
  validate(options);
  const view = readModel(model);
  const r = new Rewriter(view, view.graph);
  switch (options.method) {
    case 'int8-weights':
      r.foldBatchNorms();
      r.int8Weights(options.sparsity);
      break;
    case 'prune':
      r.prune(options.sparsity!);
      break;
    case 'fp16':
      r.foldBatchNorms();
      r.fp16();
      break;
    case 'int8-dynamic':
      r.int8Dynamic();
      break;
  }
  return r.result(model, options.method);
}
