import { INTEGER_RANGE, parseDatatype, type Datatype } from './datatype.js';
import { formatShape, tensorError, type TensorContext } from './errors.js';
import { bfloat16BitsToNumber, float16BitsToNumber, numberToBfloat16Bits, numberToFloat16Bits } from './float16.js';
import { elementCount, parseShape } from './shape.js';
import { allocData, type Tensor } from './tensor.js';

/**
 * The KServe v2 REST form of a tensor, `data` flat in row-major order. FP16/BF16 are numbers,
 * BYTES are UTF-8 strings. INT64/UINT64 values beyond Number.MAX_SAFE_INTEGER are written as
 * decimal strings, because a JSON number would silently round them (and are read back from
 * strings). Floats keep NaN and ±Infinity as JS numbers: how they are spelled in JSON text is the
 * serializer's choice; reading accepts "NaN", "Infinity" and "-Infinity" strings for them.
 */
export interface JsonTensor {
  name?: string;
  datatype: Datatype;
  shape: number[];
  data: (number | boolean | string)[];
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function tensorToJson(tensor: Tensor, context: TensorContext = { name: tensor.name }): JsonTensor {
  const head = {
    ...(tensor.name === undefined ? {} : { name: tensor.name }),
    datatype: tensor.datatype,
    shape: [...tensor.shape],
  };
  switch (tensor.datatype) {
    case 'BOOL':
      return { ...head, data: Array.from(tensor.data, (b) => b !== 0) };
    case 'FP16':
      return { ...head, data: Array.from(tensor.data, float16BitsToNumber) };
    case 'BF16':
      return { ...head, data: Array.from(tensor.data, bfloat16BitsToNumber) };
    case 'INT64':
    case 'UINT64':
      return { ...head, data: Array.from(tensor.data, bigintToJson) };
    case 'BYTES':
      return {
        ...head,
        data: tensor.data.map((element, index) => {
          try {
            return utf8.decode(element);
          } catch {
            throw tensorError(
              context,
              'contents',
              `BYTES element ${index} is not valid UTF-8, so it has no JSON string form`,
            );
          }
        }),
      };
    default:
      return { ...head, data: Array.from(tensor.data) };
  }
}

function bigintToJson(value: bigint): number | string {
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : value.toString();
}

/**
 * Reads a KServe REST tensor (`{name, datatype, shape, data}`); `data` may be flat or nested in
 * row-major order. Every value is checked against the datatype.
 */
export function tensorFromJson(json: unknown, context: TensorContext = {}): Tensor {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw tensorError(context, 'contents', 'a tensor must be a JSON object {name, datatype, shape, data}');
  }
  const object = json as Record<string, unknown>;
  const name = typeof object['name'] === 'string' ? object['name'] : context.name;
  const ctx: TensorContext = { ...context, name };
  if (typeof object['datatype'] !== 'string') throw tensorError(ctx, 'datatype', 'datatype must be a string');
  const datatype = parseDatatype(object['datatype'], ctx);
  const rawShape: unknown = object['shape'];
  if (!Array.isArray(rawShape) || !rawShape.every((d): d is number => typeof d === 'number')) {
    throw tensorError(ctx, 'shape', 'shape must be an array of numbers');
  }
  const shape = parseShape(rawShape, ctx);
  const rawData: unknown = object['data'];
  if (!Array.isArray(rawData)) throw tensorError(ctx, 'contents', 'data must be an array');
  const values: unknown[] = rawData.flat(Infinity);
  const count = elementCount(shape, ctx);
  if (values.length !== count) {
    throw tensorError(ctx, 'size', `shape ${formatShape(shape)} needs ${count} values in data, got ${values.length}`);
  }
  const head = name === undefined ? { datatype, shape } : { name, datatype, shape };
  const bad = (index: number, needs: string): Error =>
    tensorError(ctx, 'contents', `data[${index}] is ${show(values[index])}; ${datatype} needs ${needs}`);

  switch (datatype) {
    case 'BOOL':
      return {
        ...head,
        datatype,
        data: Uint8Array.from(values, (v, i) => {
          if (typeof v !== 'boolean') throw bad(i, 'true or false');
          return v ? 1 : 0;
        }),
      };
    case 'BYTES':
      return {
        ...head,
        datatype,
        data: values.map((v, i) => {
          if (typeof v !== 'string') throw bad(i, 'a string');
          return Buffer.from(v, 'utf8');
        }),
      };
    case 'FP16':
    case 'BF16': {
      const encode = datatype === 'FP16' ? numberToFloat16Bits : numberToBfloat16Bits;
      return { ...head, datatype, data: Uint16Array.from(values, (v, i) => encode(readFloat(v, i, bad))) };
    }
    case 'FP32':
    case 'FP64': {
      const data = allocData(datatype, count);
      values.forEach((v, i) => (data[i] = readFloat(v, i, bad)));
      return { ...head, datatype, data } as Tensor;
    }
    case 'INT64':
    case 'UINT64': {
      const data = allocData(datatype, count);
      values.forEach((v, i) => (data[i] = readInt(v, i, datatype, bad)));
      return { ...head, datatype, data } as Tensor;
    }
    default: {
      const data = allocData(datatype, count);
      values.forEach((v, i) => (data[i] = Number(readInt(v, i, datatype, bad))));
      return { ...head, datatype, data } as Tensor;
    }
  }
}

const FLOAT_WORDS: ReadonlyMap<unknown, number> = new Map([
  ['NaN', NaN],
  ['Infinity', Infinity],
  ['-Infinity', -Infinity],
]);

function readFloat(value: unknown, index: number, bad: (index: number, needs: string) => Error): number {
  if (typeof value === 'number') return value;
  const word = FLOAT_WORDS.get(value);
  if (word === undefined) throw bad(index, 'a number (or "NaN", "Infinity", "-Infinity")');
  return word;
}

function readInt(
  value: unknown,
  index: number,
  datatype: Datatype,
  bad: (index: number, needs: string) => Error,
): bigint {
  const [min, max] = INTEGER_RANGE[datatype] ?? [0n, 0n];
  const needs = `an integer in [${min}, ${max}]`;
  let n: bigint;
  // Integer numbers beyond 2^53 were rounded by the JSON parser already; take them as they are.
  if (typeof value === 'number' && Number.isInteger(value)) n = BigInt(value);
  else if (typeof value === 'bigint') n = value;
  else if (typeof value === 'string' && /^-?\d+$/.test(value) && (datatype === 'INT64' || datatype === 'UINT64'))
    n = BigInt(value);
  else throw bad(index, needs);
  if (n < min || n > max) throw bad(index, needs);
  return n;
}

function show(value: unknown): string {
  if (typeof value === 'bigint') return String(value);
  return JSON.stringify(value) ?? typeof value;
}
