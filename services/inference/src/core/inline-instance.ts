import * as ort from 'onnxruntime-node';
import { InputBuffers, arrayOf, stage, unshared } from './buffer-pool.js';
import { isStaged, type Instance } from './instance.js';
import type { ModelBytes } from './types.js';

// A session on the event loop ('inline'): cheaper than a worker for tiny models, but a run blocks
// the loop, since onnxruntime-node runs a model synchronously on the thread that calls it.

export async function inlineInstance(
  bytes: ModelBytes,
  options: ort.InferenceSession.SessionOptions,
): Promise<Instance> {
  const session =
    bytes instanceof Uint8Array
      ? await ort.InferenceSession.create(bytes, options)
      : await ort.InferenceSession.create(bytes.path, options);
  const buffers = new InputBuffers();
  return {
    metadata: { inputMetadata: session.inputMetadata, outputMetadata: session.outputMetadata },
    buffers,
    async run(feeds, fetches) {
      const ortFeeds: Record<string, ort.Tensor> = {};
      const taken: ArrayBuffer[] = [];
      try {
        for (const [name, feed] of Object.entries(feeds)) {
          if (!isStaged(feed)) {
            ortFeeds[name] = feed;
            continue;
          }
          const lone = feed.parts.length === 1 ? feed.parts[0] : undefined;
          const { array, size } = arrayOf(feed.type);
          if (lone !== undefined && lone.byteOffset % size === 0) {
            // The request's own bytes, aligned: onnxruntime reads them where they are.
            ortFeeds[name] = new ort.Tensor(
              feed.type,
              new array(lone.buffer as ArrayBuffer, lone.byteOffset, lone.byteLength / size),
              feed.dims,
            );
            continue;
          }
          const staged = stage(feed, buffers);
          taken.push(staged.buffer);
          ortFeeds[name] = new ort.Tensor(feed.type, staged.data, feed.dims);
        }
        return unshared(await session.run(ortFeeds, [...fetches]), taken);
      } finally {
        for (const buffer of taken) buffers.give(buffer);
      }
    },
    release: () => {
      buffers.clear();
      return session.release();
    },
  };
}
