import { OnnxDataType } from '../data-types.js';
import type { TensorSpec } from '../model-spec.js';
import type { Rewriter } from './rewriter.js';
import { bytesOf, pruneByMagnitude, quantizeInt8 } from './weight-math.js';
import { MIN_WEIGHT_ELEMENTS, noteBiases, weights } from './weight-roles.js';

// int8-weights: weight-only int8 (onnxruntime's QDQ form), and prune: weights zeroed by magnitude.

/**
 * Each weight becomes int8, symmetric, one scale per output channel, zero point 0 (pruned first
 * when `sparsity` is given), restored under its name by a per-axis DequantizeLinear.
 */
export function int8Weights(r: Rewriter, sparsity: number | undefined): void {
  const opset = r.model.opset;
  if (opset < 7) {
    r.parameters['dequantize'] = 'none';
    r.leaveAll(`opset ${opset}: restoring int8 weights needs Cast and broadcasting Mul (opset 7 or later)`);
    return;
  }
  // Per-axis DequantizeLinear is opset 13; before it the same per-channel arithmetic is written
  // as Cast + Mul, since raising the opset could change other operators (Clip, Softmax, Slice...).
  const qdq = opset >= 13;
  Object.assign(r.parameters, {
    weights: 'int8 symmetric, zero point 0',
    axis: 'per-channel',
    dequantize: qdq ? 'DequantizeLinear' : `Cast+Mul (opset ${opset} < 13)`,
    minElements: String(MIN_WEIGHT_ELEMENTS),
  });
  if (sparsity !== undefined) r.parameters['sparsity'] = String(sparsity);
  for (const [name, { source, axis }] of weights(r)) {
    // Where new constants must be Constant nodes (IR < 4), Constant takes int8 only from opset 9.
    if (source.node !== undefined && r.model.irVersion < 4 && opset < 9) {
      r.leaveNodes(
        r.uses.get(name) ?? [],
        `opset ${opset}, IR ${r.model.irVersion}: an int8 "${name}" ` +
          'needs a Constant of int8 (opset 9) or an initializer (IR 4)',
      );
      continue;
    }
    const dims = source.tensor.dims;
    let w = r.data(name, source);
    if (sparsity !== undefined) w = pruneByMagnitude(w, sparsity);
    const q = quantizeInt8(w, dims, axis);
    const channels = q.scales.length;
    const qName = r.fresh(`${name}_quantized`);
    const sName = r.fresh(`${name}_scale`);
    const quantized: TensorSpec = { name: qName, dataType: OnnxDataType.INT8, dims, raw: bytesOf(q.values) };
    if (qdq) {
      const zName = r.fresh(`${name}_zero_point`);
      const scaleDims = axis < 0 ? [] : [channels];
      r.replace(name, {
        tensors: [
          quantized,
          { name: sName, dataType: OnnxDataType.FLOAT, dims: scaleDims, raw: bytesOf(q.scales) },
          { name: zName, dataType: OnnxDataType.INT8, dims: scaleDims, raw: new Uint8Array(channels) },
        ],
        nodes: [
          {
            opType: 'DequantizeLinear',
            name: r.fresh(`${name}_DequantizeLinear`),
            inputs: [qName, sName, zName],
            outputs: [name],
            ...(axis < 0 ? {} : { attributes: { axis: { i: axis } } }),
          },
        ],
      });
    } else {
      // Scale shaped [C, 1, ..., 1] so it broadcasts along `axis` from the right.
      const scaleDims = axis < 0 ? [] : [channels, ...dims.slice(axis + 1).map(() => 1)];
      const castName = r.fresh(`${name}_quantized_float`);
      r.replace(name, {
        tensors: [quantized, { name: sName, dataType: OnnxDataType.FLOAT, dims: scaleDims, raw: bytesOf(q.scales) }],
        nodes: [
          {
            opType: 'Cast',
            name: r.fresh(`${name}_Cast`),
            inputs: [qName],
            outputs: [castName],
            attributes: { to: { i: OnnxDataType.FLOAT } },
          },
          { opType: 'Mul', name: r.fresh(`${name}_Mul`), inputs: [castName, sName], outputs: [name] },
        ],
      });
    }
  }
  noteBiases(r);
}

/** The floor(sparsity * n) smallest-magnitude elements of each weight become 0; the model keeps its form. */
export function prune(r: Rewriter, sparsity: number): void {
  Object.assign(r.parameters, {
    sparsity: String(sparsity),
    scope: 'per-tensor magnitude',
    minElements: String(MIN_WEIGHT_ELEMENTS),
  });
  for (const [name, { source }] of weights(r)) {
    const w = pruneByMagnitude(r.data(name, source), sparsity);
    r.replace(name, {
      tensors: [{ name, dataType: OnnxDataType.FLOAT, dims: source.tensor.dims, raw: bytesOf(w) }],
      nodes: [],
    });
  }
  noteBiases(r);
}
