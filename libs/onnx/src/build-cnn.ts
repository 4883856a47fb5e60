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

export interface CnnOptions {
  /** Output channels of the two 3x3 convolutions; default [8, 16]. */
  readonly channels?: readonly [number, number];
  /** Default 10. */
  readonly classes?: number;
  /** Append Softmax over the classes (output then holds probabilities); default false (logits). */
  readonly softmax?: boolean;
  /** Weight seed, default 1. */
  readonly seed?: number;
  /** Batch dim: a size or a symbolic name; default 'N'. */
  readonly batch?: DimSpec;
}

/**
 * A small CIFAR-shaped CNN: `input [N,3,32,32]` -> Conv3x3(pad 1)/Relu/MaxPool2 -> Conv3x3(pad 1)/
 * Relu/MaxPool2 -> Flatten -> Gemm -> `output [N,classes]` (-> Softmax). Weights `conv1.weight`
 * [c1,3,3,3], `conv1.bias`, `conv2.weight` [c2,c1,3,3], `conv2.bias`, `fc.weight` [classes,c2*64],
 * `fc.bias`, uniform in +-1/sqrt(fan_in).
 */
export function cnnModel(options: CnnOptions = {}): ModelSpec {
  const [c1, c2] = options.channels ?? [8, 16];
  const classes = options.classes ?? 10;
  const batch = options.batch ?? 'N';
  const rng = createRng(options.seed ?? 1);
  const weights = (name: string, dims: number[], fanIn: number): TensorSpec =>
    floatTensor(
      name,
      dims,
      uniform(
        rng,
        dims.reduce((a, b) => a * b, 1),
        1 / Math.sqrt(fanIn),
      ),
    );
  const initializers = [
    weights('conv1.weight', [c1, 3, 3, 3], 27),
    weights('conv1.bias', [c1], 27),
    weights('conv2.weight', [c2, c1, 3, 3], c1 * 9),
    weights('conv2.bias', [c2], c1 * 9),
    weights('fc.weight', [classes, c2 * 64], c2 * 64),
    weights('fc.bias', [classes], c2 * 64),
  ];
  const conv = { kernel_shape: { ints: [3, 3] }, pads: { ints: [1, 1, 1, 1] }, strides: { ints: [1, 1] } };
  const pool = { kernel_shape: { ints: [2, 2] }, strides: { ints: [2, 2] } };
  const nodes: NodeSpec[] = [
    {
      opType: 'Conv',
      name: 'conv1',
      inputs: ['input', 'conv1.weight', 'conv1.bias'],
      outputs: ['conv1'],
      attributes: conv,
    },
    { opType: 'Relu', name: 'relu1', inputs: ['conv1'], outputs: ['relu1'] },
    { opType: 'MaxPool', name: 'pool1', inputs: ['relu1'], outputs: ['pool1'], attributes: pool },
    {
      opType: 'Conv',
      name: 'conv2',
      inputs: ['pool1', 'conv2.weight', 'conv2.bias'],
      outputs: ['conv2'],
      attributes: conv,
    },
    { opType: 'Relu', name: 'relu2', inputs: ['conv2'], outputs: ['relu2'] },
    { opType: 'MaxPool', name: 'pool2', inputs: ['relu2'], outputs: ['pool2'], attributes: pool },
    { opType: 'Flatten', name: 'flatten', inputs: ['pool2'], outputs: ['flat'], attributes: { axis: { i: 1 } } },
    {
      opType: 'Gemm',
      name: 'fc',
      inputs: ['flat', 'fc.weight', 'fc.bias'],
      outputs: [options.softmax ? 'logits' : 'output'],
      attributes: { transB: { i: 1 } },
    },
  ];
  if (options.softmax)
    nodes.push({
      opType: 'Softmax',
      name: 'softmax',
      inputs: ['logits'],
      outputs: ['output'],
      attributes: { axis: { i: -1 } },
    });
  return {
    producerName: 'quanta-onnx',
    docString:
      `CIFAR-shaped CNN, channels ${c1}/${c2}, ${classes} classes` +
      `${options.softmax ? ', softmax' : ''}, seed ${options.seed ?? 1}`,
    graph: {
      name: 'cnn',
      nodes,
      initializers,
      inputs: [{ name: 'input', dataType: OnnxDataType.FLOAT, shape: [batch, 3, 32, 32] }],
      outputs: [{ name: 'output', dataType: OnnxDataType.FLOAT, shape: [batch, classes] }],
    },
  };
}

export function buildCnn(options: CnnOptions = {}): Uint8Array {
  return encodeModel(cnnModel(options));
}
