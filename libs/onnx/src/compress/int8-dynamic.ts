import { OnnxDataType } from '../data-types.js';
import type { AttributeValue, NodeSpec } from '../model-spec.js';
import { floatData, type NodeView } from './onnx-graph.js';
import { reencodeNode, type Rewriter } from './rewriter.js';
import { bytesOf, type Int8Weights, quantizeInt8, transpose2d } from './weight-math.js';
import { MIN_WEIGHT_ELEMENTS, noteBiases } from './weight-roles.js';

// int8-dynamic: the graphs onnxruntime's quantize_dynamic emits. MatMul and Gemm with a constant
// 2-D weight: DynamicQuantizeLinear on the activation, MatMulInteger with the int8 weight, Cast,
// Mul by a_scale * b_scale (+ Add of a Gemm's bias); LSTM: com.microsoft DynamicQuantizeLSTM.

const MS_DOMAIN = 'com.microsoft';

/** The names of a quantized tensor, its scale and its zero point. */
interface Quantized {
  readonly q: string;
  readonly scale: string;
  readonly zero: string;
}

function freshNames(r: Rewriter, base: string): Quantized {
  return { q: r.fresh(`${base}_quantized`), scale: r.fresh(`${base}_scale`), zero: r.fresh(`${base}_zero_point`) };
}

/** Initializers for weight `name` as int8 `dims`, with its scales and zero points (0) shaped `scaleDims`. */
function addQuantized(r: Rewriter, name: string, q: Int8Weights, dims: number[], scaleDims: number[]): Quantized {
  const names = freshNames(r, name);
  r.extraInitializers.push(
    { name: names.q, dataType: OnnxDataType.INT8, dims, raw: bytesOf(q.values) },
    { name: names.scale, dataType: OnnxDataType.FLOAT, dims: scaleDims, raw: bytesOf(q.scales) },
    { name: names.zero, dataType: OnnxDataType.INT8, dims: scaleDims, raw: new Uint8Array(q.scales.length) },
  );
  return names;
}

export function int8Dynamic(r: Rewriter): void {
  const opset = r.model.opset;
  // Weights use 7 bits, as onnxruntime's dynamic quantizer does for MatMulInteger: u8 x s8
  // products summed in pairs then fit int16, so CPUs without VNNI do not saturate.
  const qmax = 64;
  Object.assign(r.parameters, {
    activations: 'uint8 per tensor, at run time (DynamicQuantizeLinear)',
    weights: `int8 symmetric per-channel, range ±${qmax} (LSTM ±127)`,
    minElements: String(MIN_WEIGHT_ELEMENTS),
  });
  if (opset < 11) {
    r.leaveAll(
      `opset ${opset}: DynamicQuantizeLinear needs opset 11 or later, ` +
        'and raising the opset could change other operators',
    );
    return;
  }
  const quantizedWeights = new Map<string, Quantized>();
  const quantizedActivations = new Map<string, Quantized>();
  const rewrittenUses = new Map<string, number>();
  for (const node of r.graph.nodes) {
    if (node.domain === '' && node.opType === 'LSTM') {
      dynamicLstm(r, node, rewrittenUses);
      continue;
    }
    if (node.domain !== '' || (node.opType !== 'MatMul' && node.opType !== 'Gemm')) continue;
    const [a, b, c] = node.inputs;
    const y = node.outputs[0];
    const source = b === undefined ? undefined : r.floatSource(b);
    if (a === undefined || b === undefined || y === undefined || source === undefined) {
      r.nodeReasons.set(node.index, 'its weight is not a float32 constant');
      continue;
    }
    const dims = source.tensor.dims;
    const gemm = node.opType === 'Gemm';
    const transB = gemm && (node.attributes.get('transB')?.i ?? 0) === 1;
    let reason: string | undefined;
    if (dims.length !== 2) reason = `weight "${b}" has rank ${dims.length}; MatMulInteger takes a 2-D weight`;
    else if (gemm && (node.attributes.get('transA')?.i ?? 0) !== 0) reason = 'Gemm with transA=1 stays float32';
    else if (gemm && (node.attributes.get('alpha')?.f ?? 1) !== 1) reason = 'Gemm with alpha != 1 stays float32';
    else if (gemm && c !== undefined && c !== '' && (node.attributes.get('beta')?.f ?? 1) !== 1)
      reason = 'Gemm with beta != 1 stays float32';
    else if (source.tensor.elementCount < MIN_WEIGHT_ELEMENTS)
      reason =
        `weight "${b}" has ${source.tensor.elementCount} elements, under ${MIN_WEIGHT_ELEMENTS}: ` + 'kept in float32';
    else reason = r.blocked(b);
    if (reason !== undefined) {
      r.nodeReasons.set(node.index, reason);
      continue;
    }
    const key = `${b}\u0000${transB ? 'T' : ''}`;
    let w = quantizedWeights.get(key);
    if (w === undefined) {
      const [rows, cols] = [dims[0]!, dims[1]!];
      const kn = transB ? transpose2d(floatData(source.tensor), rows, cols) : floatData(source.tensor);
      const knDims = transB ? [cols, rows] : [rows, cols];
      w = addQuantized(r, b, quantizeInt8(kn, knDims, 1, qmax), knDims, [knDims[1]!]);
      quantizedWeights.set(key, w);
    }
    const nodes: NodeSpec[] = [];
    let x = quantizedActivations.get(a);
    if (x === undefined) {
      x = freshNames(r, a);
      nodes.push({
        opType: 'DynamicQuantizeLinear',
        name: r.fresh(`${a}_DynamicQuantizeLinear`),
        inputs: [a],
        outputs: [x.q, x.scale, x.zero],
      });
      quantizedActivations.set(a, x);
    }
    const base = node.name === '' ? y : node.name;
    const integer = r.fresh(`${y}_MatMulInteger`);
    const asFloat = r.fresh(`${y}_MatMulInteger_float`);
    const scale = r.fresh(`${y}_scale`);
    const product = c !== undefined && c !== '' ? r.fresh(`${y}_product`) : y;
    const to: Record<string, AttributeValue> = { to: { i: OnnxDataType.FLOAT } };
    nodes.push(
      {
        opType: 'MatMulInteger',
        name: r.fresh(`${base}_MatMulInteger`),
        inputs: [x.q, w.q, x.zero, w.zero],
        outputs: [integer],
      },
      { opType: 'Cast', name: r.fresh(`${base}_Cast`), inputs: [integer], outputs: [asFloat], attributes: to },
      { opType: 'Mul', name: r.fresh(`${base}_scales_Mul`), inputs: [x.scale, w.scale], outputs: [scale] },
      { opType: 'Mul', name: r.fresh(`${base}_Mul`), inputs: [asFloat, scale], outputs: [product] },
    );
    if (product !== y)
      nodes.push({ opType: 'Add', name: r.fresh(`${base}_bias_Add`), inputs: [product, c!], outputs: [y] });
    r.nodeReplacements.set(node.index, nodes);
    r.rewrittenNodes.add(node.index);
    rewrittenUses.set(b, (rewrittenUses.get(b) ?? 0) + 1);
  }
  for (const [name, count] of rewrittenUses) {
    if ((r.uses.get(name)?.length ?? 0) === count) r.removed.add(name);
  }
  noteBiases(r);
}

/**
 * LSTM -> com.microsoft DynamicQuantizeLSTM, as onnxruntime's quantize_dynamic emits it: W and R
 * int8 per gate row (full range, as its quantizer uses for LSTM), stored transposed
 * ([directions, input, 4*hidden] and [directions, hidden, 4*hidden]), scales and zero points
 * [directions, 4*hidden]; every other input and attribute as they were. onnxruntime only.
 */
function dynamicLstm(r: Rewriter, node: NodeView, rewrittenUses: Map<string, number>): void {
  const [wName, rName] = [node.inputs[1], node.inputs[2]];
  const w = wName === undefined ? undefined : r.floatSource(wName);
  const recurrent = rName === undefined ? undefined : r.floatSource(rName);
  let reason: string | undefined;
  if (w === undefined || recurrent === undefined || wName === undefined || rName === undefined)
    reason = 'its W or R is not a float32 constant';
  else if (w.tensor.dims.length !== 3 || recurrent.tensor.dims.length !== 3) reason = 'W and R must be 3-D';
  else if (w.tensor.elementCount + recurrent.tensor.elementCount < MIN_WEIGHT_ELEMENTS) {
    reason =
      `W and R have ${w.tensor.elementCount + recurrent.tensor.elementCount} elements, ` +
      `under ${MIN_WEIGHT_ELEMENTS}: kept in float32`;
  } else reason = r.blocked(wName) ?? r.blocked(rName);
  if (reason !== undefined) {
    r.nodeReasons.set(node.index, reason);
    return;
  }
  const quantized = [w!, recurrent!].map((source, k) => {
    const name = k === 0 ? wName! : rName!;
    const [dirs, rows, cols] = source.tensor.dims as [number, number, number];
    const q = quantizeInt8(floatData(source.tensor), [dirs * rows, cols], 0);
    // Each direction's [rows, cols] block becomes [cols, rows].
    const t = new Int8Array(q.values.length);
    for (let d = 0; d < dirs; d++) {
      for (let i = 0; i < rows; i++)
        for (let j = 0; j < cols; j++) t[d * rows * cols + j * rows + i] = q.values[d * rows * cols + i * cols + j]!;
    }
    rewrittenUses.set(name, (rewrittenUses.get(name) ?? 0) + 1);
    return addQuantized(r, name, { values: t, scales: q.scales }, [dirs, cols, rows], [dirs, rows]);
  });
  const [qw, qr] = quantized as [Quantized, Quantized];
  const rest = [3, 4, 5, 6, 7].map((k) => node.inputs[k] ?? '');
  const inputs = [node.inputs[0] ?? '', qw.q, qr.q, ...rest, qw.scale, qw.zero, qr.scale, qr.zero];
  const name = node.name === '' ? '' : r.fresh(`${node.name}_quant`);
  r.nodeReplacements.set(node.index, [
    reencodeNode(node, inputs, node.outputs, { opType: 'DynamicQuantizeLSTM', domain: MS_DOMAIN, name }),
  ]);
  r.rewrittenNodes.add(node.index);
  r.extraOpsets.set(MS_DOMAIN, 1);
}
