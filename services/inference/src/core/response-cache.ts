import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { tensorBytes, type Tensor } from '@quanta/tensor';

// A deployment's response cache for one loaded model version (ServingConfig.responseCacheBytes):
// the outputs of a request, kept under a key made of everything that decides them, to answer the
// same request again without running the model. A cache belongs to one version of one tenant's
// model, so an entry never answers another tenant or another version. Only stateless requests use
// it (loaded-model.ts): a sequence's answer depends on its state, not only on its inputs.
//
// The key is the SHA-256 of each input's name, datatype, shape and bytes (in name order) and of
// the requested outputs (names, in order: the answer follows it). No other request parameter
// changes an answer: `priority` and `timeout` only decide when it runs, `binary_data` only how it
// is sent. Entries hold their own copy of the outputs (not views of a batch's output buffer), and
// count their bytes against the bound; least recently used ones leave first.

/** Bytes an entry is charged beyond its tensors' bytes: the key, the map's and the tensors' objects. */
const ENTRY_OVERHEAD = 256;

export interface ResponseCache {
  /** The key of a request's inputs and requested outputs. */
  keyOf(inputs: ReadonlyMap<string, Tensor>, outputs: readonly string[]): string;
  get(key: string): readonly Tensor[] | undefined;
  /** Keeps a copy of `outputs`; one larger than the whole cache is not kept. */
  set(key: string, outputs: readonly Tensor[]): void;
  /** Bytes held now. */
  bytes(): number;
  /** Entries held now. */
  size(): number;
}

const lengthPrefix = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};

function hashString(hash: ReturnType<typeof createHash>, value: string): void {
  const bytes = Buffer.from(value, 'utf8');
  hash.update(lengthPrefix(bytes.length));
  hash.update(bytes);
}

function hashTensor(hash: ReturnType<typeof createHash>, name: string, tensor: Tensor): void {
  hashString(hash, name);
  hashString(hash, tensor.datatype);
  hashString(hash, tensor.shape.join(','));
  if (tensor.datatype === 'BYTES') {
    hash.update(lengthPrefix(tensor.data.length));
    for (const element of tensor.data) {
      hash.update(lengthPrefix(element.byteLength));
      hash.update(element);
    }
    return;
  }
  const bytes = tensorBytes(tensor);
  hash.update(lengthPrefix(bytes.byteLength));
  hash.update(bytes);
}

function byteSize(tensor: Tensor): number {
  if (tensor.datatype !== 'BYTES') return tensor.data.byteLength;
  let n = 0;
  for (const element of tensor.data) n += element.byteLength + 16;
  return n;
}

/** A copy that owns its memory (an output may be a view of a whole batch's buffer). */
function ownedCopy(tensor: Tensor): Tensor {
  const shape = [...tensor.shape];
  if (tensor.datatype === 'BYTES')
    return { name: tensor.name, datatype: 'BYTES', shape, data: tensor.data.map((e) => e.slice()) };
  return { name: tensor.name, datatype: tensor.datatype, shape, data: tensor.data.slice() } as Tensor;
}

export function createResponseCache(maxBytes: number): ResponseCache {
  const cache = new LRUCache<string, readonly Tensor[]>({
    maxSize: maxBytes,
    sizeCalculation: (outputs, key) => outputs.reduce((sum, t) => sum + byteSize(t), ENTRY_OVERHEAD + key.length),
  });
  return {
    keyOf(inputs, outputs) {
      const hash = createHash('sha256');
      const names = [...inputs.keys()].sort();
      hash.update(lengthPrefix(names.length));
      for (const name of names) hashTensor(hash, name, inputs.get(name)!);
      hash.update(lengthPrefix(outputs.length));
      for (const output of outputs) hashString(hash, output);
      return hash.digest('base64');
    },
    get: (key) => cache.get(key),
    set(key, outputs) {
      const size = outputs.reduce((sum, t) => sum + byteSize(t), ENTRY_OVERHEAD + key.length);
      // lru-cache would refuse it too; this spares the copy.
      if (size > maxBytes) return;
      cache.set(key, outputs.map(ownedCopy));
    },
    bytes: () => cache.calculatedSize,
    size: () => cache.size,
  };
}
