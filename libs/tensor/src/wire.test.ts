import { describe, expect, it } from 'vitest';
import { emptyContents } from './contents.js';
import { createTensor } from './tensor.js';
import { tensorFromWire, tensorToWire } from './wire.js';

describe('KServe wire tensors', () => {
  it('reads typed contents with int64 shapes', () => {
    const t = tensorFromWire({
      name: 'x',
      datatype: 'INT32',
      shape: [2n, 1n],
      contents: { ...emptyContents(), intContents: [7, -7] },
    });
    expect(t).toMatchObject({ name: 'x', datatype: 'INT32', shape: [2, 1] });
    expect(Array.from(t.data as Int32Array)).toEqual([7, -7]);
  });

  it('reads raw contents', () => {
    const raw = Buffer.from('0000803f00000040', 'hex');
    const t = tensorFromWire({ name: 'x', datatype: 'FP32', shape: [2n] }, raw);
    expect(Array.from(t.data as Float32Array)).toEqual([1, 2]);
    // an empty contents object (what ts-proto decodes when the field is absent) is fine
    expect(tensorFromWire({ name: 'x', datatype: 'FP32', shape: [2n], contents: emptyContents() }, raw).shape).toEqual([
      2,
    ]);
  });

  it('refuses typed and raw contents together, and names the field', () => {
    const wire = { name: 'x', datatype: 'FP32', shape: [1n], contents: { ...emptyContents(), fp32Contents: [1] } };
    expect(() => tensorFromWire(wire, Buffer.alloc(4))).toThrow(
      'input "x": has both typed contents and raw_input_contents; send one',
    );
    expect(() => tensorFromWire(wire, Buffer.alloc(4), 'output')).toThrow(
      'output "x": has both typed contents and raw_output_contents; send one',
    );
    expect(() => tensorFromWire({ ...wire, datatype: 'fp32' })).toThrow('input "x": unknown datatype "fp32"');
    expect(() => tensorFromWire({ ...wire, shape: [-1n] })).toThrow('input "x": shape [-1]: dim 0 (-1) is negative');
  });

  it('writes raw when asked and always for FP16/BF16, typed contents otherwise', () => {
    const fp32 = createTensor('FP32', [2], new Float32Array([1, 2]), { name: 'y' });
    const asRaw = tensorToWire(fp32, { raw: true });
    expect(asRaw.wire).toEqual({ name: 'y', datatype: 'FP32', shape: [2n] });
    expect(asRaw.raw?.toString('hex')).toBe('0000803f00000040');
    const typed = tensorToWire(fp32, { raw: false });
    expect(typed.raw).toBeUndefined();
    expect(typed.wire.contents?.fp32Contents).toEqual([1, 2]);
    const fp16 = tensorToWire(createTensor('FP16', [1], new Uint16Array([0x3c00])), { raw: false });
    expect(fp16.raw?.toString('hex')).toBe('003c');
    expect(fp16.wire.contents).toBeUndefined();
  });
});
