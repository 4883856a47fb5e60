/**
 * Reused buffers for received upload chunks.
 *
 * grpc-js assembles each received message in a fresh buffer and reads up to 16 messages ahead of
 * the handler, so while an upload is being hashed and sealed its 1 MiB message buffers wait in that
 * queue long enough for V8 to promote them to the old generation, where only a full mark-compact of
 * the whole heap frees them. The upload deserializer copies each chunk into one of these buffers
 * instead (one memcpy into warm memory): the fresh message buffer dies at once, in the young
 * generation, and the pooled ones are allocated once and reused, so the queue makes no garbage.
 *
 * A chunk that does not fit (or when every buffer is taken: other uploads) stays a view of the
 * message, as before. `release` gives a buffer back once nothing refers to its bytes; a chunk that
 * is dropped unread (a cancelled call) comes back when V8 collects it.
 */
export interface ChunkPool {
  /** A copy of `bytes` in a pooled buffer, or undefined when it does not fit one or none is free. */
  copy(bytes: Buffer): Buffer | undefined;
  /**
   * Gives back the pooled buffer behind `chunk` (nothing for other buffers): the caller must hold no view of it any
   * more.
   */
  release(chunk: Buffer): void;
  /** Buffers allocated so far, and free now (for tests). */
  readonly allocated: number;
  readonly free: number;
}

export function createChunkPool(options: { slotBytes: number; maxSlots: number; minBytes: number }): ChunkPool {
  const { slotBytes, maxSlots, minBytes } = options;
  const free: Buffer[] = [];
  let allocated = 0;
  const slotOf = new WeakMap<Buffer, Buffer>();
  const dropped = new FinalizationRegistry<Buffer>((slot) => free.push(slot));
  return {
    copy(bytes) {
      if (bytes.length < minBytes || bytes.length > slotBytes) return undefined;
      let slot = free.pop();
      if (slot === undefined) {
        if (allocated >= maxSlots) return undefined;
        slot = Buffer.allocUnsafeSlow(slotBytes);
        allocated += 1;
      }
      bytes.copy(slot);
      const chunk = slot.subarray(0, bytes.length);
      slotOf.set(chunk, slot);
      dropped.register(chunk, slot, chunk);
      return chunk;
    },
    release(chunk) {
      const slot = slotOf.get(chunk);
      if (slot === undefined) return;
      slotOf.delete(chunk);
      dropped.unregister(chunk);
      free.push(slot);
    },
    get allocated() {
      return allocated;
    },
    get free() {
      return free.length;
    },
  };
}

/**
 * The pool of UploadVersion's deserializer: 1 MiB buffers (the CLI's chunk size), enough for
 * grpc-js's read-ahead of one upload and the chunk being sealed (24 MiB at most, kept once made).
 */
export const uploadChunks = createChunkPool({ slotBytes: 1024 * 1024, maxSlots: 24, minBytes: 64 * 1024 });
