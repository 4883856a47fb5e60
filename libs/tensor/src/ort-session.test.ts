// Views into larger buffers (byteOffset != 0) must reach onnxruntime as the right elements: run
// each datatype through a real Identity session, fed by a zero-copy view and by a copy.
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { ELEMENT_SIZE, type Datatype, type FixedDatatype } from './datatype.js';
import { ortTypedArray, tensorFromOrt, tensorToOrt } from './ort.js';
import { tensorFromRaw, tensorToRaw } from './raw.js';
import { framedBytes } from './testing/arbitraries.js';
import { ONNX_ELEM_TYPE, identityModel } from './testing/onnx.js';

const CASES: [Datatype, keyof typeof ONNX_ELEM_TYPE][] = [
  ['BOOL', 'bool'],
  ['UINT8', 'uint8'],
  ['UINT16', 'uint16'],
  ['UINT32', 'uint32'],
  ['UINT64', 'uint64'],
  ['INT8', 'int8'],
  ['INT16', 'int16'],
  ['INT32', 'int32'],
  ['INT64', 'int64'],
  ['FP16', 'float16'],
  ['FP32', 'float32'],
  ['FP64', 'float64'],
  ['BYTES', 'string'],
];

/** Six elements' raw bytes placed `offset` bytes into a larger buffer full of other bytes. */
function rawAt(datatype: Datatype, offset: number): Uint8Array {
  if (datatype === 'BYTES') {
    const framed = framedBytes(['a', '', 'é', 'zzz', '1', '€'].map((t) => Buffer.from(t, 'utf8')));
    const backing = Buffer.alloc(offset + framed.length + 5, 0xee);
    framed.copy(backing, offset);
    return backing.subarray(offset, offset + framed.length);
  }
  const size = ELEMENT_SIZE[datatype];
  const backing = new Uint8Array(offset + 6 * size + 16).fill(datatype === 'BOOL' ? 1 : 0xee);
  const raw = backing.subarray(offset, offset + 6 * size);
  // distinct, valid values: BOOL 0/1, otherwise byte patterns that are finite for the float types
  raw.forEach((_, i) => (raw[i] = datatype === 'BOOL' ? i % 2 : (i * 37 + 11) % 0x70));
  return raw;
}

describe.each(CASES)('%s through a real onnxruntime Identity session', (datatype, ortType) => {
  it.each([
    ['an aligned view', 16],
    ['a misaligned (copied) buffer', 17],
  ])('fed from %s', async (_, offset) => {
    const session = await ort.InferenceSession.create(identityModel(ONNX_ELEM_TYPE[ortType]));
    try {
      const raw = rawAt(datatype, offset);
      const input = tensorFromRaw(datatype, [2, 3], raw, { name: 'x', role: 'input' });
      const results = await session.run({ x: tensorToOrt(input) });
      const y = results['y'];
      expect(y).toBeDefined();
      const output = tensorFromOrt(y!, { name: 'y', role: 'output' });
      expect(output).toMatchObject({ datatype, shape: [2, 3] });
      expect(tensorToRaw(output).equals(raw)).toBe(true);
    } finally {
      await session.release();
    }
  });
});

describe('ortTypedArray', () => {
  it.each(CASES.filter(([datatype]) => datatype !== 'BYTES'))(
    '%s: the typed array onnxruntime keeps a %s tensor in',
    (datatype, ortType) => {
      const array = ortTypedArray(ortType);
      expect(array).toBeDefined();
      // onnxruntime-node's own choice: a tensor made from zeros of the default array for the type.
      const made = new ort.Tensor(ortType, new array!(4), [4]);
      expect(made.data.constructor).toBe(array);
      expect(array!.BYTES_PER_ELEMENT).toBe(ELEMENT_SIZE[datatype as FixedDatatype]);
    },
  );

  it('has none for strings or unknown types', () => {
    expect(ortTypedArray('string')).toBeUndefined();
    expect(ortTypedArray('int4')).toBeUndefined();
    expect(ortTypedArray('nonsense')).toBeUndefined();
  });
});
