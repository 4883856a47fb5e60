import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readNpy, writeNpy } from './npy.js';

// The second source: numpy itself, where this machine has it; the hand-built headers below
// follow the NPY spec and run everywhere.
const hasNumpy = spawnSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;
const dir = mkdtempSync(join(tmpdir(), 'quanta-npy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function python(script: string): string {
  return execFileSync('python3', ['-c', script], { cwd: dir, encoding: 'utf8' });
}

/** A .npy file made by hand: magic, version, header length, the dict padded to 64 bytes, data. */
function handMade(dict: string, data: Uint8Array, major = 1): Buffer {
  const prefix = major === 1 ? 10 : 12;
  const total = Math.ceil((prefix + dict.length + 1) / 64) * 64;
  const head = Buffer.alloc(total, ' ');
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = major;
  head[7] = 0;
  if (major === 1) head.writeUInt16LE(total - prefix, 8);
  else head.writeUInt32LE(total - prefix, 8);
  head.write(dict, prefix, 'latin1');
  head[total - 1] = 0x0a;
  return Buffer.concat([head, data]);
}

describe('readNpy on hand-built files (NPY spec)', () => {
  it('reads a float32 2x3 array, version 1.0', () => {
    const values = new Float32Array([1, -2.5, 3, 0.125, 1e-7, -0]);
    const t = readNpy(
      handMade("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", new Uint8Array(values.buffer)),
    );
    expect(t.datatype).toBe('FP32');
    expect(t.shape).toEqual([2, 3]);
    expect(Array.from(t.data as Float32Array)).toEqual(Array.from(values));
  });

  it('reads version 2.0 and 3.0 headers, Python 2 longs and a scalar', () => {
    const v2 = readNpy(
      handMade(
        "{'descr': '<i8', 'fortran_order': False, 'shape': (2L,), }",
        new Uint8Array(new BigInt64Array([-5n, 1n << 40n]).buffer),
        2,
      ),
    );
    expect(v2).toMatchObject({ datatype: 'INT64', shape: [2] });
    expect(Array.from(v2.data as BigInt64Array)).toEqual([-5n, 1n << 40n]);
    const v3 = readNpy(handMade("{'descr': '|u1', 'fortran_order': False, 'shape': (), }", new Uint8Array([200]), 3));
    expect(v3).toMatchObject({ datatype: 'UINT8', shape: [] });
    expect(Array.from(v3.data as Uint8Array)).toEqual([200]);
  });

  it('refuses Fortran order, big-endian, structured and string dtypes with a clear message', () => {
    const f = handMade("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", new Uint8Array(16));
    expect(() => readNpy(f, 'x.npy')).toThrow(/x\.npy: the array is in Fortran \(column-major\) order/);
    const be = handMade("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", new Uint8Array(4));
    expect(() => readNpy(be, 'x.npy')).toThrow(/dtype '>f4' is big-endian/);
    const rec = handMade(
      "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (1,), }",
      new Uint8Array(8),
    );
    expect(() => readNpy(rec, 'x.npy')).toThrow(/structured arrays/);
    const str = handMade("{'descr': '<U3', 'fortran_order': False, 'shape': (1,), }", new Uint8Array(12));
    expect(() => readNpy(str, 'x.npy')).toThrow(/dtype '<U3' is not supported/);
  });

  it('refuses a truncated file, a bad magic and BOOL bytes other than 0/1', () => {
    const short = handMade("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", new Uint8Array(16));
    expect(() => readNpy(short, 'x.npy')).toThrow(/needs 24 data bytes, the file has 16/);
    expect(() => readNpy(Buffer.from('{"not": "npy"}'), 'x.npy')).toThrow(/x\.npy is not a \.npy file/);
    const bool = handMade("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", new Uint8Array([1, 7]));
    expect(() => readNpy(bool, 'x.npy')).toThrow(/BOOL element 1 is 7/);
  });

  it('writes what it reads, with a 64-byte-aligned header', () => {
    const t = { name: 'y', datatype: 'INT16' as const, shape: [3, 1], data: new Int16Array([-1, 2, 32767]) };
    const bytes = writeNpy(t);
    const headerLength = bytes.readUInt16LE(8);
    expect((10 + headerLength) % 64).toBe(0);
    expect(bytes.subarray(10, 10 + headerLength).toString('latin1')).toMatch(
      /^\{'descr': '<i2', 'fortran_order': False, 'shape': \(3, 1\), \} *\n$/,
    );
    const back = readNpy(bytes);
    expect(back).toMatchObject({ datatype: 'INT16', shape: [3, 1] });
    expect(Array.from(back.data as Int16Array)).toEqual([-1, 2, 32767]);
    expect(() => writeNpy({ datatype: 'BYTES', shape: [1], data: [Buffer.from('a')] })).toThrow(/has no \.npy dtype/);
  });
});

describe.skipIf(!hasNumpy)('readNpy / writeNpy against numpy', () => {
  // dtype → the datatype it reads as; values picked to hit sign bits, NaN and extremes.
  const cases: [string, string][] = [
    ['float16', 'FP16'],
    ['float32', 'FP32'],
    ['float64', 'FP64'],
    ['int8', 'INT8'],
    ['int16', 'INT16'],
    ['int32', 'INT32'],
    ['int64', 'INT64'],
    ['uint8', 'UINT8'],
    ['uint16', 'UINT16'],
    ['uint32', 'UINT32'],
    ['uint64', 'UINT64'],
    ['bool', 'BOOL'],
  ];

  it('reads every dtype numpy.save writes, element for element (versions 1.0, 2.0, 3.0)', () => {
    const script = `
import numpy as np, json
rng = np.random.default_rng(7)
for dt in ${JSON.stringify(cases.map(([d]) => d))}:
    info = np.iinfo(dt) if np.issubdtype(np.dtype(dt), np.integer) else None
    if dt == 'bool':
        a = rng.integers(0, 2, size=(2, 3, 4)).astype(bool)
    elif info is not None:
        a = rng.integers(info.min, info.max, size=(2, 3, 4), dtype=dt, endpoint=True)
        a.flat[0] = info.min; a.flat[1] = info.max
    else:
        a = (rng.standard_normal((2, 3, 4)) * 100).astype(dt)
        a.flat[0] = np.nan; a.flat[1] = -np.inf
    np.save(dt + '.npy', a)
    np.lib.format.write_array(open(dt + '.v2.npy', 'wb'), a, version=(2, 0))
    np.lib.format.write_array(open(dt + '.v3.npy', 'wb'), a, version=(3, 0))
    open(dt + '.bytes', 'wb').write(a.tobytes())
print('ok')
`;
    expect(python(script).trim()).toBe('ok');
    for (const [dtype, datatype] of cases) {
      const expected = readFileSync(join(dir, `${dtype}.bytes`));
      for (const suffix of ['', '.v2', '.v3']) {
        const t = readNpy(readFileSync(join(dir, `${dtype}${suffix}.npy`)), `${dtype}${suffix}.npy`);
        expect(t.datatype, `${dtype}${suffix}`).toBe(datatype);
        expect(t.shape).toEqual([2, 3, 4]);
        const data = t.data as ArrayBufferView;
        expect(
          Buffer.from(data.buffer, data.byteOffset, data.byteLength).equals(expected),
          `${dtype}${suffix} bytes`,
        ).toBe(true);
      }
    }
  });

  it('writes files numpy.load reads back equal, with the same bytes numpy.save makes', () => {
    const tensors = [
      { datatype: 'FP32' as const, shape: [2, 2], data: new Float32Array([1.5, -0, NaN, 3e38]) },
      { datatype: 'INT64' as const, shape: [3], data: new BigInt64Array([-(1n << 63n), 0n, (1n << 63n) - 1n]) },
      { datatype: 'UINT8' as const, shape: [], data: new Uint8Array([255]) },
      { datatype: 'BOOL' as const, shape: [1, 2], data: new Uint8Array([1, 0]) },
      { datatype: 'FP16' as const, shape: [2], data: new Uint16Array([0x3c00, 0xc000]) },
      { datatype: 'UINT16' as const, shape: [0, 4], data: new Uint16Array(0) },
    ];
    tensors.forEach((t, i) => writeFileSync(join(dir, `ours-${i}.npy`), writeNpy(t)));
    const report = python(`
import numpy as np, json, io
out = []
for i in range(${tensors.length}):
    raw = open(f'ours-{i}.npy', 'rb').read()
    a = np.load(io.BytesIO(raw))
    again = io.BytesIO(); np.save(again, a)
    out.append({'dtype': str(a.dtype), 'shape': list(a.shape), 'bytes': a.tobytes().hex(),
                'same_file': again.getvalue() == raw})
print(json.dumps(out))
`);
    const got = JSON.parse(report) as { dtype: string; shape: number[]; bytes: string; same_file: boolean }[];
    expect(got.map((g) => g.dtype)).toEqual(['float32', 'int64', 'uint8', 'bool', 'float16', 'uint16']);
    got.forEach((g, i) => {
      const t = tensors[i]!;
      expect(g.shape).toEqual(t.shape);
      expect(g.bytes).toBe(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('hex'));
      expect(g.same_file, `tensor ${i}: byte-identical to numpy.save`).toBe(true);
    });
  });
});
