/**
 * Large buffers per request in the inference core, without the network: each request is what the
 * gRPC server hands the core (a ModelInferRequest decoded by @quanta/contracts' codec from a buffer
 * of its own, as grpc-js gives one to every message of 4 KiB and more, its raw input read by
 * @quanta/tensor's tensorFromWire), sent to a model loaded in the core at a given concurrency.
 * Reports, per request: process CPU, the main isolate's GCs (mark-compact and scavenge, counted by a
 * PerformanceObserver), and the ArrayBuffer memory it allocated (the sum of the rises of
 * process.memoryUsage().arrayBuffers sampled after each request is answered; the falls are frees).
 *   tsx --conditions=@quanta/source src/infer-allocations.ts \
 *     --model ocr-cls --execution worker --concurrency 1 --requests 3000
 */
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { decodeModelInferRequest, inference } from '@quanta/contracts';
import { createModelManager } from '@quanta/inference';
import { tensorFromWire, type Tensor } from '@quanta/tensor';
import { benchItem, benchModel } from './bench-inference-models.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'cnn' },
    execution: { type: 'string', default: 'worker' },
    concurrency: { type: 'string', default: '1' },
    requests: { type: 'string', default: '3000' },
    'delay-us': { type: 'string', default: '1000' },
  },
});
const model = benchModel(values.model);
const execution = values.execution === 'inline' ? 'inline' : 'worker';
const concurrency = Number(values.concurrency);
const total = Number(values.requests);

const manager = createModelManager({});
await manager.load('bench', model.name, '1', await model.bytes(), {
  maxBatchSize: 64,
  maxQueueDelayUs: Number(values['delay-us']),
  instanceCount: 1,
  maxQueueSize: 0,
  sequenceState: [],
  sequenceIdleTimeoutMs: 0,
  threadsPerInstance: 1,
  execution,
});
await manager.activate('bench', model.name, '1');
const loaded = manager.get('bench', model.name);

const item = benchItem(model);
const encoded = inference.ModelInferRequest.encode(
  inference.ModelInferRequest.fromPartial({
    modelName: model.name,
    inputs: [{ name: model.input, datatype: 'FP32', shape: [1, ...model.itemShape].map(BigInt) }],
    rawInputContents: [Buffer.from(item.buffer)],
  }),
).finish();

/** A request as the server builds it from a message received in a buffer of its own. */
function request(id: number): { id: string; inputs: Map<string, Tensor> } {
  const received = Buffer.allocUnsafeSlow(encoded.byteLength);
  received.set(encoded);
  const message = decodeModelInferRequest(received);
  const inputs = new Map<string, Tensor>();
  message.inputs.forEach((input, index) =>
    inputs.set(input.name, tensorFromWire(input, message.rawInputContents[index], 'input')),
  );
  return { id: String(id), inputs };
}

let major = 0;
let minor = 0;
const observer = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    const kind = (entry as { detail?: { kind?: number } }).detail?.kind;
    if (kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) major++;
    else if (kind === perfConstants.NODE_PERFORMANCE_GC_MINOR) minor++;
  }
});

async function drive(count: number, sample: boolean): Promise<{ allocated: number }> {
  let sent = 0;
  let allocated = 0;
  let last = process.memoryUsage().arrayBuffers;
  const lane = async (): Promise<void> => {
    while (sent < count) {
      const id = sent++;
      await loaded.infer(request(id));
      if (sample) {
        const now = process.memoryUsage().arrayBuffers;
        if (now > last) allocated += now - last;
        last = now;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return { allocated };
}

await drive(Math.min(500, total), false);
observer.observe({ entryTypes: ['gc'] });
const cpu = process.cpuUsage();
const started = process.hrtime.bigint();
const { allocated } = await drive(total, true);
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
const used = process.cpuUsage(cpu);
await new Promise((resolve) => setImmediate(resolve));
observer.disconnect();
const stats = loaded.stats();
const meanBatch = Number(stats.inferenceCount) / Math.max(1, Number(stats.executionCount));
console.log(
  JSON.stringify({
    model: model.name,
    execution,
    concurrency,
    requests: total,
    rps: Math.round(total / seconds),
    cpuUsPerReq: Math.round((used.user + used.system) / total),
    majorGcPer1000: Math.round((major * 1000) / total),
    minorGcPer1000: Math.round((minor * 1000) / total),
    arrayBufferKiBPerReq: Math.round(allocated / total / 1024),
    meanBatch: Math.round(meanBatch * 10) / 10,
  }),
);
await manager.close();
