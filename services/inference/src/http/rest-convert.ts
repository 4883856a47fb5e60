// KServe v2 REST JSON <-> the core's requests and results, and Triton's JSON forms of statistics,
// metadata and the repository index.
import { inferenceConfig as tc } from '@quanta/contracts';
import { invalidArgument } from '@quanta/service-kit';
import {
  tensorFromJson,
  tensorFromWire,
  tensorToJson,
  tensorToRaw,
  type JsonTensor,
  type Tensor,
} from '@quanta/tensor';
import type {
  CancelSignal,
  DurationStat,
  InferRequest,
  InferResult,
  ModelStats,
  RepositoryEntry,
  TensorSpec,
} from '../core/types.js';
import type { ModelMetadata } from '../server/inference-api.js';
import { readControls, type ParameterValue } from '../server/parameters.js';

type JsonObject = Record<string, unknown>;

const isObject = (value: unknown): value is JsonObject =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

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

/** An infer body: the JSON, and the bytes after it (Triton's binary tensor extension). */
export interface InferBody {
  readonly json: unknown;
  readonly binary: Buffer;
}

/** What the response should look like: which outputs go as binary after the JSON. */
export interface DecodedJsonInfer {
  readonly request: InferRequest;
  /** Output names sent as binary data, or true for every output. */
  readonly binaryOutputs: ReadonlySet<string> | true;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** JSON text must be UTF-8 (RFC 8259): bytes that are not are refused, never replaced by U+FFFD. */
export function parseJson(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw invalidArgument('the request body is not valid UTF-8 JSON');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error: unknown) {
    throw invalidArgument(`the request body is not valid JSON: ${(error as Error).message}`);
  }
}

/**
 * Splits a body into its JSON and its binary part: with `Inference-Header-Content-Length: n`
 * (Triton's binary tensor data extension) the first n bytes are the JSON and the rest holds the
 * tensors whose `parameters.binary_data_size` says so, in input order.
 */
export function splitInferBody(body: Buffer | undefined, headerLength: string | undefined): InferBody {
  const bytes = body ?? Buffer.alloc(0);
  if (headerLength === undefined)
    return { json: bytes.length === 0 ? undefined : parseJson(bytes), binary: Buffer.alloc(0) };
  const n = Number(headerLength);
  if (!/^\d+$/.test(headerLength) || n > bytes.length) {
    throw invalidArgument(
      `Inference-Header-Content-Length is "${headerLength}", but the body has ${bytes.length} bytes`,
    );
  }
  return { json: parseJson(bytes.subarray(0, n)), binary: bytes.subarray(n) };
}

function binarySize(tensor: JsonObject, label: string): number | undefined {
  const parameters = tensor['parameters'];
  if (parameters === undefined) return undefined;
  if (!isObject(parameters)) throw invalidArgument(`${label}: "parameters" must be a JSON object`);
  const size = parameters['binary_data_size'];
  if (size === undefined) return undefined;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw invalidArgument(`${label}: parameter "binary_data_size" must be a non-negative integer`);
  }
  return size;
}

/** One input: JSON `data`, or `binary_data_size` bytes of the binary part taken from `offset`. */
function readInput(input: JsonObject, name: string, binary: Buffer, offset: number): { tensor: Tensor; used: number } {
  const label = `input ${JSON.stringify(name)}`;
  const size = binarySize(input, label);
  if (size === undefined) return { tensor: tensorFromJson(input, { name, role: 'input' }), used: 0 };
  if (input['data'] !== undefined) throw invalidArgument(`${label} has both "data" and binary data; send one`);
  if (offset + size > binary.length) {
    throw invalidArgument(
      `${label}: binary_data_size is ${size}, but only ${binary.length - offset} bytes of binary data are left`,
    );
  }
  const { datatype, shape } = input;
  if (typeof datatype !== 'string') throw invalidArgument(`${label}: datatype must be a string`);
  if (!Array.isArray(shape) || !shape.every((d): d is number => typeof d === 'number'))
    throw invalidArgument(`${label}: shape must be an array of numbers`);
  const raw = binary.subarray(offset, offset + size);
  return { tensor: tensorFromWire({ name, datatype, shape }, raw, 'input'), used: size };
}

/**
 * Reads `{id, parameters, inputs: [{name, shape, datatype, data}], outputs: [{name, parameters}]}`
 * (and binary tensors).
 */
export function decodeJsonInfer(body: InferBody, signal: CancelSignal): DecodedJsonInfer {
  const { json, binary } = body;
  if (!isObject(json)) throw invalidArgument('the request body must be a JSON object {"inputs": [...]}');
  const { id, inputs, outputs, parameters } = json;
  if (id !== undefined && typeof id !== 'string') throw invalidArgument('"id" must be a string');
  if (!Array.isArray(inputs))
    throw invalidArgument('"inputs" must be an array of tensors {name, shape, datatype, data}');
  const tensors = new Map<string, Tensor>();
  let offset = 0;
  inputs.forEach((input: unknown, index) => {
    const name = isObject(input) ? input['name'] : undefined;
    if (typeof name !== 'string') throw invalidArgument(`inputs[${index}] has no "name" string`);
    if (tensors.has(name)) throw invalidArgument(`input ${JSON.stringify(name)} is given twice`);
    const { tensor, used } = readInput(input as JsonObject, name, binary, offset);
    tensors.set(name, tensor);
    offset += used;
  });
  if (offset !== binary.length)
    throw invalidArgument(`${binary.length - offset} bytes of binary data follow the inputs' binary_data_size`);
  const names: string[] = [];
  const binaryOutputs = new Set<string>();
  if (outputs !== undefined) {
    if (!Array.isArray(outputs)) throw invalidArgument('"outputs" must be an array of {name}');
    outputs.forEach((output: unknown, index) => {
      const name = isObject(output) ? output['name'] : undefined;
      if (typeof name !== 'string') throw invalidArgument(`outputs[${index}] has no "name" string`);
      const wanted = parameterMap((output as JsonObject)['parameters'], `outputs[${index}].parameters`).get(
        'binary_data',
      );
      if (wanted === true) binaryOutputs.add(name);
      names.push(name);
    });
  }
  const parameterValues = parameterMap(parameters, 'parameters');
  const controls = readControls(parameterValues);
  return {
    request: {
      id: id ?? '',
      inputs: tensors,
      ...(names.length === 0 ? {} : { outputs: names }),
      ...controls,
      signal,
    },
    binaryOutputs: parameterValues.get('binary_data_output') === true ? true : binaryOutputs,
  };
}

/** JSON has no NaN or Infinity: those floats go as the strings tensorFromJson reads back. */
function jsonSafe(tensor: JsonTensor): JsonTensor {
  if (!tensor.data.some((v) => typeof v === 'number' && !Number.isFinite(v))) return tensor;
  return { ...tensor, data: tensor.data.map((v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)) };
}

/** The response JSON, and the binary outputs to send after it (in output order). */
export function encodeJsonInfer(
  result: InferResult,
  binaryOutputs: ReadonlySet<string> | true = new Set(),
): { json: JsonObject; binary: Buffer[] } {
  const binary: Buffer[] = [];
  const outputs = result.outputs.map((t): JsonObject => {
    const name = t.name ?? '';
    if (binaryOutputs === true || binaryOutputs.has(name)) {
      const bytes = tensorToRaw(t);
      binary.push(bytes);
      return { name, datatype: t.datatype, shape: [...t.shape], parameters: { binary_data_size: bytes.length } };
    }
    return { ...jsonSafe(tensorToJson(t, { name, role: 'output' })) };
  });
  return {
    json: { model_name: result.model, model_version: result.version, id: result.id, parameters: {}, outputs },
    binary,
  };
}

const tensorMetadata = (spec: TensorSpec): JsonObject => ({
  name: spec.name,
  datatype: spec.datatype,
  shape: spec.shape ?? [-1],
});

export function encodeJsonMetadata(metadata: ModelMetadata): JsonObject {
  return {
    name: metadata.name,
    versions: metadata.versions,
    platform: metadata.platform,
    inputs: metadata.inputs.map(tensorMetadata),
    outputs: metadata.outputs.map(tensorMetadata),
  };
}

const num = (values: readonly bigint[]): number[] => values.map(Number);

function queuePolicyJson(policy: tc.ModelQueuePolicy): JsonObject {
  return {
    timeout_action: tc.modelQueuePolicy_TimeoutActionToJSON(policy.timeoutAction),
    default_timeout_microseconds: Number(policy.defaultTimeoutMicroseconds),
    allow_timeout_override: policy.allowTimeoutOverride,
    max_queue_size: policy.maxQueueSize,
  };
}

function schedulingJson(choice: tc.ModelConfig['schedulingChoice']): JsonObject {
  if (choice === undefined) return {};
  if (choice.$case === 'dynamicBatching') {
    const d = choice.value;
    return {
      dynamic_batching: {
        preferred_batch_size: d.preferredBatchSize,
        max_queue_delay_microseconds: Number(d.maxQueueDelayMicroseconds),
        preserve_ordering: d.preserveOrdering,
        priority_levels: Number(d.priorityLevels),
        default_priority_level: Number(d.defaultPriorityLevel),
        ...(d.defaultQueuePolicy === undefined ? {} : { default_queue_policy: queuePolicyJson(d.defaultQueuePolicy) }),
        priority_queue_policy: Object.fromEntries(
          [...d.priorityQueuePolicy].map(([level, policy]) => [String(level), queuePolicyJson(policy)]),
        ),
      },
    };
  }
  const q = choice.value;
  const strategy = q.strategyChoice;
  return {
    sequence_batching: {
      ...(strategy?.$case === 'direct'
        ? {
            direct: {
              max_queue_delay_microseconds: Number(strategy.value.maxQueueDelayMicroseconds),
              minimum_slot_utilization: strategy.value.minimumSlotUtilization,
            },
          }
        : {}),
      max_sequence_idle_microseconds: Number(q.maxSequenceIdleMicroseconds),
      control_input: [],
      state: q.state.map((st) => ({
        input_name: st.inputName,
        output_name: st.outputName,
        data_type: tc.dataTypeToJSON(st.dataType),
        dims: num(st.dims),
        initial_state: st.initialState.map((init) => ({
          data_type: tc.dataTypeToJSON(init.dataType),
          dims: num(init.dims),
          ...(init.stateData?.$case === 'zeroData' ? { zero_data: init.stateData.value } : {}),
          ...(init.stateData?.$case === 'dataFile' ? { data_file: init.stateData.value } : {}),
          name: init.name,
        })),
      })),
    },
  };
}

/**
 * Triton's JSON form of a model configuration: the protobuf JSON mapping with the proto field
 * names, every scalar field printed (defaults too), enums by name and 64-bit integers as JSON
 * numbers, as Triton's GET .../config answers.
 */
export function encodeJsonModelConfig(config: tc.ModelConfig): JsonObject {
  const policy = config.versionPolicy?.policyChoice;
  return {
    name: config.name,
    platform: config.platform,
    backend: config.backend,
    runtime: config.runtime,
    ...(policy?.$case === 'latest' ? { version_policy: { latest: { num_versions: policy.value.numVersions } } } : {}),
    max_batch_size: config.maxBatchSize,
    input: config.input.map((i) => ({
      name: i.name,
      data_type: tc.dataTypeToJSON(i.dataType),
      format: tc.modelInput_FormatToJSON(i.format),
      dims: num(i.dims),
      is_shape_tensor: false,
      allow_ragged_batch: i.allowRaggedBatch,
      optional: i.optional,
      is_non_linear_format_io: false,
    })),
    output: config.output.map((o) => ({
      name: o.name,
      data_type: tc.dataTypeToJSON(o.dataType),
      dims: num(o.dims),
      label_filename: o.labelFilename,
      is_shape_tensor: false,
      is_non_linear_format_io: false,
    })),
    batch_input: [],
    batch_output: [],
    ...schedulingJson(config.schedulingChoice),
    instance_group: config.instanceGroup.map((g) => ({
      name: g.name,
      kind: tc.modelInstanceGroup_KindToJSON(g.kind),
      count: g.count,
      gpus: g.gpus,
      secondary_devices: [],
      profile: [],
      passive: false,
      host_policy: '',
    })),
    default_model_filename: config.defaultModelFilename,
    cc_model_filenames: {},
    metric_tags: {},
    parameters: Object.fromEntries(
      Object.entries(config.parameters).map(([key, p]) => [key, { string_value: p.stringValue }]),
    ),
    model_warmup: [],
    ...(config.responseCache === undefined ? {} : { response_cache: { enable: config.responseCache.enable } }),
    ...(config.modelTransactionPolicy === undefined
      ? {}
      : { model_transaction_policy: { decoupled: config.modelTransactionPolicy.decoupled } }),
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
      cache_hit: duration(stats.cacheHit),
      cache_miss: duration(stats.cacheMiss),
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
