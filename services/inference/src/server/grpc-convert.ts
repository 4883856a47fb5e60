// KServe v2 / Triton gRPC messages <-> the core's requests, results and statistics.
import type { inference as pb } from '@quanta/contracts';
import { invalidArgument } from '@quanta/service-kit';
import { tensorFromWire, tensorToRaw, tensorToWire, type Tensor } from '@quanta/tensor';
import type {
  CancelSignal,
  DurationStat,
  InferRequest,
  InferResult,
  ModelStats,
  RepositoryEntry,
  TensorSpec,
} from '../core/types.js';
import type { ModelMetadata } from './inference-api.js';
import { readControls, type ParameterValue } from './parameters.js';

/** A ModelInferRequest read into the core's terms, plus how the response wants its outputs. */
export interface DecodedInfer {
  readonly name: string;
  readonly version: string;
  readonly request: InferRequest;
  /** Whether the outputs go back in raw_output_contents (all of them: it is positional). */
  readonly raw: boolean;
}

const NO_PARAMETERS: ReadonlyMap<string, ParameterValue> = new Map();

export function parameterMap(
  parameters: { [key: string]: pb.InferParameter } | undefined,
): ReadonlyMap<string, ParameterValue> {
  let map: Map<string, ParameterValue> | undefined;
  // for-in, not Object.entries: no arrays for the (usual) empty map.
  for (const key in parameters) {
    const choice = parameters[key]?.parameterChoice;
    if (choice === undefined) continue;
    map ??= new Map();
    map.set(key, choice.value);
  }
  return map ?? NO_PARAMETERS;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * Reads the inputs (typed `contents` or `raw_input_contents`, one raw entry per input), the
 * requested outputs and the sequence/timeout parameters. Every problem is INVALID_ARGUMENT
 * naming the tensor or parameter.
 */
export function decodeInferRequest(
  message: pb.ModelInferRequest,
  call: { deadline?: Date | undefined; cancellation?: CancelSignal; principal?: { subject: string } | undefined },
): DecodedInfer {
  const raw = message.rawInputContents;
  const usesRaw = raw.length > 0;
  if (usesRaw && raw.length !== message.inputs.length) {
    throw invalidArgument(
      `raw_input_contents has ${raw.length} entries but the request has ${message.inputs.length} inputs; ` +
        'send one raw entry per input, in the same order, or none',
    );
  }
  const inputs = new Map<string, Tensor>();
  for (let index = 0; index < message.inputs.length; index++) {
    const input = message.inputs[index]!;
    if (inputs.has(input.name)) throw invalidArgument(`input ${JSON.stringify(input.name)} is given twice`);
    inputs.set(input.name, tensorFromWire(input, usesRaw ? raw[index] : undefined, 'input'));
  }
  const controls = readControls(parameterMap(message.parameters));
  const deadline = call.deadline?.getTime();
  // Optional fields set only when present (exact optional properties), without spread objects.
  const request: Mutable<InferRequest> = { id: message.id, inputs };
  if (message.outputs.length > 0) request.outputs = message.outputs.map((o) => o.name);
  if (controls.sequence !== undefined) request.sequence = controls.sequence;
  if (controls.timeoutUs !== undefined) request.timeoutUs = controls.timeoutUs;
  if (controls.priority !== undefined) request.priority = controls.priority;
  if (deadline !== undefined) request.deadline = deadline;
  if (call.cancellation !== undefined) request.signal = call.cancellation;
  // The caller within the tenant, for the deployment's caller limits.
  if (call.principal !== undefined) request.caller = call.principal.subject;
  return { name: message.modelName, version: message.modelVersion, request, raw: wantsRaw(message, usesRaw) };
}

/**
 * Raw unless the request used typed inputs; Triton's per-output `binary_data` parameter (bool)
 * overrides that when every requested output agrees, since raw_output_contents is positional and
 * so is all-or-nothing here. FP16/BF16 outputs force raw (they have no typed form).
 */
function wantsRaw(message: pb.ModelInferRequest, usesRaw: boolean): boolean {
  if (message.outputs.length === 0) return usesRaw;
  const asked = message.outputs.map((o) => {
    const choice = o.parameters['binary_data']?.parameterChoice;
    return choice?.$case === 'boolParam' ? choice.value : undefined;
  });
  if (asked.length > 0 && asked.every((a) => a === true)) return true;
  if (asked.length > 0 && asked.every((a) => a === false)) return false;
  return usesRaw;
}

export function encodeInferResponse(result: InferResult, raw: boolean): pb.ModelInferResponse {
  let allRaw = raw;
  for (const t of result.outputs) if (t.datatype === 'FP16' || t.datatype === 'BF16') allRaw = true;
  const outputs: pb.ModelInferResponse_InferOutputTensor[] = [];
  const rawOutputContents: Buffer[] = [];
  for (const tensor of result.outputs) {
    if (allRaw) {
      // The bytes are a view of the output's memory (no copy; BYTES is framed).
      outputs.push({
        name: tensor.name ?? '',
        datatype: tensor.datatype,
        shape: tensor.shape.map(BigInt),
        parameters: {},
        contents: undefined,
      });
      rawOutputContents.push(tensorToRaw(tensor));
      continue;
    }
    const { wire } = tensorToWire(tensor, { raw: false, role: 'output' });
    outputs.push({
      name: wire.name,
      datatype: wire.datatype,
      shape: wire.shape,
      parameters: {},
      contents: wire.contents,
    });
  }
  return {
    modelName: result.model,
    modelVersion: result.version,
    id: result.id,
    parameters: {},
    outputs,
    rawOutputContents,
  };
}

function tensorMetadata(spec: TensorSpec): pb.ModelMetadataResponse_TensorMetadata {
  // A model that declares no shape: Triton shows one dynamic dim.
  return { name: spec.name, datatype: spec.datatype, shape: (spec.shape ?? [-1]).map(BigInt) };
}

export function encodeModelMetadata(metadata: ModelMetadata): pb.ModelMetadataResponse {
  return {
    name: metadata.name,
    versions: metadata.versions,
    platform: metadata.platform,
    inputs: metadata.inputs.map(tensorMetadata),
    outputs: metadata.outputs.map(tensorMetadata),
  };
}

const duration = (d: DurationStat): pb.StatisticDuration => ({ count: d.count, ns: d.ns });

export function encodeModelStatistics(stats: ModelStats): pb.ModelStatistics {
  return {
    name: stats.name,
    version: stats.version,
    lastInference: BigInt(Math.max(0, Math.trunc(stats.lastInference))),
    inferenceCount: stats.inferenceCount,
    executionCount: stats.executionCount,
    inferenceStats: {
      success: duration(stats.success),
      fail: duration(stats.fail),
      queue: duration(stats.queue),
      computeInput: duration(stats.computeInput),
      computeInfer: duration(stats.computeInfer),
      computeOutput: duration(stats.computeOutput),
      cacheHit: duration(stats.cacheHit),
      cacheMiss: duration(stats.cacheMiss),
    },
    batchStats: stats.batches.map((b) => ({
      batchSize: BigInt(b.batchSize),
      computeInput: duration(b.computeInput),
      computeInfer: duration(b.computeInfer),
      computeOutput: duration(b.computeOutput),
    })),
    memoryUsage: [],
  };
}

export function encodeIndexEntry(entry: RepositoryEntry): pb.RepositoryIndexResponse_ModelIndex {
  return { name: entry.name, version: entry.version, state: entry.state, reason: entry.reason };
}

/** Repository parameters as strings for the loader: bool and int64 spelled out, bytes as base64. */
export function repositoryParameters(parameters: {
  [key: string]: pb.ModelRepositoryParameter;
}): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, parameter] of Object.entries(parameters)) {
    const choice = parameter.parameterChoice;
    if (choice === undefined) continue;
    out[key] = choice.$case === 'bytesParam' ? choice.value.toString('base64') : String(choice.value);
  }
  return out;
}
