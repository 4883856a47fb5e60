import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { concatBatch, splitBatch } from './batch.js';
import { DATATYPES, type Datatype } from './datatype.js';
import { tensorFromRaw, tensorToRaw } from './raw.js';
import { createTensor, type Tensor } from './tensor.js';
import { ELEMENT_ARB, countOf, framedBytes, leBytes } from './testing/arbitraries.js';

/** A batch part: `rows` rows of shape `rest`, from independently encoded raw bytes. */
function partArb(datatype: Datatype, rest: number[]): fc.Arbitrary<{ tensor: Tensor; raw: Buffer }> {
  return fc.integer({ min: 0, max: 3 }).chain((rows) =>
    fc
      .array(ELEMENT_ARB[datatype] as fc.Arbitrary<unknown>, {
        minLength: rows * countOf(rest),
        maxLength: rows * countOf(rest),
      })
      .map((values) => {
        const raw =
          datatype === 'BYTES'
            ? framedBytes(values as Uint8Array[])
            : leBytes(datatype, values as (number | bigint | boolean)[]);
        return { tensor: tensorFromRaw(datatype, [rows, ...rest], raw), raw };
      }),
  );
}

describe('concatBatch and splitBatch', () => {
  it.each(DATATYPES)("%s: concat is the parts' bytes back to back, split gives the parts back", (datatype) => {
    const arb = fc
      .array(fc.integer({ min: 0, max: 3 }), { maxLength: 2 })
      .chain((rest) =>
        fc.array(partArb(datatype, rest), { minLength: 1, maxLength: 4 }).map((parts) => ({ rest, parts })),
      );
    fc.assert(
      fc.property(arb, ({ rest, parts }) => {
        const rows = parts.map((p) => p.tensor.shape[0]!);
        const batch = concatBatch(
          parts.map((p) => p.tensor),
          { name: 'x' },
        );
        expect(batch).toMatchObject({ name: 'x', datatype, shape: [rows.reduce((a, b) => a + b, 0), ...rest] });
        // expected raw form from the parts' framing: BYTES concatenates frames like fixed types concatenate bytes
        expect(tensorToRaw(batch).equals(Buffer.concat(parts.map((p) => p.raw)))).toBe(true);
        const split = splitBatch(batch, rows);
        expect(split).toHaveLength(parts.length);
        split.forEach((part, i) => {
          expect(part.shape).toEqual([rows[i], ...rest]);
          expect(tensorToRaw(part).equals(parts[i]!.raw)).toBe(true);
        });
      }),
      { numRuns: 60 },
    );
  });

  it('split parts are views of the batch', () => {
    const batch = createTensor('FP32', [3, 2], new Float32Array([1, 2, 3, 4, 5, 6]));
    const [a, b] = splitBatch(batch, [1, 2]);
    expect((a!.data as Float32Array).buffer).toBe(batch.data.buffer);
    expect(Array.from(b!.data as Float32Array)).toEqual([3, 4, 5, 6]);
  });

  it('says why parts do not stack', () => {
    const f = (shape: number[]): Tensor => createTensor('FP32', shape, new Float32Array(countOf(shape)));
    expect(() => concatBatch([])).toThrow('tensor: concatBatch needs at least one tensor');
    expect(() => concatBatch([f([])], { name: 'x' })).toThrow(
      'tensor "x": a scalar (shape []) has no batch axis to concatenate along',
    );
    expect(() => concatBatch([f([1, 2]), f([1, 3])], { name: 'x', role: 'input' })).toThrow(
      'input "x": batch part 1 has shape [1,3], which does not stack with part 0\'s [1,2] along axis 0',
    );
    expect(() => concatBatch([f([1, 2]), f([2])], { name: 'x' })).toThrow(
      'tensor "x": batch part 1 has shape [2], which does not stack with part 0\'s [1,2] along axis 0',
    );
    expect(() => concatBatch([f([1]), createTensor('INT32', [1], new Int32Array(1))], { name: 'x' })).toThrow(
      'tensor "x": batch part 1 is INT32, part 0 is FP32',
    );
  });

  it('says why sizes do not split', () => {
    const t = createTensor('INT8', [3], new Int8Array(3), { name: 'y' });
    expect(() => splitBatch(t, [1, 1], { name: 'y', role: 'output' })).toThrow(
      'output "y": batch sizes [1,1] add up to 2, but shape [3] has 3 rows',
    );
    expect(() => splitBatch(t, [4, -1])).toThrow('tensor "y": batch sizes [4,-1] must be non-negative integers');
    expect(() => splitBatch(createTensor('INT8', [], new Int8Array(1)), [1])).toThrow(
      'tensor: a scalar (shape []) has no batch axis to split',
    );
  });
});
