import { OnnxDataType } from './data-types.js';
import { encodeModel, type DimSpec, type ModelSpec } from './model-spec.js';

export interface ScalarOptions {
  /** Length dim of x and y; default 'N'. */
  readonly length?: DimSpec;
}

/**
 * A model with a rank-0 input and a rank-0 output: `x [N]`, `s []` -> `y = x * s [N]`,
 * `total = sum(y) []`. No weights.
 */
export function scalarModel(options: ScalarOptions = {}): ModelSpec {
  const n = options.length ?? 'N';
  return {
    producerName: 'quanta-onnx',
    docString: 'y = x * s with a scalar s; total = sum(y), a scalar',
    graph: {
      name: 'scalar',
      nodes: [
        { opType: 'Mul', name: 'scale', inputs: ['x', 's'], outputs: ['y'] },
        // Opset 13+: no axes input and noop_with_empty_axes 0 reduce over every axis.
        { opType: 'ReduceSum', name: 'sum', inputs: ['y'], outputs: ['total'], attributes: { keepdims: { i: 0 } } },
      ],
      initializers: [],
      inputs: [
        { name: 'x', dataType: OnnxDataType.FLOAT, shape: [n] },
        { name: 's', dataType: OnnxDataType.FLOAT, shape: [] },
      ],
      outputs: [
        { name: 'y', dataType: OnnxDataType.FLOAT, shape: [n] },
        { name: 'total', dataType: OnnxDataType.FLOAT, shape: [] },
      ],
    },
  };
}

export function buildScalarModel(options: ScalarOptions = {}): Uint8Array {
  return encodeModel(scalarModel(options));
}
