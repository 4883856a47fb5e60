// Every validation message, word for word: these are what a KServe client sees in INVALID_ARGUMENT.
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { emptyContents, tensorFromContents, tensorToContents, type TensorContents } from './contents.js';
import { parseDatatype, type Datatype } from './datatype.js';
import { TensorError, type TensorProblem } from './errors.js';
import { tensorFromJson } from './json.js';
import { tensorFromOrt, tensorToOrt } from './ort.js';
import { tensorFromRaw } from './raw.js';
import { elementCount, parseShape } from './shape.js';
import { createTensor, type Tensor } from './tensor.js';

const x = { name: 'x', role: 'input' as const };

function expectError(fn: () => unknown, message: string, problem: TensorProblem, tensorName?: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(TensorError);
  const error = caught as TensorError;
  expect(error.message).toBe(message);
  expect(error.problem).toBe(problem);
  expect(error.tensorName).toBe(tensorName);
  expect(error.name).toBe('TensorError');
}

function contents(patch: Partial<TensorContents>): TensorContents {
  return { ...emptyContents(), ...patch };
}

describe('naming the tensor', () => {
  it('says input, output or tensor, with the name quoted', () => {
    expectError(
      () => parseDatatype('F32', x),
      'input "x": unknown datatype "F32"; expected one of ' +
        'BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, BF16, FP32, FP64, BYTES',
      'datatype',
      'x',
    );
    expectError(
      () => elementCount([-1], { name: 'y', role: 'output' }),
      'output "y": shape [-1]: dim 0 (-1) is negative',
      'shape',
      'y',
    );
    expectError(
      () => elementCount([-1], { name: 'a"b' }),
      'tensor "a\\"b": shape [-1]: dim 0 (-1) is negative',
      'shape',
      'a"b',
    );
    expectError(() => elementCount([-1]), 'tensor: shape [-1]: dim 0 (-1) is negative', 'shape');
  });
});

describe('shapes', () => {
  it('rejects negative, non-integer and too large dims', () => {
    expectError(() => parseShape([2n, -1n], x), 'input "x": shape [2,-1]: dim 1 (-1) is negative', 'shape', 'x');
    expectError(() => parseShape([1.5], x), 'input "x": shape [1.5]: dim 0 (1.5) is not an integer', 'shape', 'x');
    expectError(() => parseShape([NaN], x), 'input "x": shape [NaN]: dim 0 (NaN) is not an integer', 'shape', 'x');
    expectError(
      () => parseShape([2n ** 53n], x),
      'input "x": shape [9007199254740992]: dim 0 (9007199254740992) is larger than Number.MAX_SAFE_INTEGER',
      'shape',
      'x',
    );
    expectError(
      () => parseShape([2 ** 53], x),
      'input "x": shape [9007199254740992]: dim 0 (9007199254740992) is larger than Number.MAX_SAFE_INTEGER',
      'shape',
      'x',
    );
  });

  it('rejects a product beyond Number.MAX_SAFE_INTEGER', () => {
    expectError(
      () => parseShape([2n ** 32n, 2n ** 21n], x),
      'input "x": shape [4294967296,2097152] has more than Number.MAX_SAFE_INTEGER (9007199254740991) elements',
      'shape',
      'x',
    );
    expect(parseShape([2n ** 32n, 2n ** 20n], x)).toEqual([2 ** 32, 2 ** 20]); // 2^52 fits
  });

  it('counts a zero dim as zero elements however large the others are', () => {
    const big = Array.from({ length: 30 }, () => Number.MAX_SAFE_INTEGER);
    expect(elementCount([...big, 0])).toBe(0);
    expect(elementCount([])).toBe(1);
    expect(parseShape([2n, 3n])).toEqual([2, 3]);
  });
});

describe('createTensor', () => {
  it('checks element count and array type', () => {
    expectError(
      () => createTensor('FP32', [2, 3], new Float32Array(5), x),
      'input "x": shape [2,3] needs 6 FP32 elements, got 5',
      'size',
      'x',
    );
    expectError(
      () => createTensor('FP32', [2], new Float64Array(2) as unknown as Float32Array, x),
      'input "x": FP32 data must be a Float32Array, got Float64Array',
      'datatype',
      'x',
    );
    expectError(
      () => createTensor('BYTES', [1], ['a'] as unknown as Uint8Array[], x),
      'input "x": BYTES data must be an array of Uint8Array (one per element)',
      'datatype',
      'x',
    );
    expectError(
      () => createTensor('BOOL', [3], new Uint8Array([1, 0, 2]), x),
      'input "x": BOOL element 2 is 2; must be 0 or 1',
      'contents',
      'x',
    );
  });
});

describe('raw bytes', () => {
  it('names the byte count the shape needs', () => {
    expectError(
      () => tensorFromRaw('FP32', [2, 3], new Uint8Array(20), x),
      'input "x": shape [2,3] needs 24 bytes of FP32, got 20',
      'size',
      'x',
    );
    expectError(
      () => tensorFromRaw('INT64', [], new Uint8Array(9), x),
      'input "x": shape [] needs 8 bytes of INT64, got 9',
      'size',
      'x',
    );
  });

  it('rejects BOOL bytes other than 0 and 1', () => {
    expectError(
      () => tensorFromRaw('BOOL', [2], Buffer.from([1, 255]), x),
      'input "x": BOOL element 1 is 255; must be 0 or 1',
      'contents',
      'x',
    );
  });

  it('reports malformed BYTES framing with the element and byte offset', () => {
    const frame = (...parts: (number | string)[]): Buffer =>
      Buffer.concat(
        parts.map((p) => (typeof p === 'number' ? Buffer.from(new Uint32Array([p]).buffer) : Buffer.from(p))),
      );
    expectError(
      () => tensorFromRaw('BYTES', [1], frame(100, 'abc'), x),
      'input "x": BYTES element 0 at byte 0: length prefix 100 runs past the end (3 bytes left)',
      'framing',
      'x',
    );
    expectError(
      () => tensorFromRaw('BYTES', [2], Buffer.concat([frame(2, 'ab'), Buffer.from([1, 0])]), x),
      'input "x": BYTES element 1 at byte 6: needs a 4-byte length prefix, only 2 bytes left',
      'framing',
      'x',
    );
    expectError(
      () => tensorFromRaw('BYTES', [1], frame(2, 'ab', 1, 'c'), x),
      'input "x": shape [1] needs 1 BYTES elements, but 5 more bytes follow them (from byte 6)',
      'size',
      'x',
    );
    expectError(
      () => tensorFromRaw('BYTES', [3], frame(2, 'ab', 0), x),
      'input "x": shape [3] needs 3 BYTES elements, got 2',
      'size',
      'x',
    );
    expectError(
      () => tensorFromRaw('BYTES', [0], frame(0), x),
      'input "x": shape [0] needs 0 BYTES elements, but 4 more bytes follow them (from byte 0)',
      'size',
      'x',
    );
    expect(tensorFromRaw('BYTES', [0], new Uint8Array(0), x).data).toEqual([]);
  });
});

describe('typed contents', () => {
  it("rejects values in another datatype's field", () => {
    expectError(
      () => tensorFromContents('INT32', [3], contents({ intContents: [1, 2, 3], fp32Contents: [1, 2, 3] }), x),
      'input "x": datatype INT32 takes int_contents, but fp32_contents holds 3 values',
      'contents',
      'x',
    );
    expectError(
      () => tensorFromContents('INT64', [1], contents({ intContents: [1] }), x),
      'input "x": datatype INT64 takes int64_contents, but int_contents holds 1 values',
      'contents',
      'x',
    );
    expectError(
      () => tensorFromContents('UINT8', [1], contents({ intContents: [1] }), x),
      'input "x": datatype UINT8 takes uint_contents, but int_contents holds 1 values',
      'contents',
      'x',
    );
  });

  it('says FP16 and BF16 travel raw only', () => {
    expectError(
      () => tensorFromContents('FP16', [2], contents({ fp32Contents: [1, 2] }), x),
      'input "x": FP16 has no typed contents field in KServe, but fp32_contents holds 2 values; ' +
        'send FP16 in raw_input_contents',
      'unsupported',
      'x',
    );
    expectError(
      () => tensorFromContents('BF16', [2], emptyContents(), x),
      'input "x": BF16 has no typed contents field in KServe; send it in raw_input_contents',
      'unsupported',
      'x',
    );
    const fp16 = createTensor('FP16', [1], new Uint16Array([0x3c00]), { name: 'y' });
    expectError(
      () => tensorToContents(fp16, { name: 'y', role: 'output' }),
      'output "y": FP16 has no typed contents field in KServe; send it in raw_output_contents',
      'unsupported',
      'y',
    );
    expect(tensorFromContents('FP16', [0, 2], emptyContents(), x).data).toEqual(new Uint16Array(0));
  });

  it('checks the element count', () => {
    expectError(
      () => tensorFromContents('FP32', [2, 3], contents({ fp32Contents: [1, 2, 3, 4, 5] }), x),
      'input "x": shape [2,3] needs 6 values in fp32_contents, got 5',
      'size',
      'x',
    );
    expectError(
      () => tensorFromContents('BYTES', [2], contents({ bytesContents: [Buffer.from('a')] }), x),
      'input "x": shape [2] needs 2 values in bytes_contents, got 1',
      'size',
      'x',
    );
  });

  it('checks that integers fit the datatype', () => {
    expectError(
      () => tensorFromContents('INT8', [3], contents({ intContents: [1, -128, 300] }), x),
      'input "x": int_contents[2] is 300; INT8 needs an integer in [-128, 127]',
      'contents',
      'x',
    );
    expectError(
      () => tensorFromContents('UINT16', [1], contents({ uintContents: [65536] }), x),
      'input "x": uint_contents[0] is 65536; UINT16 needs an integer in [0, 65535]',
      'contents',
      'x',
    );
    expectError(
      () => tensorFromContents('INT32', [1], contents({ intContents: [1.5] }), x),
      'input "x": int_contents[0] is 1.5; INT32 needs an integer in [-2147483648, 2147483647]',
      'contents',
      'x',
    );
    expectError(
      () => tensorFromContents('UINT64', [1], contents({ uint64Contents: [-1n] }), x),
      'input "x": uint64_contents[0] is -1; UINT64 needs an integer in [0, 18446744073709551615]',
      'contents',
      'x',
    );
    expectError(
      () => tensorFromContents('INT64', [1], contents({ int64Contents: [2n ** 63n] }), x),
      'input "x": int64_contents[0] is 9223372036854775808; ' +
        'INT64 needs an integer in [-9223372036854775808, 9223372036854775807]',
      'contents',
      'x',
    );
    expectError(
      () => tensorFromContents('BOOL', [1], contents({ boolContents: [1 as unknown as boolean] }), x),
      'input "x": bool_contents[0] is 1; BOOL needs true or false',
      'contents',
      'x',
    );
    expectError(
      () => tensorFromContents('FP32', [1], contents({ fp32Contents: ['1' as unknown as number] }), x),
      'input "x": fp32_contents[0] is string; FP32 needs a number',
      'contents',
      'x',
    );
    // numbers in int64_contents (hand-made objects) are accepted when they are safe integers
    expect(
      tensorFromContents('INT64', [2], contents({ int64Contents: [5 as unknown as bigint, -7n] }), x).data,
    ).toEqual(new BigInt64Array([5n, -7n]));
  });
});

describe('integer ranges in typed contents, per datatype', () => {
  // [datatype, field, min, max]: the C integer limits, written out independently of contents.ts
  const limits: [Datatype, 'intContents' | 'uintContents' | 'int64Contents' | 'uint64Contents', bigint, bigint][] = [
    ['INT8', 'intContents', -128n, 127n],
    ['INT16', 'intContents', -32768n, 32767n],
    ['INT32', 'intContents', -2147483648n, 2147483647n],
    ['UINT8', 'uintContents', 0n, 255n],
    ['UINT16', 'uintContents', 0n, 65535n],
    ['UINT32', 'uintContents', 0n, 4294967295n],
    ['INT64', 'int64Contents', -9223372036854775808n, 9223372036854775807n],
    ['UINT64', 'uint64Contents', 0n, 18446744073709551615n],
  ];
  it.each(limits)('%s accepts [%s] limits and rejects one beyond', (datatype, field, min, max) => {
    const is64 = field === 'int64Contents' || field === 'uint64Contents';
    const value = (v: bigint): number | bigint => (is64 ? v : Number(v));
    const ok = tensorFromContents(datatype, [2], contents({ [field]: [value(min), value(max)] }), x);
    expect(tensorFromContents(datatype, [2], tensorToContents(ok), x).data).toEqual(ok.data);
    for (const bad of [min - 1n, max + 1n]) {
      expect(() => tensorFromContents(datatype, [1], contents({ [field]: [value(bad)] }), x)).toThrow(
        `is ${bad}; ${datatype} needs an integer in [${min}, ${max}]`,
      );
      // the JSON form checks the same limits (64-bit values as strings, as tensorToJson writes them)
      const json = { datatype, shape: [1], data: [is64 ? String(bad) : Number(bad)] };
      expect(() => tensorFromJson(json, x)).toThrow(`${datatype} needs an integer in [${min}, ${max}]`);
    }
    const json = { datatype, shape: [2], data: [min, max].map((v) => (is64 ? String(v) : Number(v))) };
    expect(tensorFromJson(json, x).data).toEqual(ok.data);
  });
});

describe('onnxruntime-node', () => {
  it('BF16 cannot go to ORT', () => {
    const bf16 = createTensor('BF16', [1], new Uint16Array([0x3f80]), { name: 'h' });
    expectError(
      () => tensorToOrt(bf16),
      'tensor "h": BF16 cannot become an onnxruntime-node tensor: onnxruntime-node has no bfloat16 tensor type',
      'unsupported',
      'h',
    );
  });

  it('BYTES must be UTF-8 for an ORT string tensor', () => {
    const bytes = createTensor('BYTES', [2], [Buffer.from('ok'), Buffer.from([0xff, 0xfe])]);
    expectError(
      () => tensorToOrt(bytes, x),
      'input "x": BYTES element 1 is not valid UTF-8, which an onnxruntime string tensor needs',
      'contents',
      'x',
    );
  });

  it('ORT types without a KServe datatype are refused', () => {
    // onnxruntime-common 1.30 declares int4 data as Int8Array but its constructor demands a Uint8Array
    const int4 = new ort.Tensor('int4', new Uint8Array([0x21]) as unknown as Int8Array, [2]);
    expectError(
      () => tensorFromOrt(int4, { name: 'q', role: 'output' }),
      'output "q": onnxruntime tensor type int4 has no KServe datatype',
      'unsupported',
      'q',
    );
  });
});

it('a TensorError is an Error with a stack', () => {
  const error = new TensorError('m', 'size');
  expect(error).toBeInstanceOf(Error);
  expect(error.stack).toContain('TensorError');
  const t: Tensor = createTensor('INT8', [1], new Int8Array([1]));
  expect(t.name).toBeUndefined();
});
