// Views, not copies, where alignment allows: raw bytes -> Tensor -> ort.Tensor -> raw bytes all
// share one ArrayBuffer when the byte offset is a multiple of the element size; a misaligned
// buffer (as gRPC hands out, at any offset inside a message) is copied once.
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { ELEMENT_SIZE, type FixedDatatype } from './datatype.js';
import { tensorFromOrt, tensorToOrt } from './ort.js';
import { tensorBytes, tensorFromRaw, tensorToRaw } from './raw.js';
import { createTensor, type FixedTensor } from './tensor.js';

/** The memory behind a typed array (ORT and Tensor data are unions that include plain arrays). */
const mem = (data: unknown): ArrayBufferLike => (data as ArrayBufferView).buffer;

const FIXED: FixedDatatype[] = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'FP32',
  'FP64',
];

/** Six elements' worth of bytes at `offset` inside a larger ArrayBuffer; each byte 0 or 1 (valid BOOL). */
function bytesAt(datatype: FixedDatatype, offset: number): Uint8Array {
  const size = ELEMENT_SIZE[datatype];
  const backing = new ArrayBuffer(offset + 6 * size + 8);
  const bytes = new Uint8Array(backing, offset, 6 * size);
  bytes.forEach((_, i) => (bytes[i] = i % 3 === 0 ? 1 : 0));
  return bytes;
}

describe.each(FIXED)('%s', (datatype) => {
  it('aligned raw bytes: Tensor, ort.Tensor and raw output share the buffer', () => {
    const raw = bytesAt(datatype, 8);
    const tensor = tensorFromRaw(datatype, [2, 3], raw);
    expect(mem(tensor.data)).toBe(raw.buffer);
    expect(tensor.data.byteOffset).toBe(8);

    const o = tensorToOrt(tensor);
    expect(mem(o.data)).toBe(raw.buffer);
    expect((o.data as Uint8Array).byteOffset).toBe(8);

    const back = tensorFromOrt(o);
    expect(mem(back.data)).toBe(raw.buffer);
    const out = tensorToRaw(back);
    expect(out.buffer).toBe(raw.buffer);
    expect(out.byteOffset).toBe(8);
    expect(out.equals(raw)).toBe(true);

    // one memory: a write through the raw bytes shows in the ORT tensor
    raw[0] = 0;
    expect(Buffer.from(mem(o.data), 8, 1)[0]).toBe(0);
  });
});

it.each(FIXED.filter((d) => ELEMENT_SIZE[d] > 1))(
  '%s: misaligned raw bytes are copied once, into an aligned array with the same bytes',
  (datatype) => {
    const size = ELEMENT_SIZE[datatype];
    const raw = bytesAt(datatype, 8 + 1);
    const tensor = tensorFromRaw(datatype, [2, 3], raw);
    expect(mem(tensor.data)).not.toBe(raw.buffer);
    expect(tensor.data.byteOffset % size).toBe(0);
    expect(tensorToRaw(tensor).equals(raw)).toBe(true);
    const o = tensorToOrt(tensor);
    expect(mem(o.data)).toBe(mem(tensor.data)); // the copy is shared from there on
  },
);

it.each(FIXED.filter((d) => ELEMENT_SIZE[d] > 1))(
  '%s: tensorBytes gives misaligned raw bytes as they are, and the copy is made only once data is read',
  (datatype) => {
    const raw = bytesAt(datatype, 8 + 1);
    const tensor = tensorFromRaw(datatype, [2, 3], raw, { name: 'x' });
    const bytes = tensorBytes(tensor);
    expect(bytes).toBe(raw);
    // the tensor still reads as any other: same keys, aligned data with the same bytes, read once
    expect(Object.keys(tensor)).toEqual(['name', 'datatype', 'shape', 'data']);
    const data = tensor.data as ArrayBufferView;
    expect(data.byteOffset % ELEMENT_SIZE[datatype]).toBe(0);
    expect(Buffer.from(data.buffer, data.byteOffset, data.byteLength).equals(raw)).toBe(true);
    expect(tensor.data).toBe(data);
    expect({ ...tensor }.data).toBe(data);
    // once data was read, the bytes are its bytes
    expect(tensorBytes(tensor).buffer).toBe(data.buffer);
  },
);

it('a spread copy of a tensor over misaligned raw bytes carries its own data, not the raw bytes', () => {
  const raw = bytesAt('FP32', 8 + 1);
  const copy = { ...tensorFromRaw('FP32', [2, 3], raw, { name: 'x' }) };
  copy.data[0] = 42;
  const bytes = tensorBytes(copy);
  expect(bytes).not.toBe(raw);
  expect(new Float32Array(bytes.buffer, bytes.byteOffset, 6)[0]).toBe(42);
});

it.each(FIXED)('%s: tensorBytes of an aligned tensor is a view of its data', (datatype) => {
  const raw = bytesAt(datatype, 8);
  const tensor: FixedTensor = tensorFromRaw(datatype, [2, 3], raw);
  const bytes = tensorBytes(tensor);
  expect(bytes.buffer).toBe(raw.buffer);
  expect(bytes.byteOffset).toBe(8);
  expect(bytes.byteLength).toBe(raw.byteLength);
});

it('Node Buffers work at whatever offset they got', () => {
  const view = Buffer.from(new Float32Array([1, 2, 3]).buffer); // offset 0
  const sliced = Buffer.concat([Buffer.from([9]), view]).subarray(1); // from the Buffer pool, then one byte on
  for (const raw of [view, sliced]) {
    expect(Array.from(tensorFromRaw('FP32', [3], raw).data)).toEqual([1, 2, 3]);
  }
});

it('ORT output tensors convert without copying', () => {
  const data = new Float32Array([1, 2, 3, 4]);
  const o = new ort.Tensor('float32', data, [2, 2]);
  const tensor = tensorFromOrt(o, { name: 'y', role: 'output' });
  expect(tensor).toMatchObject({ name: 'y', datatype: 'FP32', shape: [2, 2] });
  expect(tensor.data).toBe(data);
  expect(tensorToRaw(tensor).buffer).toBe(data.buffer);
});

it('FP16 goes to ORT as float16 over the same Uint16Array bits', () => {
  const bits = new Uint16Array([0x3c00, 0x7bff, 0xfc00]);
  const o = tensorToOrt(createTensor('FP16', [3], bits));
  expect(o.type).toBe('float16');
  expect(mem(o.data)).toBe(bits.buffer);
  expect(Array.from(new Uint16Array(mem(o.data)))).toEqual([0x3c00, 0x7bff, 0xfc00]);
});

it('BYTES raw decoding gives views of the raw buffer', () => {
  const raw = Buffer.from('0300000061626302000000797a', 'hex');
  const tensor = tensorFromRaw('BYTES', [2], raw);
  expect(tensor.data.map((e) => Buffer.from(e).toString())).toEqual(['abc', 'yz']);
  expect(tensor.data.every((e) => e.buffer === raw.buffer)).toBe(true);
});
