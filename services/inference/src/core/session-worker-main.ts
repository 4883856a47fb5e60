import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import type { FromWorker, SessionWorkerData, ToWorker, WireTensor } from './worker-protocol.js';

// The entry of a worker thread that holds one onnxruntime session (started by worker-instance.ts;
// messages in worker-protocol.ts). onnxruntime-node runs a model synchronously on the thread that
// calls session.run; in a worker, that thread is not the event loop that takes requests. Sessions
// of one model in several threads of one process need onnxruntime-node >= 1.27 (see
// docs/decisions/inference-session-workers.md).
//
// Only types come from this package: the thread loads nothing of the service but onnxruntime.

if (parentPort === null) throw new Error('session-worker-main runs as a worker thread (see worker-instance.ts)');
const port = parentPort;
const data = workerData as SessionWorkerData;
const post = (message: FromWorker, transfer?: ArrayBuffer[]): void =>
  transfer === undefined ? port.postMessage(message) : port.postMessage(message, transfer);
const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

let session: ort.InferenceSession | undefined;
try {
  session =
    typeof data.model === 'string'
      ? await ort.InferenceSession.create(data.model, data.options)
      : await ort.InferenceSession.create(data.model, data.options);
} catch (error: unknown) {
  post({ kind: 'failed', message: messageOf(error) });
}

if (session !== undefined) serve(session);

function serve(session: ort.InferenceSession): void {
  post({ kind: 'ready', inputMetadata: session.inputMetadata, outputMetadata: session.outputMetadata });
  // One run at a time, each timed from its own start: onnxruntime-node defers each run to a
  // setImmediate, so when two requests reach an idle worker in one wake-up, timing from the call
  // would count the wait behind the first as the second's onnxruntime time (compute_infer, the
  // tuner). In steady pipelining the next request arrives while a run holds the thread and is
  // handled after it, so the chain changes nothing there.
  let previous = Promise.resolve();

  const release = async (): Promise<void> => {
    try {
      await session.release();
    } finally {
      post({ kind: 'released' });
    }
  };

  const run = async (request: Extract<ToWorker, { kind: 'run' }>): Promise<void> => {
    const inputs: ArrayBuffer[] = [];
    for (const feed of request.feeds) {
      if (feed.returned !== true) continue;
      const buffer = (feed.data as ArrayBufferView).buffer as ArrayBuffer;
      if (!inputs.includes(buffer)) inputs.push(buffer);
    }
    try {
      const feeds: Record<string, ort.Tensor> = {};
      for (const feed of request.feeds) feeds[feed.name] = new ort.Tensor(feed.type, feed.data, feed.dims);
      const turn = previous;
      let done: () => void = () => undefined;
      previous = new Promise((resolve) => (done = resolve));
      let started = 0n;
      let results: ort.InferenceSession.ReturnType;
      try {
        await turn;
        started = process.hrtime.bigint();
        results = await session.run(feeds, request.fetches);
      } finally {
        done();
      }
      const ranNs = process.hrtime.bigint() - started;
      const outputs: WireTensor[] = [];
      const transfer = [...inputs];
      for (const name of request.fetches) {
        const tensor = results[name];
        if (tensor === undefined) continue;
        let data = tensor.data;
        if (ArrayBuffer.isView(data)) {
          // A view of part of a buffer is copied out so that only its bytes travel, and so is
          // one of an input buffer's (it goes back to the parent's pool).
          const partial = data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength;
          if (partial || transfer.includes(data.buffer as ArrayBuffer)) data = data.slice();
          transfer.push(data.buffer as ArrayBuffer);
        }
        outputs.push({ name, type: tensor.type, dims: tensor.dims, data });
      }
      post({ kind: 'done', id: request.id, outputs, inputs, ranNs }, transfer);
    } catch (error: unknown) {
      post({ kind: 'error', id: request.id, message: messageOf(error), inputs }, inputs);
    }
  };

  port.on('message', (request: ToWorker) => {
    if (request.kind === 'release') void release();
    else void run(request);
  });
}
