import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NpyError } from './npy.js';
import { readNpz } from './npz.js';

// The second source is numpy itself: the archives are written by np.savez and np.savez_compressed.
const hasNumpy = spawnSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;
const dir = mkdtempSync(join(tmpdir(), 'quanta-npz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!hasNumpy)('readNpz', () => {
  it.each(['savez', 'savez_compressed'])('reads the arrays np.%s writes, by name', (writer) => {
    execFileSync(
      'python3',
      [
        '-c',
        `import numpy as np; np.${writer}('a.npz', x=np.arange(6, dtype=np.float32).reshape(2, 3), ` +
          'ids=np.array([[1], [2]], dtype=np.int64))',
      ],
      {
        cwd: dir,
      },
    );
    const arrays = readNpz(readFileSync(join(dir, 'a.npz')), 'a.npz');
    expect([...arrays.keys()].sort()).toEqual(['ids', 'x']);
    const x = arrays.get('x')!;
    expect(x.datatype).toBe('FP32');
    expect(x.shape).toEqual([2, 3]);
    expect(Array.from(x.data as Float32Array)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(arrays.get('ids')!.data).toEqual(new BigInt64Array([1n, 2n]));
  });
});

describe('readNpz errors', () => {
  it('says a file is not an archive', () => {
    expect(() => readNpz(Buffer.from('not a zip at all, just some text'), 'c.npz')).toThrow(NpyError);
    expect(() => readNpz(Buffer.from('not a zip at all, just some text'), 'c.npz')).toThrow(
      /c\.npz is not a \.npz file/,
    );
  });
});
