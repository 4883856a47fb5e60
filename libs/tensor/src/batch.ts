import { formatShape, tensorError, type TensorContext } from './errors.js';
import { allocUnfilled, tensorObject, type Tensor, type TensorOf } from './tensor.js';

// Dynamic batching: requests for one model are stacked along axis 0, run once, and the outputs
// split back by each request's batch size.

/**
 * Stacks tensors along axis 0: all must share the datatype and the dims after the first. The
 * result is a new tensor (a copy for fixed-size datatypes; BYTES elements are shared).
 */
export function concatBatch(tensors: readonly Tensor[], context: TensorContext = {}): Tensor {
  const first = tensors[0];
  if (first === undefined) throw tensorError(context, 'shape', 'concatBatch needs at least one tensor');
  const ctx = { ...context, name: context.name ?? first.name };
  if (first.shape.length === 0)
    throw tensorError(ctx, 'shape', 'a scalar (shape []) has no batch axis to concatenate along');
  const rest = first.shape.slice(1);
  let batch = 0;
  for (const [index, tensor] of tensors.entries()) {
    if (tensor.datatype !== first.datatype) {
      throw tensorError(ctx, 'datatype', `batch part ${index} is ${tensor.datatype}, part 0 is ${first.datatype}`);
    }
    const sameRest = tensor.shape.length === first.shape.length && rest.every((dim, i) => tensor.shape[i + 1] === dim);
    if (!sameRest) {
      throw tensorError(
        ctx,
        'shape',
        `batch part ${index} has shape ${formatShape(tensor.shape)}, ` +
          `which does not stack with part 0's ${formatShape(first.shape)} along axis 0`,
      );
    }
    batch += tensor.shape[0] ?? 0;
  }
  const shape = [batch, ...rest];
  if (first.datatype === 'BYTES')
    return tensorObject(
      ctx.name,
      'BYTES',
      shape,
      (tensors as TensorOf<'BYTES'>[]).flatMap((t) => t.data),
    );
  let length = 0;
  for (const tensor of tensors) length += tensor.data.length;
  // Every element is written below: no zero fill.
  const data = allocUnfilled(first.datatype, length);
  let offset = 0;
  for (const tensor of tensors as readonly TensorOf<typeof first.datatype>[]) {
    (data as Uint8Array).set(tensor.data as Uint8Array, offset);
    offset += tensor.data.length;
  }
  return tensorObject(ctx.name, first.datatype, shape, data) as Tensor;
}

/**
 * Splits a tensor along axis 0 into parts of `sizes` rows each (the sizes must add up to the
 * batch dim). The parts are views of the tensor's memory, not copies.
 */
export function splitBatch(
  tensor: Tensor,
  sizes: readonly number[],
  context: TensorContext = { name: tensor.name },
): Tensor[] {
  const batch = tensor.shape[0];
  if (batch === undefined) throw tensorError(context, 'shape', 'a scalar (shape []) has no batch axis to split');
  let total = 0;
  for (const size of sizes) {
    if (!Number.isSafeInteger(size) || size < 0) {
      throw tensorError(context, 'shape', `batch sizes [${sizes.join(',')}] must be non-negative integers`);
    }
    total += size;
  }
  if (total !== batch) {
    throw tensorError(
      context,
      'shape',
      `batch sizes [${sizes.join(',')}] add up to ${total}, but shape ${formatShape(tensor.shape)} has ${batch} rows`,
    );
  }
  const rest = tensor.shape.slice(1);
  const rowLength = rest.reduce((a, b) => a * b, 1);
  let row = 0;
  return sizes.map((size) => {
    const start = row * rowLength;
    const end = (row + size) * rowLength;
    row += size;
    const data = tensor.datatype === 'BYTES' ? tensor.data.slice(start, end) : tensor.data.subarray(start, end);
    return tensorObject(tensor.name, tensor.datatype, [size, ...rest], data) as Tensor;
  });
}
