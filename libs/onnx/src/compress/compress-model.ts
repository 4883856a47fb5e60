import { CompressError } from './compress-error.js';
import { COMPRESS_METHODS, type CompressOptions, type CompressResult } from './compress-types.js';
import { foldBatchNorms } from './fold-batch-norm.js';
import { fp16 } from './fp16.js';
import { int8Dynamic } from './int8-dynamic.js';
import { int8Weights, prune } from './int8-weights.js';
import { readModel } from './onnx-graph.js';
import { Rewriter } from './rewriter.js';

// Compresses a ModelProto with one method. A rewritten weight keeps its name as the output of the
// node that restores it in float32, so the nodes that read it, the graph inputs and outputs and
// the opset imports stay as they were (int8-dynamic's LSTM form adds com.microsoft).

export {
  COMPRESS_METHODS,
  type CompressMethod,
  type CompressOptions,
  type CompressResult,
  type LeftOp,
  type OpCount,
} from './compress-types.js';
export { MIN_FP16_ELEMENTS } from './fp16.js';
export { MIN_WEIGHT_ELEMENTS } from './weight-roles.js';

function validate(options: CompressOptions): void {
  const method: unknown = options.method;
  if (typeof method !== 'string' || !(COMPRESS_METHODS as readonly string[]).includes(method)) {
    throw new CompressError(
      'bad-options',
      `unknown compression method ${JSON.stringify(method)}: use one of ${COMPRESS_METHODS.join(', ')}`,
    );
  }
  const s = options.sparsity;
  if (s === undefined) {
    if (method === 'prune')
      throw new CompressError(
        'bad-options',
        'prune needs a sparsity: the fraction of weights to set to zero, between 0 and 1 (e.g. 0.5)',
      );
    return;
  }
  if (method !== 'prune' && method !== 'int8-weights') {
    throw new CompressError('bad-options', `sparsity applies to prune and int8-weights, not to ${method}`);
  }
  if (typeof s !== 'number' || !Number.isFinite(s) || s <= 0 || s >= 1) {
    throw new CompressError(
      'bad-options',
      `sparsity must be a number between 0 and 1 (both excluded), got ${String(s)}`,
    );
  }
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
      foldBatchNorms(r);
      int8Weights(r, options.sparsity);
      break;
    case 'prune':
      prune(r, options.sparsity!);
      break;
    case 'fp16':
      foldBatchNorms(r);
      fp16(r);
      break;
    case 'int8-dynamic':
      int8Dynamic(r);
      break;
  }
  return r.result(model, options.method);
}
