import { describe, expect, it } from 'vitest';
import { TensorError } from './errors.js';
import { tensorFromJson, tensorToJson } from './json.js';
import { createTensor } from './tensor.js';

describe('KServe REST JSON', () => {
  it('writes the KServe v2 tensor form with flat data', () => {
    const t = createTensor('INT32', [2, 2], new Int32Array([1, 2, 3, 4]), { name: 'x' });
    expect(JSON.stringify(tensorToJson(t))).toBe('{"name":"x","datatype":"INT32","shape":[2,2],"data":[1,2,3,4]}');
  });

  it('writes FP16/BF16 as numbers, BOOL as booleans and BYTES as strings', () => {
    expect(tensorToJson(createTensor('FP16', [3], new Uint16Array([0x3c00, 0x7bff, 0x3555]))).data).toEqual([
      1, 65504, 0.333251953125,
    ]);
    expect(tensorToJson(createTensor('BF16', [2], new Uint16Array([0x3f80, 0x4049]))).data).toEqual([1, 3.140625]);
    expect(tensorToJson(createTensor('BOOL', [2], new Uint8Array([1, 0]))).data).toEqual([true, false]);
    expect(tensorToJson(createTensor('BYTES', [2], [Buffer.from('héllo'), Buffer.alloc(0)])).data).toEqual([
      'héllo',
      '',
    ]);
  });

  it('reads KServe REST JSON text, flat or nested', () => {
    const flat = tensorFromJson(JSON.parse('{"name":"in","datatype":"FP32","shape":[2,2],"data":[1,2.5,-3,4]}'));
    const nested = tensorFromJson(JSON.parse('{"name":"in","datatype":"FP32","shape":[2,2],"data":[[1,2.5],[-3,4]]}'));
    for (const t of [flat, nested]) {
      expect(t).toMatchObject({ name: 'in', datatype: 'FP32', shape: [2, 2] });
      expect(Array.from(t.data as Float32Array)).toEqual([1, 2.5, -3, 4]);
    }
  });

  it('rounds numbers into FP16/BF16 to nearest even', () => {
    const fp16 = tensorFromJson({ datatype: 'FP16', shape: [3], data: [1, 65504, 1 + 2 ** -11] });
    expect(Array.from(fp16.data as Uint16Array)).toEqual([0x3c00, 0x7bff, 0x3c00]);
    const bf16 = tensorFromJson({ datatype: 'BF16', shape: [2], data: [1, 'NaN'] });
    expect(Array.from(bf16.data as Uint16Array)).toEqual([0x3f80, 0x7fc0]);
  });

  it('keeps INT64/UINT64 extremes exact as strings, and reads them back', () => {
    const t = createTensor('INT64', [3], new BigInt64Array([-(2n ** 63n), 42n, 2n ** 53n + 1n]));
    const json = tensorToJson(t);
    expect(json.data).toEqual(['-9223372036854775808', 42, '9007199254740993']);
    const text = JSON.stringify(json);
    expect((tensorFromJson(JSON.parse(text)).data as BigInt64Array)[2]).toBe(2n ** 53n + 1n);
    const u = tensorFromJson({ datatype: 'UINT64', shape: [1], data: ['18446744073709551615'] });
    expect(u.data).toEqual(new BigUint64Array([2n ** 64n - 1n]));
  });

  it('reads float words for NaN and infinities', () => {
    const t = tensorFromJson({ datatype: 'FP64', shape: [3], data: ['NaN', 'Infinity', '-Infinity'] });
    expect(Array.from(t.data as Float64Array)).toEqual([NaN, Infinity, -Infinity]);
  });

  it.each([
    [null, 'input: a tensor must be a JSON object {name, datatype, shape, data}', 'contents'],
    [{ name: 'x', datatype: 7, shape: [1], data: [1] }, 'input "x": datatype must be a string', 'datatype'],
    [
      { name: 'x', datatype: 'FLOAT', shape: [1], data: [1] },
      'input "x": unknown datatype "FLOAT"; expected one of ' +
        'BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, BF16, FP32, FP64, BYTES',
      'datatype',
    ],
    [{ name: 'x', datatype: 'FP32', shape: '2', data: [1] }, 'input "x": shape must be an array of numbers', 'shape'],
    [{ name: 'x', datatype: 'FP32', shape: [-2], data: [1] }, 'input "x": shape [-2]: dim 0 (-2) is negative', 'shape'],
    [{ name: 'x', datatype: 'FP32', shape: [2], data: 1 }, 'input "x": data must be an array', 'contents'],
    [
      { name: 'x', datatype: 'FP32', shape: [2, 3], data: [1, 2, 3, 4, 5] },
      'input "x": shape [2,3] needs 6 values in data, got 5',
      'size',
    ],
    [
      { name: 'x', datatype: 'FP32', shape: [1], data: ['1'] },
      'input "x": data[0] is "1"; FP32 needs a number (or "NaN", "Infinity", "-Infinity")',
      'contents',
    ],
    [
      { name: 'x', datatype: 'INT8', shape: [2], data: [1, 128] },
      'input "x": data[1] is 128; INT8 needs an integer in [-128, 127]',
      'contents',
    ],
    [
      { name: 'x', datatype: 'UINT32', shape: [1], data: [0.5] },
      'input "x": data[0] is 0.5; UINT32 needs an integer in [0, 4294967295]',
      'contents',
    ],
    [
      { name: 'x', datatype: 'INT32', shape: [1], data: ['5'] },
      'input "x": data[0] is "5"; INT32 needs an integer in [-2147483648, 2147483647]',
      'contents',
    ],
    [
      { name: 'x', datatype: 'UINT64', shape: [1], data: ['-1'] },
      'input "x": data[0] is "-1"; UINT64 needs an integer in [0, 18446744073709551615]',
      'contents',
    ],
    [
      { name: 'x', datatype: 'BOOL', shape: [1], data: [1] },
      'input "x": data[0] is 1; BOOL needs true or false',
      'contents',
    ],
    [
      { name: 'x', datatype: 'BYTES', shape: [1], data: [3] },
      'input "x": data[0] is 3; BYTES needs a string',
      'contents',
    ],
  ])('rejects %j: %s', (json, message, problem) => {
    let caught: unknown;
    try {
      tensorFromJson(json, { role: 'input' });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(TensorError);
    expect((caught as TensorError).message).toBe(message);
    expect((caught as TensorError).problem).toBe(problem);
  });

  it('refuses BYTES that are not UTF-8 when writing JSON', () => {
    const t = createTensor('BYTES', [1], [Buffer.from([0xc3])], { name: 'o' });
    expect(() => tensorToJson(t, { name: 'o', role: 'output' })).toThrow(
      'output "o": BYTES element 0 is not valid UTF-8, so it has no JSON string form',
    );
  });
});
