import { registry as pb } from '@quanta/contracts';
import { CompressError, compressModel, generateCalibrationInputs } from '@quanta/onnx';
import type { CompressResult } from '@quanta/onnx';
import type { CallContext } from '@quanta/service-kit';
import { failedPrecondition, invalidArgument } from '@quanta/service-kit';
import { tensorToOrt } from '@quanta/tensor';
import type { Tensor } from '@quanta/tensor';
import { parseRef } from '../core/names.js';
import { getVersion, resolveVersion } from '../core/versions-repo.js';
import { tenantOf } from '../server/context.js';
import type { RegistryDeps } from '../server/deps.js';
import { versionPlaintext } from '../server/download.js';
import { uploadVersion } from '../server/upload.js';
import { callerSamples } from './calibration.js';
import { missedGate } from './gates.js';
import { compareLatency, compareOutputs, measuredOn, openSession } from './measure.js';
import type { Feeds } from './measure.js';
import { progress, tracked } from './progress.js';
import { checkRequest } from './request.js';

/** The larger batch latency is timed at, where the model has a batch dimension. */
const LARGE_BATCH = 8;
const UPLOAD_CHUNK = 1024 * 1024;

/** A generated or uploaded tensor as onnxruntime takes it. */
function ortFeeds(sample: Readonly<Record<string, Tensor>>): Feeds {
  return Object.fromEntries(Object.entries(sample).map(([name, t]) => [name, tensorToOrt(t, { name, role: 'input' })]));
}

/**
 * The symbolic dimension that is the batch: one named in every input (the LSTM's `N` of `x [T,N,in]`
 * and `h [1,N,H]`), preferring the first input's first axis. Undefined when there is none.
 */
function batchDimension(inputs: readonly pb.TensorSignature[]): string | undefined {
  const first = inputs[0];
  if (first === undefined) return undefined;
  const candidates = first.dimNames.filter(
    (name) => name !== '' && inputs.every((input) => input.dimNames.includes(name)),
  );
  return candidates[0];
}

function dimsText(dims: Readonly<Record<string, number>>): string {
  const entries = Object.entries(dims);
  return entries.length === 0 ? 'none' : entries.map(([name, size]) => `${name}=${size}`).join(' ');
}

function opCounts(counts: readonly { op: string; count: number; reason?: string }[]): pb.CompressionOpCount[] {
  return counts.map((c) => ({ op: c.op, count: c.count, reason: c.reason ?? '' }));
}

/**
 * The UploadVersion messages of a file held in memory, as the call's message stream that
 * uploadVersion reads: the header, then 1 MiB views of the bytes (nothing to await: they are in memory).
 */
// eslint-disable-next-line @typescript-eslint/require-await
async function* uploadRequests(header: pb.UploadHeader, bytes: Uint8Array): AsyncGenerator<pb.UploadVersionRequest> {
  yield { part: { $case: 'header', value: header } };
  for (let at = 0; at < bytes.length; at += UPLOAD_CHUNK) {
    yield {
      part: {
        $case: 'chunk',
        value: Buffer.from(bytes.buffer, bytes.byteOffset + at, Math.min(UPLOAD_CHUNK, bytes.length - at)),
      },
    };
  }
}

/**
 * CompressVersion: read the source's plaintext (decrypted and checked like a download), rewrite it,
 * measure both with onnxruntime on the calibration samples, check the gates, then store the result
 * through the upload path (sealed, inspected, committed with its lineage, report and alias in one
 * transaction). Nothing is written before the gates pass, so a failed call leaves nothing.
 * Memory holds the source and the rewritten model (and their onnxruntime sessions while measuring).
 */
export async function* compressVersion(
  deps: RegistryDeps,
  req: pb.CompressVersionRequest,
  ctx: CallContext,
): AsyncGenerator<pb.CompressVersionResponse, void, undefined> {
  const tenant = tenantOf(ctx);
  const checked = checkRequest(req);
  const ref = parseRef(req.ref);
  const number = await resolveVersion(deps.store, tenant, ref);
  const source = await getVersion(deps.store, tenant, ref.model, number);
  if (source.status !== pb.VersionStatus.VERSION_STATUS_READY)
    throw failedPrecondition(`${ref.model}:${number} is ${pb.versionStatusToJSON(source.status)}, not READY`);
  const inputs = source.signature?.inputs ?? [];
  // Uploaded samples are checked before any work is done.
  const uploaded = req.calibration.length > 0 ? callerSamples(req.calibration, inputs) : undefined;

  yield progress('reading', 0);
  let model: Uint8Array | undefined = new Uint8Array(Number(source.sizeBytes));
  let at = 0;
  for await (const segment of versionPlaintext(deps, tenant, source)) {
    model.set(segment, at);
    at += segment.length;
  }
  ctx.signal.throwIfAborted();

  yield progress('compressing', 0.1);
  let result: CompressResult;
  try {
    result = compressModel(model, {
      method: checked.method,
      ...(checked.sparsity === undefined ? {} : { sparsity: checked.sparsity }),
    });
  } catch (error: unknown) {
    if (error instanceof CompressError) {
      const message = `${ref.model}:${number} cannot be compressed with ${checked.method}: ${error.message}`;
      throw error.problem === 'bad-options'
        ? invalidArgument(message, { cause: error })
        : failedPrecondition(message, { cause: error });
    }
    throw error;
  }

  const batchDim = batchDimension(inputs);
  const dims = { ...checked.dims };
  for (const input of inputs)
    for (const name of input.dimNames) if (name !== '' && dims[name] === undefined) dims[name] = 1;
  const generate = (count: number, extra: Record<string, number> = {}): Feeds[] =>
    generateCalibrationInputs(model!, { count, seed: checked.seed, dims: { ...dims, ...extra } }).map(ortFeeds);
  let samples: Feeds[];
  try {
    samples = uploaded === undefined ? generate(checked.sampleCount) : uploaded.map(ortFeeds);
  } catch (error: unknown) {
    if (error instanceof CompressError)
      throw invalidArgument(`calibration inputs for ${ref.model}:${number}: ${error.message}`, { cause: error });
    throw error;
  }
  const timed = [{ batchSize: 1, feeds: generate(1, batchDim === undefined ? {} : { [batchDim]: 1 })[0]! }];
  if (batchDim !== undefined)
    timed.push({ batchSize: LARGE_BATCH, feeds: generate(1, { [batchDim]: LARGE_BATCH })[0]! });

  const before = await openSession(model);
  const after = await openSession(result.model);
  // The source's bytes are not needed past here: onnxruntime holds its own copy.
  model = undefined;
  let outputs: pb.OutputAccuracy[];
  let latency: pb.CompressionLatency[];
  try {
    outputs = yield* tracked('calibrating', 0.2, 0.5, ctx.signal, (step) =>
      compareOutputs(before, after, samples, step),
    );
    latency = yield* tracked('timing', 0.7, 0.2, ctx.signal, (step) => compareLatency(before, after, timed, step));
  } finally {
    await before.release();
    await after.release();
  }
  const missed = missedGate(outputs, req.gates);
  if (missed !== undefined)
    throw failedPrecondition(`${ref.model}:${number} ${checked.method}: ${missed}; no version was created`);

  const calibration: pb.CalibrationSource =
    uploaded === undefined
      ? {
          kind: 'generated',
          sampleCount: samples.length,
          seed: BigInt(checked.seed),
          dims,
          description: `generated, seed ${checked.seed}, dims ${dimsText(dims)}, ${samples.length} samples`,
        }
      : {
          kind: 'caller',
          sampleCount: samples.length,
          seed: 0n,
          dims: {},
          description: `caller, ${samples.length} samples`,
        };
  const compression: pb.CompressionReport = {
    method: checked.method,
    parameters: result.parameters,
    sizeBeforeBytes: BigInt(result.sizeBefore),
    sizeAfterBytes: BigInt(result.sizeAfter),
    opsRewritten: opCounts(result.rewritten),
    opsLeft: opCounts(result.left),
    calibration,
    outputs,
    latency,
    measuredOn: measuredOn(),
  };
  yield progress('storing', 0.9);
  const version = await uploadVersion(
    deps,
    uploadRequests(
      {
        model: checked.targetModel ?? ref.model,
        description: req.description,
        tags: {},
        expectedSha256: '',
        expectedSizeBytes: BigInt(result.model.length),
        lineage: {
          origin: {
            $case: 'parent',
            value: { model: ref.model, version: number, transform: checked.method, transformParams: result.parameters },
          },
        },
        createModel: true,
      },
      result.model,
    ),
    ctx,
    { compression, ...(checked.alias === undefined ? {} : { alias: checked.alias }) },
  );
  yield progress('storing', 1);
  yield { event: { $case: 'version', value: version } };
}
