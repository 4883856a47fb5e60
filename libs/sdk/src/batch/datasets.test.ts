// The dataset readers and writers on real files: what each reads, what each writes, and how each
// output is cut back to a checkpoint's position and goes on from there.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateRawSync } from 'node:zlib';
import { createTensor, readNpy, readNpz, writeNpy, type Tensor } from '@quanta/tensor/core';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fingerprintDifference, readCheckpoint, writeCheckpoint } from './checkpoint.js';
import { PlainFile } from './outputs.js';
import { csvSink, npyFileSink, npzSink } from './sinks.js';
import {
  csvSource,
  jsonlSource,
  npyFolderSource,
  npyRowsSource,
  npzSource,
  parquetSource,
  splitCsvLine,
} from './sources.js';
import type { BatchRecord, BatchSource, ModelSignature } from './types.js';

const TABLE: ModelSignature = {
  name: 't',
  version: '1',
  inputs: [{ name: 'features', datatype: 'FP32', shape: [-1, 3] }],
  outputs: [{ name: 'score', datatype: 'FP32', shape: [-1, 2] }],
};

async function all(source: BatchSource, model: ModelSignature = TABLE): Promise<BatchRecord[]> {
  const records: BatchRecord[] = [];
  for await (const record of source.records(model)) records.push(record);
  return records;
}

const values = (record: BatchRecord): number[] => Array.from(record.inputs[0]!.data as Float32Array);
const score = (id: string, index: number, a: number, b: number) => ({
  id,
  index,
  outputs: [{ ...createTensor('FP32', [1, 2], Float32Array.of(a, b)), name: 'score' } as Tensor],
});

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'quanta-datasets-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('sources', () => {
  it('CSV: quoted fields, an id column, a bad cell and a short row as failed records', async () => {
    expect(splitCsvLine('a,"b,c","say ""hi""",')).toEqual(['a', 'b,c', 'say "hi"', '']);
    const file = join(dir, 't.csv');
    await writeFile(file, 'f0,id,f1,f2\n1,"x,1",2,3\n4,x2,five,6\n7,x3,8\n1e3,x4,-0.5,NaN\n');
    const records = await all(csvSource(file));
    expect(records.map((r) => r.id)).toEqual(['x,1', 'x2', 'x3', 'x4']);
    expect(values(records[0]!)).toEqual([1, 2, 3]);
    expect(records[0]!.inputs[0]!.shape).toEqual([1, 3]);
    expect(records[1]!.error).toMatch(/column 2 \("five"\) is not a number/);
    expect(records[2]!.error).toMatch(/has 3 fields, the header 4/);
    expect(values(records[3]!)).toEqual([1000, -0.5, NaN]);
  });

  it('CSV with a number of columns the input does not take is refused before any row', async () => {
    const file = join(dir, 't.csv');
    await writeFile(file, 'a,b\n1,2\n');
    await expect(all(csvSource(file))).rejects.toThrow(
      /2 feature columns, but input "features" \[-1,3\] takes 3 per row/,
    );
  });

  it('Parquet: the same layout as a CSV, read in slices, a sequence column', async () => {
    const file = join(dir, 't.parquet');
    const n = 5000;
    const columnData = [
      { name: 'seq', data: Array.from({ length: n }, (_, i) => `s${Math.floor(i / 100)}`), type: 'STRING' as const },
      ...['a', 'b', 'c'].map((name, j) => ({
        name,
        data: Float64Array.from({ length: n }, (_, i) => i * 10 + j),
        type: 'DOUBLE' as const,
      })),
    ];
    await writeFile(file, Buffer.from(parquetWriteBuffer({ columnData, rowGroupSize: 1500 })));
    const source = parquetSource(file, { sequenceColumn: 'seq' });
    const records = await all(source);
    expect(source.total?.()).toBe(n);
    expect(records.map((r) => r.id)).toEqual(Array.from({ length: n }, (_, i) => String(i)));
    expect(records[4321]!.sequenceId).toBe('s43');
    expect(values(records[4321]!)).toEqual([43210, 43211, 43212]);
  });

  it('JSON Lines: ids, sequences, a datatype from the model, and bad lines as failed records', async () => {
    const file = join(dir, 't.jsonl');
    await writeFile(
      file,
      [
        JSON.stringify({ id: 'a', sequence_id: 7, inputs: [{ name: 'features', shape: [1, 3], data: [1, 2, 3] }] }),
        '',
        'not json',
        JSON.stringify({ id: 'c', inputs: [{ shape: [1, 3], datatype: 'FP32', data: [1, 2] }] }),
      ].join('\n'),
    );
    const records = await all(jsonlSource(file));
    expect(records.map((r) => [r.id, r.sequenceId, r.error === undefined])).toEqual([
      ['a', '7', true],
      ['1', undefined, false],
      ['c', undefined, false],
    ]);
    expect(records[0]!.inputs[0]!.datatype).toBe('FP32');
    expect(records[2]!.error).toMatch(/needs 3 values in data, got 2/);
  });

  it('a folder of <id>.<input>.npy files for a model with two inputs, in id order', async () => {
    const model: ModelSignature = {
      ...TABLE,
      inputs: [
        { name: 'a', datatype: 'FP32', shape: [-1, 2] },
        { name: 'b', datatype: 'INT64', shape: [-1] },
      ],
    };
    const folder = join(dir, 'in');
    await mkdir(folder);
    for (const id of ['x.2', 'x.10']) {
      await writeFile(join(folder, `${id}.a.npy`), writeNpy(createTensor('FP32', [2], Float32Array.of(1, 2))));
      await writeFile(join(folder, `${id}.b.npy`), writeNpy(createTensor('INT64', [1], BigInt64Array.of(5n))));
    }
    const records = await all(npyFolderSource(folder), model);
    expect(records.map((r) => [r.id, r.inputs.map((t) => `${t.name}${JSON.stringify(t.shape)}`)])).toEqual([
      ['x.10', ['a[1,2]', 'b[1]']],
      ['x.2', ['a[1,2]', 'b[1]']],
    ]);
  });

  it('.npz: stored (np.savez) read from disk by rows, deflated (np.savez_compressed) read whole', async () => {
    const features = createTensor(
      'FP32',
      [600, 3],
      Float32Array.from({ length: 1800 }, (_, i) => i),
    );
    const npy = writeNpy(features);
    for (const [name, method] of [
      ['stored.npz', 0],
      ['deflated.npz', 8],
    ] as const) {
      const file = join(dir, name);
      await writeFile(file, zipOf('features.npy', npy, method));
      const source = npzSource(file);
      const records = await all(source);
      expect(source.total?.()).toBe(600);
      expect(records.map((r) => r.id)).toEqual(Array.from({ length: 600 }, (_, i) => String(i)));
      expect(records[599]!.inputs[0]!.shape).toEqual([1, 3]);
      expect(values(records[599]!)).toEqual([1797, 1798, 1799]);
    }
  });

  it('an .npy of rows is read a slice at a time, a record per row', async () => {
    const file = join(dir, 'rows.npy');
    await writeFile(
      file,
      writeNpy(
        createTensor(
          'FP32',
          [1000, 3],
          Float32Array.from({ length: 3000 }, (_, i) => i),
        ),
      ),
    );
    const records = await all(npyRowsSource(file));
    expect(records).toHaveLength(1000);
    expect(values(records[999]!)).toEqual([2997, 2998, 2999]);
  });
});

describe('sinks', () => {
  it('.npy of rows: cut back to a checkpoint, then finished with failed rows as NaN', async () => {
    const file = join(dir, 'out.npy');
    const first = npyFileSink(file);
    await first.open([]);
    await first.fail!({ id: 'r0', index: 0, code: 'INVALID_ARGUMENT', message: 'no' }, 1);
    await first.write(score('r1', 1, 1, 2));
    const position = await first.sync();
    await first.write(score('r2', 2, 99, 99)); // written after the checkpoint: a crash loses it
    await first.abort();

    const second = npyFileSink(file);
    expect(await second.open([position])).toBe(0);
    await second.write(score('r2', 2, 3, 4));
    await second.close();
    const tensor = readNpy(await readFile(file));
    expect(tensor.shape).toEqual([3, 2]);
    expect(Array.from(tensor.data as Float32Array)).toEqual([NaN, NaN, 1, 2, 3, 4]);
  });

  it('.npz and .npy: resumed from a checkpoint, or afresh when the file is shorter than it says', async () => {
    const file = join(dir, 'resumed.npz');
    const first = npzSink(file);
    expect(await first.open([])).toBe(-1);
    for (let i = 0; i < 3; i++) await first.write(score(`r${i}`, i, i, i));
    const position = await first.sync();
    await first.write(score('lost', 3, 99, 99));
    await first.abort();
    const second = npzSink(file);
    expect(await second.open([position])).toBe(0);
    await second.write(score('r3', 3, 3, 3));
    await second.close();
    expect(Array.from(readNpz(await readFile(file)).get('score')!.data as Float32Array)).toEqual([
      0, 0, 1, 1, 2, 2, 3, 3,
    ]);

    const npy = join(dir, 'short.npy');
    const sink = npyFileSink(npy);
    await sink.open([]);
    await sink.write(score('a', 0, 1, 1));
    const at = await sink.sync();
    await sink.abort();
    await writeFile(npy, Buffer.alloc(10)); // cut short behind the job's back
    const afresh = npyFileSink(npy);
    expect(await afresh.open([at])).toBe(-1);
    await afresh.abort();
  });

  it('.npz: one array per output, as numpy reads it', async () => {
    const file = join(dir, 'out.npz');
    const sink = npzSink(file);
    await sink.open([]);
    for (let i = 0; i < 300; i++) await sink.write(score(`r${i}`, i, i, -i));
    await sink.close();
    const arrays = readNpz(await readFile(file));
    expect([...arrays.keys()]).toEqual(['score']);
    expect(arrays.get('score')!.shape).toEqual([300, 2]);
    expect((arrays.get('score')!.data as Float32Array).subarray(598)).toEqual(Float32Array.of(299, -299));
  });

  it('CSV: a resumed file keeps its header and drops what came after the checkpoint', async () => {
    const file = join(dir, 'out.csv');
    const first = csvSink(new PlainFile(file));
    await first.open([]);
    await first.write(score('a', 0, 1, 2));
    const position = await first.sync();
    await first.write(score('lost', 1, 0, 0));
    await first.abort();
    const second = csvSink(new PlainFile(file));
    expect(await second.open([position])).toBe(0);
    await second.write(score('b,"q"', 1, 3, 4.5));
    await second.close();
    expect(await readFile(file, 'utf8')).toBe('id,score_0,score_1\na,1,2\n"b,""q""",3,4.5\n');
  });
});

describe('checkpoint', () => {
  it('is written whole or not at all, and names what changed between two jobs', async () => {
    const path = join(dir, 'c.json');
    expect(await readCheckpoint(path)).toBeUndefined();
    const checkpoint = {
      format: 'quanta-batch-checkpoint' as const,
      version: 1 as const,
      fingerprint: { input: 'a.csv', window: 8 },
      marks: [{ records: 3, replayFrom: 3, succeeded: 3, failures: 0, sink: { bytes: 10 }, errors: { bytes: 0 } }],
      complete: false,
    };
    await writeCheckpoint(path, checkpoint);
    expect(await readCheckpoint(path)).toEqual(checkpoint);
    await writeFile(path, '{"format": "something else"}');
    await expect(readCheckpoint(path)).rejects.toThrow(/not a batch checkpoint/);
    expect(fingerprintDifference({ input: 'a.csv' }, { input: 'a.csv' })).toBeUndefined();
    expect(fingerprintDifference({ input: 'a.csv' }, { input: 'b.csv' })).toBe('input was "a.csv", now "b.csv"');
  });
});

/** A one-member ZIP, stored (method 0) or deflated (8), as numpy's savez and savez_compressed write. */
function zipOf(name: string, data: Buffer, method: 0 | 8): Buffer {
  const body = method === 0 ? data : deflateRawSync(data);
  const nameBytes = Buffer.from(name);
  const crc = crc32(data) >>> 0;
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(20, 4);
  local.writeUInt16LE(method, 8);
  local.writeUInt32LE(crc, 14);
  local.writeUInt32LE(body.length, 18);
  local.writeUInt32LE(data.length, 22);
  local.writeUInt16LE(nameBytes.length, 26);
  const entry = Buffer.alloc(46);
  entry.writeUInt32LE(0x02014b50, 0);
  entry.writeUInt16LE(20, 4);
  entry.writeUInt16LE(20, 6);
  entry.writeUInt16LE(method, 10);
  entry.writeUInt32LE(crc, 16);
  entry.writeUInt32LE(body.length, 20);
  entry.writeUInt32LE(data.length, 24);
  entry.writeUInt16LE(nameBytes.length, 28);
  const directoryAt = 30 + nameBytes.length + body.length;
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(46 + nameBytes.length, 12);
  end.writeUInt32LE(directoryAt, 16);
  return Buffer.concat([local, nameBytes, body, entry, nameBytes, end]);
}
