import type { inference } from '@quanta/contracts';
import {
  bfloat16BitsToNumber,
  createTensor,
  float16BitsToNumber,
  numberToBfloat16Bits,
  numberToFloat16Bits,
  TensorError,
  tensorFromWire,
  tensorToWire,
  type Datatype,
  type Tensor,
  type TensorDataMap,
} from '@quanta/tensor/core';

/** Element data as a caller has it: a typed array, or a plain array of numbers, bigints, booleans or strings. */
export type TensorData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigUint64Array
  | readonly number[]
  | readonly bigint[]
  | readonly boolean[]
  | readonly (string | Uint8Array)[];

export interface InputSpec {
  /** The input's name, as the model's metadata gives it. */
  readonly name: string;
  /** Row-major elements. */
  readonly data: TensorData;
  /** Default `[data.length]`. */
  readonly shape?: readonly number[];
  /**
   * Default from the data: FP32 for plain numbers, INT64 for bigints, BOOL for booleans, BYTES for
   * strings, and the typed array's own type (give it for FP16/BF16 bits in a Uint16Array).
   */
  readonly datatype?: Datatype;
}

const TYPED_DATATYPE: ReadonlyArray<[new (...args: never[]) => unknown, Datatype]> = [
  [Float32Array, 'FP32'],
  [Float64Array, 'FP64'],
  [Int8Array, 'INT8'],
  [Int16Array, 'INT16'],
  [Int32Array, 'INT32'],
  [BigInt64Array, 'INT64'],
  [Uint8Array, 'UINT8'],
  [Uint16Array, 'UINT16'],
  [Uint32Array, 'UINT32'],
  [BigUint64Array, 'UINT64'],
];

function guessDatatype(data: TensorData): Datatype {
  for (const [Ctor, datatype] of TYPED_DATATYPE) if (data instanceof Ctor) return datatype;
  const first = (data as readonly unknown[])[0];
  if (typeof first === 'bigint') return 'INT64';
  if (typeof first === 'boolean') return 'BOOL';
  if (typeof first === 'string' || first instanceof Uint8Array) return 'BYTES';
  return 'FP32';
}

const plain = (data: TensorData): readonly unknown[] => Array.from(data as ArrayLike<unknown>);
const asNumber = (v: unknown): number =>
  typeof v === 'bigint' ? Number(v) : typeof v === 'boolean' ? Number(v) : (v as number);
const asBigint = (v: unknown): bigint => (typeof v === 'bigint' ? v : BigInt(asNumber(v)));

/**
 * The typed array `datatype` keeps its elements in, converting plain values (typed arrays of the
 * right type are kept, not copied).
 */
function dataFor(datatype: Datatype, data: TensorData): TensorDataMap[Datatype] {
  if (datatype === 'BYTES') return plain(data).map((v) => (v instanceof Uint8Array ? v : Buffer.from(String(v))));
  const same = TYPED_DATATYPE.find(([, d]) => d === datatype)?.[0];
  if (same !== undefined && data instanceof same && datatype !== 'UINT8') return data as TensorDataMap[Datatype];
  const values = plain(data);
  switch (datatype) {
    case 'BOOL':
      return Uint8Array.from(values, (v) => (v === true || (typeof v !== 'boolean' && asNumber(v) !== 0) ? 1 : 0));
    case 'UINT8':
      return data instanceof Uint8Array ? data : Uint8Array.from(values, asNumber);
    case 'FP16':
      return data instanceof Uint16Array ? data : Uint16Array.from(values, (v) => numberToFloat16Bits(asNumber(v)));
    case 'BF16':
      return data instanceof Uint16Array ? data : Uint16Array.from(values, (v) => numberToBfloat16Bits(asNumber(v)));
    case 'INT64':
      return BigInt64Array.from(values, asBigint);
    case 'UINT64':
      return BigUint64Array.from(values, asBigint);
    case 'FP32':
      return Float32Array.from(values, asNumber);
    case 'FP64':
      return Float64Array.from(values, asNumber);
    case 'INT8':
      return Int8Array.from(values, asNumber);
    case 'INT16':
      return Int16Array.from(values, asNumber);
    case 'INT32':
      return Int32Array.from(values, asNumber);
    case 'UINT16':
      return Uint16Array.from(values, asNumber);
    case 'UINT32':
      return Uint32Array.from(values, asNumber);
  }
}

/** A checked tensor (shape and element count agree) from an input spec. */
export function toTensor(spec: InputSpec): Tensor {
  const datatype = spec.datatype ?? guessDatatype(spec.data);
  const shape = spec.shape ?? [(spec.data as ArrayLike<unknown>).length];
  return createTensor(datatype, shape, dataFor(datatype, spec.data) as never, { name: spec.name, role: 'input' });
}

export interface InferRequestOptions {
  /** Default: the latest version the server serves. */
  readonly version?: string;
  readonly id?: string;
  /** Outputs to return; default all. */
  readonly outputs?: readonly string[];
  /** Send the data as raw_input_contents (default; no per-element protobuf encoding) or as typed contents. */
  readonly raw?: boolean;
  readonly parameters?: Readonly<Record<string, inference.InferParameter>>;
}

/** A complete ModelInferRequest for `model` from plain inputs. */
export function inferRequest(
  model: string,
  inputs: readonly InputSpec[],
  options: InferRequestOptions = {},
): inference.ModelInferRequest {
  const tensors = inputs.map(toTensor);
  // KServe: raw_input_contents holds every input or none, and FP16/BF16 only travel raw.
  const raw = options.raw !== false || tensors.some((t) => t.datatype === 'FP16' || t.datatype === 'BF16');
  const wires = tensors.map((t) => tensorToWire(t, { raw, role: 'input' }));
  return {
    modelName: model,
    modelVersion: options.version ?? '',
    id: options.id ?? '',
    parameters: { ...options.parameters },
    inputs: wires.map(({ wire }) => ({
      name: wire.name,
      datatype: wire.datatype,
      shape: wire.shape,
      parameters: {},
      contents: wire.contents,
    })),
    outputs: (options.outputs ?? []).map((name) => ({ name, parameters: {} })),
    rawInputContents: raw ? wires.map(({ raw: bytes }) => bytes ?? Buffer.alloc(0)) : [],
  };
}

/** Every output of a ModelInfer response as a tensor, by name (typed contents or raw_output_contents). */
export function outputTensors(response: inference.ModelInferResponse): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  response.outputs.forEach((output, i) => {
    const raw = response.rawOutputContents.length > 0 ? response.rawOutputContents[i] : undefined;
    out.set(output.name, { ...tensorFromWire(output, raw, 'output'), name: output.name });
  });
  return out;
}

/** One output by name; throws naming the outputs there are when it is missing. */
export function outputTensor(response: inference.ModelInferResponse, name: string): Tensor {
  const tensor = outputTensors(response).get(name);
  if (tensor === undefined) {
    const have = response.outputs.map((o) => `"${o.name}"`).join(', ') || 'no outputs';
    throw new TensorError(`output "${name}" is not in the response; it has ${have}`, 'contents', name);
  }
  return tensor;
}

/** A numeric tensor's elements as plain numbers (FP16/BF16 decoded, 64-bit integers rounded to doubles). */
export function tensorValues(tensor: Tensor): number[] {
  switch (tensor.datatype) {
    case 'BYTES':
      throw new TensorError('BYTES elements are not numbers; read tensor.data', 'datatype', tensor.name);
    case 'FP16':
      return Array.from(tensor.data, float16BitsToNumber);
    case 'BF16':
      return Array.from(tensor.data, bfloat16BitsToNumber);
    case 'INT64':
    case 'UINT64':
      return Array.from(tensor.data, Number);
    default:
      return Array.from(tensor.data);
  }
}
