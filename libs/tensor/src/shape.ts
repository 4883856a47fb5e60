import { formatShape, tensorError, type TensorContext } from './errors.js';

/**
 * Checks a wire shape (int64 dims arrive as bigint) and returns it as numbers. Every dim must be
 * a non-negative integer (-1 is a wildcard in model metadata, never in a tensor) and the element
 * count must stay within Number.MAX_SAFE_INTEGER.
 */
export function parseShape(shape: readonly (number | bigint)[], context: TensorContext = {}): number[] {
  const dims = shape.map((dim, axis) => {
    if (typeof dim === 'bigint') {
      if (dim < 0n || dim > BigInt(Number.MAX_SAFE_INTEGER)) throw badDim(context, shape, axis, dim);
      return Number(dim);
    }
    if (!Number.isSafeInteger(dim) || dim < 0) throw badDim(context, shape, axis, dim);
    return dim;
  });
  elementCount(dims, context);
  return dims;
}

/** The number of elements of a shape (1 for a scalar []), with the same checks as parseShape. */
export function elementCount(shape: readonly number[], context: TensorContext = {}): number {
  for (const [axis, dim] of shape.entries()) {
    if (!Number.isSafeInteger(dim) || dim < 0) throw badDim(context, shape, axis, dim);
  }
  // A zero dim makes the count 0 whatever the others are (and Infinity * 0 would be NaN).
  if (shape.includes(0)) return 0;
  let count = 1;
  for (const dim of shape) {
    count *= dim;
    if (count > Number.MAX_SAFE_INTEGER) {
      throw tensorError(
        context,
        'shape',
        `shape ${formatShape(shape)} has more than Number.MAX_SAFE_INTEGER (${Number.MAX_SAFE_INTEGER}) elements`,
      );
    }
  }
  return count;
}

function badDim(
  context: TensorContext,
  shape: readonly (number | bigint)[],
  axis: number,
  dim: number | bigint,
): Error {
  const why =
    typeof dim === 'number' && !Number.isInteger(dim)
      ? 'is not an integer'
      : dim < 0
        ? 'is negative'
        : 'is larger than Number.MAX_SAFE_INTEGER';
  return tensorError(context, 'shape', `shape ${formatShape(shape)}: dim ${axis} (${String(dim)}) ${why}`);
}
