// What a CompressVersion request asks for, checked: INVALID_ARGUMENT names the first field that is wrong.
import { registry as pb } from '@quanta/contracts';
import type { CompressMethod } from '@quanta/onnx';
import { invalidArgument } from '@quanta/service-kit';
import { checkName } from '../core/names.js';
import { MAX_SAMPLES } from './calibration.js';

const METHODS: ReadonlyMap<pb.CompressionMethod, CompressMethod> = new Map([
  [pb.CompressionMethod.COMPRESSION_METHOD_INT8_WEIGHTS, 'int8-weights'],
  [pb.CompressionMethod.COMPRESSION_METHOD_INT8_DYNAMIC, 'int8-dynamic'],
  [pb.CompressionMethod.COMPRESSION_METHOD_FP16, 'fp16'],
  [pb.CompressionMethod.COMPRESSION_METHOD_PRUNE, 'prune'],
]);

const DEFAULT_SAMPLES = 32;
/** Bounds a dimension override, so that a typo cannot ask for a tensor of gigabytes. */
const MAX_DIM = 65_536;
export interface Checked {
  readonly method: CompressMethod;
  readonly sparsity: number | undefined;
  readonly dims: Record<string, number>;
  readonly sampleCount: number;
  readonly seed: number;
  readonly alias: string | undefined;
  readonly targetModel: string | undefined;
}

export function checkRequest(req: pb.CompressVersionRequest): Checked {
  const method = METHODS.get(req.method);
  if (method === undefined) throw invalidArgument('method is required: INT8_WEIGHTS, INT8_DYNAMIC, FP16 or PRUNE');
  const sparsity = req.sparsity;
  if (sparsity !== undefined) {
    if (method !== 'prune' && method !== 'int8-weights')
      throw invalidArgument(`sparsity applies to PRUNE and INT8_WEIGHTS only, not ${method}`);
    if (!(sparsity > 0 && sparsity < 1)) throw invalidArgument(`sparsity must be above 0 and below 1, got ${sparsity}`);
  } else if (method === 'prune')
    throw invalidArgument('PRUNE needs sparsity, the share of weights to zero (for example 0.5)');
  const gates = req.gates;
  const gate = (name: string, value: number | undefined, low: number, high: number): void => {
    if (value !== undefined && !(value >= low && value <= high))
      throw invalidArgument(`gates.${name} must be between ${low} and ${high}, got ${value}`);
  };
  gate('min_cosine', gates?.minCosine, -1, 1);
  gate('max_abs_error', gates?.maxAbsError, 0, Number.MAX_VALUE);
  gate('min_top1_agreement', gates?.minTop1Agreement, 0, 1);
  const dims: Record<string, number> = {};
  for (const [name, size] of Object.entries(req.dims)) {
    if (name === '') throw invalidArgument('dims: a dimension name is empty');
    if (size < 1 || size > MAX_DIM) throw invalidArgument(`dims: "${name}" is ${size}; a dimension is 1 to ${MAX_DIM}`);
    dims[name] = size;
  }
  if (req.sampleCount > MAX_SAMPLES)
    throw invalidArgument(`sample_count ${req.sampleCount} is over the maximum of ${MAX_SAMPLES}`);
  if (req.seed > BigInt(Number.MAX_SAFE_INTEGER))
    throw invalidArgument(`seed must be at most ${Number.MAX_SAFE_INTEGER}`);
  return {
    method,
    sparsity,
    dims,
    sampleCount: req.sampleCount === 0 ? DEFAULT_SAMPLES : req.sampleCount,
    seed: Number(req.seed),
    alias: req.alias === '' ? undefined : checkName('alias', req.alias, 'alias'),
    targetModel: req.targetModel === '' ? undefined : checkName('model', req.targetModel, 'target_model'),
  };
}
