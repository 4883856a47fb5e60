// KServe v2 REST JSON <-> the core's requests and results, and Triton's JSON forms of statistics,
// metadata and the repository index.
import { invalidArgument } from '@quanta/service-kit';
import { tensorFromJson, tensorToJson, type JsonTensor, type Tensor } from '@quanta/tensor';
import type { DurationStat, InferRequest, InferResult, ModelStats, RepositoryEntry, TensorSpec } from '../core/types.js';
import type { ModelMetadata } from '../server/inference-api.js';
import { earliest, readControls, type ParameterValue } from '../server/parameters.js';

type JsonObject = Record<string, unknown>;

const isObject = (value: unknown): value is JsonObject => typeof value === 'object' && value !== null && !Array.isArray(value);

function parameterMap(value: unknown, where: string): Map<string, ParameterValue> {
  const map = new Map<string, ParameterValue>();
  if (value === undefined) return map;
  if (!isObject(value)) throw invalidArgument(`${where} must be a JSON object`);
  for (const [key, v] of Object.entries(value)) {
    if (typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') map.set(key, v);
    else throw invalidArgument(`${where}.${key} must be a bool, a number or a string`);
  }
  return map;
}

/** Reads `{id, parameters, inputs: [{name, shape, datatype, data}], outputs: [{name, parameters}]}`. */
export function decodeJsonInfer(body: unknown, signal: AbortSignal): InferRequest {
  if (!isObject(body)) throw invalidArgument('the request body must be a JSON object {"inputs": [...]}');
  const { id, inputs, outputs, parameters } = body;
  if (id !== undefined && typeof id !== 'string') throw invalidArgument('"id" must be a string');
  if (!Array.isArray(inputs)) throw invalidArgument('"inputs" must be an array of tensors {name, shape, datatype, data}');
  const tensors = new Map<string, Tensor>();
  inputs.forEach((input: unknown, index) => {
    const name = isObject(input) ? input['name'] : undefined;
    if (typeof name !== 'string') throw invalidArgument(`inputs[${index}] has no "name" string`);
    if (tensors.has(name)) throw invalidArgument(`input ${JSON.stringify(name)} is given twice`);
    tensors.set(name, tensorFromJson(input, { name, role: 'input' }));
  });
  let names: string[] = [];
  if (outputs !== undefined) {
    if (!Array.isArray(outputs)) throw invalidArgument('"outputs" must be an array of {name}');
    names = outputs.map((output: unknown, index) => {
      const name = isObject(output) ? output['name'] : undefined;
      if (typeof name !== 'string') throw invalidArgument(`outputs[${index}] has no "name" string`);
      return name;
    });
  }
  const controls = readControls(parameterMap(parameters, 'parameters'));
  const deadline = earliest(undefined, controls.deadline);
  return {
    id: id ?? '',
    inputs: tensors,
    ...(names.length === 0 ? {} : { outputs: names }),
    ...(controls.sequence === undefined ? {} : { sequence: controls.sequence }),
    ...(deadline === undefined ? {} : { deadline }),
    signal,
  };
}

/** JSON has no NaN or Infinity: those floats go as the strings tensorFromJson reads back. */
function jsonSafe(tensor: JsonTensor): JsonTensor {
  if (!tensor.data.some((v) => typeof v === 'number' && !Number.isFinite(v))) return tensor;
  return { ...tensor, data: tensor.data.map((v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)) };
}

export function encodeJsonInfer(result: InferResult): JsonObject {
  return {
    model_name: result.model,
    model_version: result.version,
    id: result.id,
    parameters: {},
    outputs: result.outputs.map((t) => jsonSafe(tensorToJson(t, { name: t.name, role: 'output' }))),
  };
}

const tensorMetadata = (spec: TensorSpec): JsonObject => ({ name: spec.name, datatype: spec.datatype, shape: spec.shape ?? [-1] });

export function encodeJsonMetadata(metadata: ModelMetadata): JsonObject {
  return {
    name: metadata.name,
    versions: metadata.versions,
    platform: metadata.platform,
    inputs: metadata.inputs.map(tensorMetadata),
    outputs: metadata.outputs.map(tensorMetadata),
  };
}

const duration = (d: DurationStat): JsonObject => ({ count: Number(d.count), ns: Number(d.ns) });

/** Triton's JSON statistics of one model version (counts and nanoseconds as JSON numbers). */
export function encodeJsonStats(stats: ModelStats): JsonObject {
  return {
    name: stats.name,
    version: stats.version,
    last_inference: stats.lastInference,
    inference_count: Number(stats.inferenceCount),
    execution_count: Number(stats.executionCount),
    inference_stats: {
      success: duration(stats.success),
      fail: duration(stats.fail),
      queue: duration(stats.queue),
      compute_input: duration(stats.computeInput),
      compute_infer: duration(stats.computeInfer),
      compute_output: duration(stats.computeOutput),
      cache_hit: { count: 0, ns: 0 },
      cache_miss: { count: 0, ns: 0 },
    },
    batch_stats: stats.batches.map((b) => ({
      batch_size: b.batchSize,
      compute_input: duration(b.computeInput),
      compute_infer: duration(b.computeInfer),
      compute_output: duration(b.computeOutput),
    })),
    memory_usage: [],
  };
}

export function encodeJsonIndex(entries: readonly RepositoryEntry[]): JsonObject[] {
  return entries.map((e) => ({ name: e.name, version: e.version, state: e.state, reason: e.reason }));
}

/** `{"ready": bool}` of POST /v2/repository/index (Triton); an empty body is `{}`. */
export function decodeIndexRequest(body: unknown): boolean {
  if (body === undefined) return false;
  if (!isObject(body)) throw invalidArgument('the request body must be a JSON object {"ready": bool}');
  const ready = body['ready'];
  if (ready !== undefined && typeof ready !== 'boolean') throw invalidArgument('"ready" must be a bool');
  return ready === true;
}

/** `{"parameters": {...}}` of load/unload, as strings for the loader. */
export function decodeRepositoryParameters(body: unknown): Record<string, string> {
  if (body === undefined) return {};
  if (!isObject(body)) throw invalidArgument('the request body must be a JSON object {"parameters": {...}}');
  const out: Record<string, string> = {};
  for (const [key, value] of parameterMap(body['parameters'], 'parameters')) out[key] = String(value);
  return out;
}
