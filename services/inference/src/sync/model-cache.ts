// Model files kept in memory, keyed by sha256: versions and deployments (of any tenant) with the
// same digest are downloaded once, and a reload after a spec change needs no download. Nothing is
// written to disk: every byte Quanta keeps at rest is encrypted, and these are plaintext.

export interface ModelCacheStats {
  readonly entries: number;
  readonly bytes: number;
  readonly hits: number;
  readonly misses: number;
  readonly evictions: number;
}

export interface ModelCache {
  /** The file with this digest, marking it most recently used; undefined when absent. */
  get(sha256: string): Uint8Array | undefined;
  /** Keeps a file (verified by the caller), evicting the least recently used ones beyond the byte bound. */
  put(sha256: string, bytes: Uint8Array): void;
  has(sha256: string): boolean;
  stats(): ModelCacheStats;
  clear(): void;
}

/** An LRU cache bounded by bytes; a file larger than the bound is not kept. */
export function createModelCache(options: { maxBytes: number }): ModelCache {
  if (!(options.maxBytes >= 0)) throw new RangeError(`model cache maxBytes must be >= 0 (got ${options.maxBytes})`);
  // A Map iterates in insertion order: re-inserting on use makes its first key the least recently used.
  const entries = new Map<string, Uint8Array>();
  let bytes = 0;
  let hits = 0;
  let misses = 0;
  let evictions = 0;

  function remove(sha256: string): void {
    const old = entries.get(sha256);
    if (old === undefined) return;
    entries.delete(sha256);
    bytes -= old.byteLength;
  }

  return {
    get(sha256) {
      const found = entries.get(sha256);
      if (found === undefined) {
        misses++;
        return undefined;
      }
      hits++;
      entries.delete(sha256);
      entries.set(sha256, found);
      return found;
    },
    put(sha256, data) {
      remove(sha256);
      if (data.byteLength > options.maxBytes) return;
      entries.set(sha256, data);
      bytes += data.byteLength;
      for (const key of entries.keys()) {
        if (bytes <= options.maxBytes) break;
        remove(key);
        evictions++;
      }
    },
    has: (sha256) => entries.has(sha256),
    stats: () => ({ entries: entries.size, bytes, hits, misses, evictions }),
    clear() {
      entries.clear();
      bytes = 0;
    },
  };
}
