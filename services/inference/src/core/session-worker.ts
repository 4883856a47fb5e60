import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

// The code of a worker thread that holds one onnxruntime session (see instance-pool.ts).
// onnxruntime-node 1.30 runs a model synchronously on the thread that calls session.run; in a
// worker, that thread is not the event loop that takes requests.
//
// Several sessions in several threads of one process: onnxruntime-node up to 1.21 kept the
// Tensor constructor in a process-global N-API reference and aborted the process ("HandleScope ...
// without proper locking", microsoft/onnxruntime#24486) once a second thread ran a model, which
// users report gone from 1.27 on. With 1.30 (here) the tests run worker sessions next to
// main-thread ones and the benchmark two workers at once, without it.
//
// It is a string started from a data: URL rather than a file of its own so that it runs the same
// from TypeScript sources (tsx, vitest) and from dist/ without a loader in the worker; the only
// module it imports, onnxruntime-node, comes by absolute URL (workerData.ort).
//
// Protocol. workerData: { ort, model: Uint8Array | string (path), options }.
// worker -> parent: { kind: 'ready', inputMetadata, outputMetadata } | { kind: 'failed', message }.
// parent -> worker: { kind: 'run', id, feeds: WireTensor[], fetches } | { kind: 'release' }.
// worker -> parent: { kind: 'done', id, outputs: WireTensor[], inputs: ArrayBuffer[], ranNs: bigint (in session.run) }
//                   | { kind: 'error', id, message, inputs: ArrayBuffer[] } | { kind: 'released' }.
// A WireTensor is { name, type, dims, data, returned? }; numeric data travels as a typed array whose
// ArrayBuffer is transferred (outputs always; inputs when the parent may give them away). An input
// marked `returned` is one of the parent's input buffers: once the run is over, its ArrayBuffer goes
// back in `inputs` (transferred again), for the parent to reuse; no output shares memory with it.

const SOURCE = `
import { parentPort, workerData } from 'node:worker_threads';
const loaded = await import(workerData.ort);
const ort = loaded.default ?? loaded;
const message = (error) => (error instanceof Error ? error.message : String(error));
let session;
try {
  session = await ort.InferenceSession.create(workerData.model, workerData.options);
} catch (error) {
  parentPort.postMessage({ kind: 'failed', message: message(error) });
}
if (session !== undefined) {
  parentPort.postMessage({ kind: 'ready', inputMetadata: session.inputMetadata, outputMetadata: session.outputMetadata });
  let previous = Promise.resolve();
  parentPort.on('message', async (request) => {
    if (request.kind === 'release') {
      try {
        await session.release();
      } finally {
        parentPort.postMessage({ kind: 'released' });
      }
      return;
    }
    const inputs = [];
    for (const feed of request.feeds) {
      if (feed.returned === true && !inputs.includes(feed.data.buffer)) inputs.push(feed.data.buffer);
    }
    try {
      const feeds = {};
      for (const feed of request.feeds) feeds[feed.name] = new ort.Tensor(feed.type, feed.data, feed.dims);
      // One run at a time, timed from its own start: onnxruntime-node defers each run to a
      // setImmediate, so when two requests reach an idle worker in one wake-up, timing from the
      // call would count the wait behind the first as the second's onnxruntime time (compute_infer,
      // the tuner). In steady pipelining the next request arrives while a run holds the thread and
      // is handled after it, so this changes nothing there.
      const turn = previous;
      let done;
      previous = new Promise((resolve) => (done = resolve));
      let started;
      let results;
      try {
        await turn;
        started = process.hrtime.bigint();
        results = await session.run(feeds, request.fetches);
      } finally {
        done();
      }
      const ranNs = process.hrtime.bigint() - started;
      const outputs = [];
      const transfer = [...inputs];
      for (const name of request.fetches) {
        const tensor = results[name];
        if (tensor === undefined) continue;
        let data = tensor.data;
        if (ArrayBuffer.isView(data)) {
          // A view of part of a buffer is copied out so that only its bytes travel, and so is
          // one of an input buffer's (it goes back to the parent's pool).
          if (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength || transfer.includes(data.buffer)) data = data.slice();
          transfer.push(data.buffer);
        }
        outputs.push({ name, type: tensor.type, dims: tensor.dims, data });
      }
      parentPort.postMessage({ kind: 'done', id: request.id, outputs, inputs, ranNs }, transfer);
    } catch (error) {
      parentPort.postMessage({ kind: 'error', id: request.id, message: message(error), inputs }, inputs);
    }
  });
}
`;

/** The worker's code as a data: URL. */
export const sessionWorkerUrl = new URL(`data:text/javascript,${encodeURIComponent(SOURCE)}`);

/** onnxruntime-node's entry as seen from here, for the worker to import. */
export function onnxruntimeUrl(): string {
  return pathToFileURL(createRequire(import.meta.url).resolve('onnxruntime-node')).href;
}
