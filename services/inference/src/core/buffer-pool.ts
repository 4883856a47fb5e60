import * as ort from 'onnxruntime-node';
import { ortTypedArray } from '@quanta/tensor';

// The input buffers of one instance, and the staged feeds copied into them.
//
// A staged feed (what the dynamic batcher sends) is a numeric input given as the bytes of its
// parts (one request's raw bytes, or each request's of a batch). The instance copies them once,
// straight into an input buffer of its own, which goes to the worker by transfer and comes back
// with the reply (transfer again). An instance runs one batch at a time, so its few buffers are
// reused from run to run: in steady state a request allocates no large ArrayBuffer here
// (onnxruntime's outputs aside), which is what keeps V8's external memory, and with it its full
// GCs, down. Inline, a lone part already aligned is used as it is (no copy), others are copied
// into the instance's buffer. A buffer is only taken for a run and given back once that run is
// over (the worker has returned it), and never reaches a request: an output that would share it
// is copied out (`unshared`).

/** A numeric input as the bytes of its parts, stacked along axis 0 in this order (see the header). */
export interface StagedFeed {
  readonly type: ort.Tensor.Type;
  readonly dims: readonly number[];
  /** Little-endian element bytes; only read, never kept after the run. */
  readonly parts: readonly Uint8Array[];
}

type ArrayOf = new (buffer: ArrayBuffer, byteOffset: number, length: number) => ort.Tensor.DataType & ArrayBufferView;

/**
 * The typed array onnxruntime-node takes for a numeric type (float16 as Uint16Array bits), and
 * its element size.
 */
export function arrayOf(type: ort.Tensor.Type): { readonly array: ArrayOf; readonly size: number } {
  const array = ortTypedArray(type);
  if (array === undefined) throw new Error(`a staged feed must be numeric, not ${type}`);
  return { array, size: array.BYTES_PER_ELEMENT };
}

/** Free input buffers an instance keeps (the smallest go first beyond this). */
const MAX_FREE_BUFFERS = 4;

/**
 * The input buffers of one instance. A buffer is taken for one run and given back after it, so
 * two runs never share one; the instance runs one batch at a time, so a handful suffice.
 */
export class InputBuffers {
  private free: ArrayBuffer[] = [];
  /** ArrayBuffers created so far (for tests and diagnostics). */
  allocated = 0;

  /**
   * A buffer of at least `bytes` bytes, reused when one is free (power-of-two sizes, so that
   * batches of a few rows more or less share one).
   */
  take(bytes: number): ArrayBuffer {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const size = this.free[i]?.byteLength ?? 0;
      if (size >= bytes && (best < 0 || size < (this.free[best]?.byteLength ?? 0))) best = i;
    }
    if (best >= 0) return this.free.splice(best, 1)[0] as ArrayBuffer;
    this.allocated++;
    return new ArrayBuffer(bytes <= 64 ? 64 : 2 ** Math.ceil(Math.log2(bytes)));
  }

  /** Back after its run; a detached buffer (transferred and not returned) is dropped. */
  give(buffer: ArrayBuffer): void {
    if (buffer.byteLength === 0) return;
    this.free.push(buffer);
    if (this.free.length > MAX_FREE_BUFFERS) {
      this.free.sort((a, b) => a.byteLength - b.byteLength);
      this.free.shift();
    }
  }

  /** Buffers free now. */
  held(): number {
    return this.free.length;
  }

  clear(): void {
    this.free = [];
  }
}

/** Copies a staged feed's parts into a buffer from `buffers`; returns the view for onnxruntime. */
export function stage(
  feed: StagedFeed,
  buffers: InputBuffers,
): { data: ort.Tensor.DataType & ArrayBufferView; buffer: ArrayBuffer } {
  const { array, size } = arrayOf(feed.type);
  let bytes = 0;
  for (const part of feed.parts) bytes += part.byteLength;
  const buffer = buffers.take(bytes);
  const target = new Uint8Array(buffer, 0, bytes);
  let offset = 0;
  for (const part of feed.parts) {
    target.set(part, offset);
    offset += part.byteLength;
  }
  return { data: new array(buffer, 0, bytes / size), buffer };
}

/** An output that shares memory with one of `buffers` (an identity output, say) is copied out. */
export function unshared(
  results: ort.InferenceSession.ReturnType,
  buffers: readonly ArrayBuffer[],
): ort.InferenceSession.ReturnType {
  if (buffers.length === 0) return results;
  const shares = (tensor: ort.Tensor): boolean =>
    ArrayBuffer.isView(tensor.data) && buffers.includes(tensor.data.buffer as ArrayBuffer);
  if (!Object.values(results).some(shares)) return results;
  const copied: Record<string, ort.Tensor> = {};
  for (const [name, tensor] of Object.entries(results)) {
    copied[name] = shares(tensor)
      ? new ort.Tensor(tensor.type, (tensor.data as Uint8Array).slice() as ort.Tensor.DataType, tensor.dims)
      : tensor;
  }
  return copied;
}
