// Property-based round trips for every datatype: values -> Tensor -> raw -> Tensor -> typed
// contents -> Tensor -> ort.Tensor -> Tensor -> JSON -> Tensor. Expected raw bytes come from an
// independent DataView encoder (testing/arbitraries.ts), not from the library's own views.
import fc from 'fast-check';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { CONTENTS_FIELD, tensorFromContents, tensorToContents } from './contents.js';
import { DATATYPES, type Datatype } from './datatype.js';
import { TensorError } from './errors.js';
import { tensorFromJson, tensorToJson } from './json.js';
import { tensorFromOrt, tensorToOrt } from './ort.js';
import { tensorFromRaw, tensorToRaw } from './raw.js';
import { createTensor, type Tensor, type TensorDataMap } from './tensor.js';
import { caseArb, countOf, framedBytes, leBytes, type ElementOf } from './testing/arbitraries.js';

// Written out here rather than imported, so a wrong entry in ort.ts cannot agree with itself.
const EXPECTED_ORT_TYPE: Record<Datatype, string | undefined> = {
  BOOL: 'bool',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  BF16: undefined,
  FP32: 'float32',
  FP64: 'float64',
  BYTES: 'string',
};

function makeData(datatype: Datatype, values: readonly unknown[]): TensorDataMap[Datatype] {
  const nums = values as number[];
  switch (datatype) {
    case 'BOOL':
      return Uint8Array.from(values as boolean[], (b) => (b ? 1 : 0));
    case 'UINT8':
      return Uint8Array.from(nums);
    case 'INT8':
      return Int8Array.from(nums);
    case 'UINT16':
    case 'FP16':
    case 'BF16':
      return Uint16Array.from(nums);
    case 'INT16':
      return Int16Array.from(nums);
    case 'UINT32':
      return Uint32Array.from(nums);
    case 'INT32':
      return Int32Array.from(nums);
    case 'FP32':
      return Float32Array.from(nums);
    case 'FP64':
      return Float64Array.from(nums);
    case 'UINT64':
      return BigUint64Array.from(values as bigint[]);
    case 'INT64':
      return BigInt64Array.from(values as bigint[]);
    case 'BYTES':
      return (values as Uint8Array[]).map((v) => Buffer.from(v));
  }
}

function expectedRaw(datatype: Datatype, values: readonly unknown[]): Buffer {
  return datatype === 'BYTES'
    ? framedBytes(values as Uint8Array[])
    : leBytes(datatype, values as (number | bigint | boolean)[]);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
function isUtf8(bytes: Uint8Array): boolean {
  try {
    utf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

function isHalfNaN(datatype: 'FP16' | 'BF16', bits: number): boolean {
  const [expMask, mantMask] = datatype === 'FP16' ? [0x7c00, 0x03ff] : [0x7f80, 0x007f];
  return (bits & expMask) === expMask && (bits & mantMask) !== 0;
}

/** A copy of `bytes` placed `offset` bytes into a fresh buffer: any offset, aligned or not. */
function at(bytes: Uint8Array, offset: number): Uint8Array {
  const backing = new Uint8Array(offset + bytes.length);
  backing.set(bytes, offset);
  return backing.subarray(offset);
}

function roundTrip<D extends Datatype>(datatype: D, shape: number[], values: ElementOf<D>[], offset = 0): void {
  const context = { name: 'x', role: 'input' as const };
  const expected = expectedRaw(datatype, values);
  const tensor = createTensor<Datatype>(datatype, shape, makeData(datatype, values), context);
  expect(tensor).toMatchObject({ name: 'x', datatype, shape });

  // raw: bytes equal the independent encoding; read back from a fresh copy
  expect(tensorToRaw(tensor).equals(expected)).toBe(true);
  const fromRaw = tensorFromRaw(datatype, shape, at(expected, offset), context);
  expect(tensorToRaw(fromRaw).equals(expected)).toBe(true);

  // typed contents: only the datatype's field is filled, with the plain values
  const field = CONTENTS_FIELD[datatype];
  if (field === undefined) {
    expect(() => tensorToContents(fromRaw)).toThrow(TensorError);
  } else {
    const contents = tensorToContents(fromRaw);
    for (const [key, list] of Object.entries(contents)) expect(list.length).toBe(key === field ? values.length : 0);
    const plain = datatype === 'BYTES' ? (values as Uint8Array[]).map((v) => Buffer.from(v)) : values;
    expect(contents[field]).toEqual(plain);
    const fromContents = tensorFromContents(datatype, shape, contents, context);
    expect(tensorToRaw(fromContents).equals(expected)).toBe(true);
  }

  // onnxruntime-node: a real ort.Tensor of the right type and dims, and back
  const ortType = EXPECTED_ORT_TYPE[datatype];
  if (ortType === undefined) {
    expect(() => tensorToOrt(fromRaw)).toThrow(TensorError);
  } else if (datatype === 'BYTES' && !(values as Uint8Array[]).every(isUtf8)) {
    expect(() => tensorToOrt(fromRaw)).toThrow(/is not valid UTF-8/);
  } else {
    const o = tensorToOrt(fromRaw);
    expect(o).toBeInstanceOf(ort.Tensor);
    expect(o.type).toBe(ortType);
    expect(o.dims).toEqual(shape);
    expect(o.size).toBe(countOf(shape));
    const fromOrt = tensorFromOrt(o, context);
    expect(fromOrt.datatype).toBe(datatype);
    expect(tensorToRaw(fromOrt).equals(expected)).toBe(true);
  }

  // KServe REST JSON (as an object: NaN has no JSON text form; the json tests cover the text)
  if (datatype === 'BYTES' && !(values as Uint8Array[]).every(isUtf8)) {
    expect(() => tensorToJson(fromRaw)).toThrow(/is not valid UTF-8/);
    return;
  }
  const json = tensorToJson(fromRaw);
  expect(json).toMatchObject({ name: 'x', datatype, shape });
  expect(json.data).toHaveLength(values.length);
  const fromJson = tensorFromJson(json, { role: 'input' });
  if (datatype === 'FP16' || datatype === 'BF16') {
    // numbers carry no NaN payload or sign: every NaN comes back as the canonical quiet NaN
    const quiet = datatype === 'FP16' ? 0x7e00 : 0x7fc0;
    const bits = (values as number[]).map((b) => (isHalfNaN(datatype, b) ? quiet : b));
    expect(Array.from(fromJson.data as Uint16Array)).toEqual(bits);
  } else {
    expect(tensorToRaw(fromJson).equals(expected)).toBe(true);
  }
}

describe('round trips for every datatype (fast-check)', () => {
  it.each(DATATYPES)('%s: values -> raw -> contents -> ort -> json', (datatype) => {
    fc.assert(
      fc.property(caseArb(datatype), fc.integer({ min: 0, max: 15 }), ({ shape, values }, offset) => {
        roundTrip(datatype, shape, values, offset);
      }),
      { numRuns: 150 },
    );
  });

  it('BYTES with valid UTF-8 goes through ORT string tensors unchanged', () => {
    const text = fc.string({ unit: 'binary', maxLength: 6 }).map((s) => new Uint8Array(Buffer.from(s, 'utf8')));
    fc.assert(
      fc.property(caseArb('BYTES', text), ({ shape, values }) => {
        roundTrip('BYTES', shape, values);
      }),
    );
  });
});

describe('datatype examples (written by hand)', () => {
  const cases: [Datatype, unknown[], string][] = [
    ['BOOL', [true, false, true], '010001'],
    ['UINT8', [0, 255], '00ff'],
    ['INT8', [-1, -128, 127], 'ff807f'],
    ['UINT16', [0x1234], '3412'],
    ['INT16', [-2], 'feff'],
    ['UINT32', [0xdeadbeef], 'efbeadde'],
    ['INT32', [-2147483648], '00000080'],
    ['UINT64', [0xffff_ffff_ffff_ffffn], 'ffffffffffffffff'],
    ['INT64', [-(2n ** 63n), 1n], '00000000000000800100000000000000'],
    ['FP16', [0x3c00], '003c'],
    ['BF16', [0x3f80], '803f'],
    ['FP32', [1, -0], '0000803f00000080'],
    ['FP64', [1], '000000000000f03f'],
    ['BYTES', [Buffer.from('ab'), Buffer.alloc(0)], '02000000616200000000'],
  ];
  it.each(cases)('%s %s is %s in raw form', (datatype, values, hex) => {
    const tensor = createTensor<Datatype>(datatype, [values.length], makeData(datatype, values));
    expect(tensorToRaw(tensor).toString('hex')).toBe(hex);
    expect(tensorToRaw(tensorFromRaw(datatype, [values.length], Buffer.from(hex, 'hex'))).toString('hex')).toBe(hex);
  });

  it('a Tensor narrows its data type by datatype', () => {
    const t: Tensor = createTensor('FP32', [2], new Float32Array([1.5, 2]));
    if (t.datatype === 'FP32') expect(t.data[0]! + 1).toBe(2.5);
    else expect.unreachable();
  });
});
