import { OnnxDataType } from './data-types.js';
import {
  encodeModel,
  floatTensor,
  type DimSpec,
  type ModelSpec,
  type NodeSpec,
  type TensorSpec,
} from './model-spec.js';
import { createRng, uniform } from './rng.js';

export interface MlpOptions {
  /** Default 4. */
  readonly inputSize?: number;
  /** Default [16]. */
  readonly hiddenSizes?: readonly number[];
  /** Default 3. */
  readonly outputSize?: number;
  /** Weight seed, default 1. */
  readonly seed?: number;
  /** Batch dim: a size or a symbolic name; default 'N'. */
  readonly batch?: DimSpec;
}

/**
 * An MLP `input [N,in]` -> (Gemm, Relu)* -> Gemm -> `output [N,out]`. Layer k has weights `fc{k}.weight`
 * of shape [out,in] (Gemm transB=1, as PyTorch stores them) and `fc{k}.bias` [out], uniform in
 * +-1/sqrt(in).
 */
export function mlpModel(options: MlpOptions = {}): ModelSpec {
  const inputSize = options.inputSize ?? 4;
  const sizes = [inputSize, ...(options.hiddenSizes ?? [16]), options.outputSize ?? 3];
  const batch = options.batch ?? 'N';
  const rng = createRng(options.seed ?? 1);
  const nodes: NodeSpec[] = [];
  const initializers: TensorSpec[] = [];
  let current = 'input';
  for (let k = 0; k + 1 < sizes.length; k++) {
    const fanIn = sizes[k]!;
    const fanOut = sizes[k + 1]!;
    const bound = 1 / Math.sqrt(fanIn);
    initializers.push(floatTensor(`fc${k}.weight`, [fanOut, fanIn], uniform(rng, fanOut * fanIn, bound)));
    initializers.push(floatTensor(`fc${k}.bias`, [fanOut], uniform(rng, fanOut, bound)));
    const last = k + 2 === sizes.length;
    const gemmOut = last ? 'output' : `fc${k}`;
    nodes.push({
      opType: 'Gemm',
      name: `fc${k}`,
      inputs: [current, `fc${k}.weight`, `fc${k}.bias`],
      outputs: [gemmOut],
      attributes: { transB: { i: 1 } },
    });
    current = gemmOut;
    if (!last) {
      nodes.push({ opType: 'Relu', name: `relu${k}`, inputs: [gemmOut], outputs: [`relu${k}`] });
      current = `relu${k}`;
    }
  }
  return {
    producerName: 'quanta-onnx',
    docString: `MLP ${sizes.join('-')}, seed ${options.seed ?? 1}`,
    graph: {
      name: 'mlp',
      nodes,
      initializers,
      inputs: [{ name: 'input', dataType: OnnxDataType.FLOAT, shape: [batch, inputSize] }],
      outputs: [{ name: 'output', dataType: OnnxDataType.FLOAT, shape: [batch, sizes[sizes.length - 1]!] }],
    },
  };
}

export function buildMlp(options: MlpOptions = {}): Uint8Array {
  return encodeModel(mlpModel(options));
}
