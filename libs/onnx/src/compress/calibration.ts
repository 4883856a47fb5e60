import type { Datatype, Tensor } from '@quanta/tensor';
import { allocData, createTensor } from '@quanta/tensor';
import { inspectOnnx } from '../inspect.js';
import type { OnnxValueInfo } from '../model-info.js';
import { createRng, type Rng } from '../rng.js';
import { CompressError } from './compress-error.js';

// Calibration inputs generated from a model's signature, for comparing a compressed model with its
// parent when the caller brings none. Tensors are @quanta/tensor Tensors (tensorToOrt makes them
// onnxruntime-node tensors).

export interface CalibrationOptions {
  /** How many samples (feeds). */
  readonly count: number;
  readonly seed: number;
  /** Size of each dynamic dim, by its dim_param name; a dim without one here is 1. */
  readonly dims?: Readonly<Record<string, number>>;
  /** Inputs fed zeros (recurrent state); default: those typed and shaped like an output, see below. */
  readonly stateInputs?: readonly string[];
}

/** One sample: a tensor per graph input the caller must feed. */
export type CalibrationSample = Record<string, Tensor>;

/** Standard normal (Box-Muller) from uniform numbers. */
function normal(rng: Rng): number {
  const u = 1 - rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}

function fill(datatype: Datatype, count: number, rng: Rng, zeros: boolean): Tensor['data'] {
  switch (datatype) {
    case 'FP32':
    case 'FP64': {
      const data = allocData(datatype, count);
      if (!zeros) for (let i = 0; i < count; i++) data[i] = normal(rng);
      return data;
    }
    case 'BOOL': {
      const data = allocData('BOOL', count);
      if (!zeros) for (let i = 0; i < count; i++) data[i] = rng() < 0.5 ? 1 : 0;
      return data;
    }
    case 'INT8':
    case 'INT16':
    case 'INT32':
    case 'UINT8':
    case 'UINT16':
    case 'UINT32': {
      const data = allocData(datatype, count);
      if (!zeros) for (let i = 0; i < count; i++) data[i] = Math.floor(rng() * 10);
      return data;
    }
    case 'INT64':
    case 'UINT64': {
      const data = allocData(datatype, count);
      if (!zeros) for (let i = 0; i < count; i++) data[i] = BigInt(Math.floor(rng() * 10));
      return data;
    }
    default:
      throw new CompressError(
        'bad-model',
        `cannot generate calibration values of type ${datatype}: give calibration inputs instead`,
      );
  }
}

const sameSignature = (a: OnnxValueInfo, b: OnnxValueInfo): boolean =>
  a.datatype === b.datatype &&
  JSON.stringify(a.shape) === JSON.stringify(b.shape) &&
  JSON.stringify(a.dimParams) === JSON.stringify(b.dimParams);

/**
 * Recurrent state inputs: those typed and shaped like an output (which carries the state back),
 * when some other input is not (the data the state runs over).
 */
function stateInputs(inputs: readonly OnnxValueInfo[], outputs: readonly OnnxValueInfo[]): Set<string> {
  const like = inputs.filter((i) => outputs.some((o) => o.name !== i.name && sameSignature(i, o)));
  return like.length < inputs.length ? new Set(like.map((i) => i.name)) : new Set();
}

/**
 * `count` feeds for the model's inputs, the same for the same seed: floats ~ N(0, 1), integers in
 * [0, 10), booleans fair; recurrent state inputs zero. Dynamic dims from `dims` by name, else 1.
 */
export function generateCalibrationInputs(model: Uint8Array, options: CalibrationOptions): CalibrationSample[] {
  if (!Number.isSafeInteger(options.count) || options.count < 1) {
    throw new CompressError('bad-options', `calibration count must be a positive integer, got ${options.count}`);
  }
  const info = inspectOnnx(model);
  const rng = createRng(options.seed);
  const zeroed =
    options.stateInputs === undefined ? stateInputs(info.inputs, info.outputs) : new Set(options.stateInputs);
  const samples: CalibrationSample[] = [];
  for (let s = 0; s < options.count; s++) {
    const sample: CalibrationSample = {};
    for (const input of info.inputs) {
      if (input.kind !== 'tensor' || input.datatype === null || input.shape === null) {
        throw new CompressError(
          'bad-model',
          `input "${input.name}" is not a tensor of known rank: give calibration inputs instead`,
        );
      }
      const shape = input.shape.map((d, k) => {
        if (d >= 0) return d;
        const name = input.dimParams?.[k];
        const size = name === null || name === undefined ? undefined : options.dims?.[name];
        if (size !== undefined && (!Number.isSafeInteger(size) || size < 1)) {
          throw new CompressError('bad-options', `dim ${name} must be a positive integer, got ${size}`);
        }
        return size ?? 1;
      });
      const count = shape.reduce((a, b) => a * b, 1);
      const zeros = zeroed.has(input.name);
      sample[input.name] = createTensor<Datatype>(input.datatype, shape, fill(input.datatype, count, rng, zeros), {
        name: input.name,
      });
    }
    samples.push(sample);
  }
  return samples;
}
