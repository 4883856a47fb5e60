import { buildMlp } from '@quanta/onnx';
import { afterEach, describe, expect, it } from 'vitest';
import { createModelManager } from '../core/model-manager.js';
import type { ModelManager } from '../core/types.js';
import { STREAM_PIPELINE_DEPTH } from './grpc-handlers.js';
import type { Harness } from '../testing/harness.js';
import {
  fp32Input,
  openInferStream,
  inferRequest,
  seededFloats,
  startHarness,
  watchedManager,
} from '../testing/harness.js';

const MLP = buildMlp();
let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** A manager whose models count the requests they have been given and not yet answered. */
function countingManager(): {
  manager: ModelManager;
  counts: { started: number; settled: number; maxInFlight: number };
} {
  const counts = { started: 0, settled: 0, maxInFlight: 0 };
  const manager = watchedManager(createModelManager(), (run) => {
    counts.started++;
    counts.maxInFlight = Math.max(counts.maxInFlight, counts.started - counts.settled);
    return run().finally(() => void counts.settled++);
  });
  return { manager, counts };
}

describe('ModelStreamInfer flow control', () => {
  it(`has at most ${STREAM_PIPELINE_DEPTH} of a stream's requests in the core at once; answers in order`, async () => {
    const { manager, counts } = countingManager();
    h = await startHarness({ server: { manager } });
    // Batches wait up to 200 ms to fill 64 rows, more than one stream may have in flight: every
    // round of the pipeline is held in the queue until its delay ends, with the pipeline full.
    await h.deploy('acme', 'mlp', '1', MLP, { maxBatchSize: 64, maxQueueDelayUs: 200_000, loneRequestsWait: true });
    const token = await h.token('acme', ['infer']);
    const total = STREAM_PIPELINE_DEPTH * 3 + 5;
    const { stream, responses, ended } = openInferStream(h.client, token);
    const input = fp32Input('input', [1, 4], seededFloats(4, 3), false).input;
    for (let i = 0; i < total; i++) stream.write(inferRequest({ modelName: 'mlp', id: String(i), inputs: [input] }));
    stream.end();
    await ended;
    expect(responses.map((r) => r.errorMessage)).toEqual(Array.from({ length: total }, () => ''));
    expect(responses.map((r) => r.inferResponse?.id)).toEqual(Array.from({ length: total }, (_, i) => String(i)));
    expect(counts.started).toBe(total);
    // The pipeline filled up to its depth (requests run concurrently) and never past it.
    expect(counts.maxInFlight).toBe(STREAM_PIPELINE_DEPTH);
  });
});
