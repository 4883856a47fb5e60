import { describe, expect, it } from 'vitest';
import { inferRequest, outputTensor, outputTensors, tensorValues, toTensor } from './tensors.js';

describe('tensor helpers', () => {
  it('infers datatypes from the data and converts plain arrays', () => {
    expect(toTensor({ name: 'a', data: [1, 2] })).toMatchObject({
      datatype: 'FP32',
      shape: [2],
      data: new Float32Array([1, 2]),
    });
    expect(toTensor({ name: 'b', data: [1n, 2n], shape: [1, 2] })).toMatchObject({ datatype: 'INT64', shape: [1, 2] });
    expect(toTensor({ name: 'c', data: [true, false] }).data).toEqual(new Uint8Array([1, 0]));
    expect(toTensor({ name: 'c', data: [true, false] }).datatype).toBe('BOOL');
    expect(toTensor({ name: 'd', data: ['hi'] }).datatype).toBe('BYTES');
    const ints = new Int32Array([5, 6]);
    expect(toTensor({ name: 'e', data: ints }).data).toBe(ints); // kept, not copied
    expect(tensorValues(toTensor({ name: 'f', data: [0.5, -2], datatype: 'FP16' }))).toEqual([0.5, -2]);
  });

  it('refuses data that does not fill the shape, naming the input', () => {
    expect(() => toTensor({ name: 'img', data: [1, 2, 3], shape: [2, 2] })).toThrow(
      /input "img".*needs 4 FP32 elements, got 3/,
    );
  });

  it('builds a raw request by default (little-endian bytes, one entry per input) and a typed one on request', () => {
    const raw = inferRequest(
      'cifar',
      [
        { name: 'x', data: [1, 2], shape: [1, 2] },
        { name: 'n', data: new Int32Array([7]) },
      ],
      { version: '2', outputs: ['y'] },
    );
    expect(raw).toMatchObject({ modelName: 'cifar', modelVersion: '2', outputs: [{ name: 'y', parameters: {} }] });
    expect(raw.inputs.map((i) => [i.name, i.datatype, i.shape])).toEqual([
      ['x', 'FP32', [1n, 2n]],
      ['n', 'INT32', [1n]],
    ]);
    // 1.0f is 0x3f800000, 2.0f 0x40000000 (IEEE 754), little-endian.
    expect(raw.rawInputContents.map((b) => b.toString('hex'))).toEqual(['0000803f00000040', '07000000']);
    const typed = inferRequest('cifar', [{ name: 'x', data: [1, 2] }], { raw: false });
    expect(typed.rawInputContents).toEqual([]);
    expect(typed.inputs[0]?.contents?.fp32Contents).toEqual([1, 2]);
    // FP16 only travels raw, so it makes the whole request raw.
    expect(
      inferRequest('m', [{ name: 'h', data: [1], datatype: 'FP16' }], { raw: false }).rawInputContents[0]?.toString(
        'hex',
      ),
    ).toBe('003c');
  });

  it('reads outputs from raw or typed contents, and names the outputs there are when one is missing', () => {
    const response = {
      modelName: 'm',
      modelVersion: '1',
      id: '',
      parameters: {},
      outputs: [
        { name: 'y', datatype: 'FP32', shape: [2n], parameters: {} },
        { name: 'k', datatype: 'INT64', shape: [1n], parameters: {} },
      ],
      rawOutputContents: [Buffer.from('0000803f000000c0', 'hex'), Buffer.from('0300000000000000', 'hex')],
    };
    expect(tensorValues(outputTensor(response, 'y'))).toEqual([1, -2]);
    expect([...outputTensors(response).keys()]).toEqual(['y', 'k']);
    expect(tensorValues(outputTensor(response, 'k'))).toEqual([3]);
    expect(() => outputTensor(response, 'z')).toThrow(/output "z" is not in the response; it has "y", "k"/);
    const typed = {
      ...response,
      outputs: [
        {
          name: 'y',
          datatype: 'FP32',
          shape: [2n],
          parameters: {},
          contents: {
            fp32Contents: [4, 5],
            boolContents: [],
            intContents: [],
            int64Contents: [],
            uintContents: [],
            uint64Contents: [],
            fp64Contents: [],
            bytesContents: [],
          },
        },
      ],
      rawOutputContents: [],
    };
    expect(tensorValues(outputTensor(typed, 'y'))).toEqual([4, 5]);
  });
});
