// `quanta batch` against a live stack: every input format, the errors file, a job killed with
// SIGKILL and resumed (no row twice, none missing), encrypted outputs read back by `quanta decrypt`
// and by Python's cryptography, and a stateful LSTM dataset checked against state carried by hand.
// Every output is checked against onnxruntime running the same model in this process.
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { buildLstm, buildMlp } from '@quanta/onnx';
import { createTensor, readNpy, readNpz, writeNpy } from '@quanta/tensor';
import { parquetWriteBuffer } from 'hyparquet-writer';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, connectClients, deploymentSpec, issueToken, pushModel, waitServed, type Clients } from './clients.js';
import { REPO_ROOT, runCli, startStack, type CliResult, type Stack } from './stack.js';

const FEATURES = 6;
const mlp = buildMlp({ inputSize: FEATURES, hiddenSizes: [32], outputSize: 3, seed: 7 });
const lstm = buildLstm({ inputSize: 4, hiddenSize: 8, seed: 5 });

let stack: Stack;
let clients: Clients;
let token: string;
let dir: string;
let mlpSession: ort.InferenceSession;
let lstmSession: ort.InferenceSession;

const env = (): NodeJS.ProcessEnv => ({ ...stack.env, QUANTA_TOKEN: token });
const quanta = (args: string[]): Promise<CliResult> => runCli(args, env());

/** Deterministic feature rows: row i, column j. */
const feature = (i: number, j: number): number => Math.fround(Math.sin(i * 0.37 + j * 1.3) * 2);
const rowOf = (i: number): number[] => Array.from({ length: FEATURES }, (_, j) => feature(i, j));

/** onnxruntime's output rows for `rows` input rows of the MLP. */
async function mlpReference(rows: readonly number[]): Promise<Float32Array[]> {
  const data = Float32Array.from(rows.flatMap(rowOf));
  const out = await mlpSession.run({ input: new ort.Tensor('float32', data, [rows.length, FEATURES]) });
  const values = out['output']!.data as Float32Array;
  return rows.map((_, k) => values.subarray(k * 3, k * 3 + 3));
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  expect(actual.length, what).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (Math.abs(actual[i]! - expected[i]!) > 1e-5) throw new Error(`${what}[${i}]: ${actual[i]} != ${expected[i]}`);
  }
}

function csvOf(rows: readonly number[], extra: (i: number) => string[] = () => []): string {
  const header = ['id', ...Array.from({ length: FEATURES }, (_, j) => `f${j}`)];
  const lines = rows.map((i) => [`row-${i}`, ...rowOf(i).map(String), ...extra(i)].join(','));
  return `${[header.join(','), ...lines].join('\n')}\n`;
}

/** Output CSV rows: id and values, in file order. */
function parseCsv(text: string): { header: string[]; rows: { id: string; values: number[] }[] } {
  const [header, ...lines] = text.trim().split('\n');
  return {
    header: header!.split(','),
    rows: lines.map((line) => {
      const [id, ...values] = line.split(',');
      return { id: id!, values: values.map(Number) };
    }),
  };
}

beforeAll(async () => {
  stack = await startStack({ services: ['crypto', 'model-registry', 'inference'] });
  clients = connectClients(stack);
  token = await issueToken(clients, stack.adminToken, 'acme', [
    'models:read',
    'models:write',
    'infer',
    'keys:admin',
    'keys:use',
  ]);
  await pushModel(clients, token, 'mlp', mlp);
  await clients.rpc.registry(
    'createDeployment',
    { name: 'mlp', spec: deploymentSpec('mlp:1') },
    { metadata: bearer(token) },
  );
  await pushModel(clients, token, 'lstm', lstm);
  await clients.rpc.registry(
    'createDeployment',
    {
      name: 'lstm',
      spec: deploymentSpec('lstm:1', {
        maxBatchSize: 0,
        sequenceState: [
          { inputName: 'h', outputName: 'hn' },
          { inputName: 'c', outputName: 'cn' },
        ],
      }),
    },
    { metadata: bearer(token) },
  );
  await waitServed(clients, token, 'mlp');
  await waitServed(clients, token, 'lstm');
  mlpSession = await ort.InferenceSession.create(mlp);
  lstmSession = await ort.InferenceSession.create(lstm);
  dir = await mkdtemp(join(tmpdir(), 'quanta-batch-'));
}, 240_000);

afterAll(async () => {
  await mlpSession?.release();
  await lstmSession?.release();
  clients?.close();
  await stack?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe('quanta batch', () => {
  it('CSV in and out, 8 rows a request: each row as onnxruntime answers it; bad rows in the errors file', async () => {
    const ids = Array.from({ length: 203 }, (_, i) => i);
    const text = csvOf(ids)
      .replace(/^row-17,[^,]*,/m, 'row-17,not-a-number,') // a feature that is not a number
      .replace(/^(row-40,[^\n]*),[^,\n]*$/m, '$1'); // one field short
    const input = join(dir, 'table.csv');
    await writeFile(input, text);
    const out = join(dir, 'table-out.csv');
    const run = await quanta([
      'batch',
      'mlp',
      '--input',
      input,
      '--out',
      out,
      '--batch-rows',
      '8',
      '--window',
      '8',
      '--json',
    ]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const summary = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(summary).toMatchObject({ model: 'mlp', records: 203, succeeded: 201, failures: 2, resumedFrom: 0 });

    const { header, rows } = parseCsv(await readFile(out, 'utf8'));
    expect(header).toEqual(['id', 'output_0', 'output_1', 'output_2']);
    const good = ids.filter((i) => i !== 17 && i !== 40);
    expect(rows.map((r) => r.id)).toEqual(good.map((i) => `row-${i}`));
    const expected = await mlpReference(good);
    rows.forEach((r, k) => expectClose(r.values, expected[k]!, r.id));

    const errors = (await readFile(`${out}.errors.jsonl`, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; index: number; code: string; message: string });
    expect(errors.map((e) => [e.id, e.index, e.code])).toEqual([
      ['row-17', 17, 'INVALID_ARGUMENT'],
      ['row-40', 40, 'INVALID_ARGUMENT'],
    ]);
    expect(errors[0]!.message).toMatch(/not a number/);
    expect(errors[1]!.message).toMatch(/has 6 fields, the header 7/);
  }, 120_000);

  it('a folder of .npy files, an .npy of rows, .npz, JSON Lines, Parquet: each as onnxruntime answers', async () => {
    const ids = Array.from({ length: 25 }, (_, i) => i);
    const expected = await mlpReference(ids);
    const tensorOf = (rows: readonly number[]) =>
      createTensor('FP32', [rows.length, FEATURES], Float32Array.from(rows.flatMap(rowOf)));

    // A folder: <id>.npy each, saved without the row dim.
    const folder = join(dir, 'npy-in');
    await mkdir(folder);
    for (const i of ids)
      await writeFile(
        join(folder, `r${String(i).padStart(3, '0')}.npy`),
        writeNpy(createTensor('FP32', [FEATURES], Float32Array.from(rowOf(i)))),
      );
    const folderOut = join(dir, 'npy-out');
    const a = await quanta(['batch', 'mlp', '--input', folder, '--out', folderOut]);
    expect(a.code, a.stderr).toBe(0);
    expect((await readdir(folderOut)).sort()).toEqual(ids.map((i) => `r${String(i).padStart(3, '0')}.output.npy`));
    for (const i of ids)
      expectClose(
        readNpy(await readFile(join(folderOut, `r${String(i).padStart(3, '0')}.output.npy`))).data as Float32Array,
        expected[i]!,
        `npy ${i}`,
      );

    // One .npy of rows: an .npy of output rows, index for index.
    const rowsIn = join(dir, 'rows.npy');
    await writeFile(rowsIn, writeNpy(tensorOf(ids)));
    const rowsOut = join(dir, 'rows-out.npy');
    const b = await quanta(['batch', 'mlp', '--input', rowsIn, '--out', rowsOut, '--batch-rows', '4']);
    expect(b.code, b.stderr).toBe(0);
    const rowsTensor = readNpy(await readFile(rowsOut));
    expect(rowsTensor.shape).toEqual([25, 3]);
    ids.forEach((i) =>
      expectClose((rowsTensor.data as Float32Array).subarray(i * 3, i * 3 + 3), expected[i]!, `rows ${i}`),
    );

    // An .npz (its one array goes to the model's one input): an .npz with one array per output.
    const npzIn = join(dir, 'data.npz');
    await writeFile(npzIn, zipOf([{ name: 'input.npy', data: writeNpy(tensorOf(ids)) }]));
    const npzOut = join(dir, 'data-out.npz');
    const c = await quanta(['batch', 'mlp', '--input', npzIn, '--out', npzOut]);
    expect(c.code, c.stderr).toBe(0);
    const arrays = readNpz(await readFile(npzOut));
    expect([...arrays.keys()]).toEqual(['output']);
    expect(arrays.get('output')!.shape).toEqual([25, 3]);
    ids.forEach((i) =>
      expectClose((arrays.get('output')!.data as Float32Array).subarray(i * 3, i * 3 + 3), expected[i]!, `npz ${i}`),
    );

    // JSON Lines of KServe tensors, ids of their own.
    const jsonlIn = join(dir, 'data.jsonl');
    const jsonLines = ids.map((i) =>
      JSON.stringify({
        id: `j${i}`,
        inputs: [{ name: 'input', shape: [1, FEATURES], datatype: 'FP32', data: rowOf(i) }],
      }),
    );
    // Two more: one the server rejects (a shape the model does not take), one that is not JSON.
    jsonLines.splice(
      3,
      0,
      JSON.stringify({ id: 'wrong-shape', inputs: [{ name: 'input', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] }),
    );
    jsonLines.splice(7, 0, '{"id": "broken", ');
    await writeFile(jsonlIn, `${jsonLines.join('\n')}\n`);
    const jsonlOut = join(dir, 'data-out.jsonl');
    const d = await quanta(['batch', 'mlp', '--input', jsonlIn, '--out', jsonlOut, '--batch-rows', '4', '--json']);
    expect(d.code, d.stderr).toBe(0);
    expect(JSON.parse(d.stdout)).toMatchObject({ records: 27, succeeded: 25, failures: 2 });
    const jsonlErrors = (await readFile(`${jsonlOut}.errors.jsonl`, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; index: number; code: string; message: string });
    expect(jsonlErrors.map((e) => [e.id, e.index, e.code])).toEqual([
      ['wrong-shape', 3, 'INVALID_ARGUMENT'],
      ['7', 7, 'INVALID_ARGUMENT'],
    ]);
    expect(jsonlErrors[0]!.message).toMatch(/expected shape \[-1,6\]/);
    const lines = (await readFile(jsonlOut, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; outputs: { name: string; shape: number[]; data: number[] }[] });
    expect(lines.map((l) => l.id)).toEqual(ids.map((i) => `j${i}`));
    lines.forEach((l, i) => {
      expect(l.outputs[0]!).toMatchObject({ name: 'output', datatype: 'FP32', shape: [1, 3] });
      expectClose(l.outputs[0]!.data, expected[i]!, l.id);
    });

    // Parquet: an id column and feature columns; written as JSON Lines.
    const parquetIn = join(dir, 'data.parquet');
    const columnData = [
      { name: 'id', data: ids.map((i) => `p${i}`), type: 'STRING' as const },
      ...Array.from({ length: FEATURES }, (_, j) => ({
        name: `f${j}`,
        data: Float64Array.from(ids, (i) => feature(i, j)),
        type: 'DOUBLE' as const,
      })),
    ];
    await writeFile(parquetIn, Buffer.from(parquetWriteBuffer({ columnData, rowGroupSize: 10 })));
    const parquetOut = join(dir, 'parquet-out.jsonl');
    const e = await quanta(['batch', 'mlp', '--input', parquetIn, '--out', parquetOut, '--json']);
    expect(e.code, e.stderr).toBe(0);
    const parquetLines = (await readFile(parquetOut, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; outputs: { data: number[] }[] });
    expect(parquetLines.map((l) => l.id)).toEqual(ids.map((i) => `p${i}`));
    parquetLines.forEach((l, i) => expectClose(l.outputs[0]!.data, expected[i]!, l.id));
  }, 180_000);

  it('killed with SIGKILL mid-job, resumed: every row once, in order, right (plain and AEAD-sealed)', async () => {
    const ids = Array.from({ length: 12000 }, (_, i) => i);
    const input = join(dir, 'big.csv');
    await writeFile(input, csvOf(ids));
    const expected = await mlpReference(ids);
    await quanta(['keys', 'create', 'batch-aead', '--type', 'aes256-gcm']).then((r) =>
      expect(r.code, r.stderr).toBe(0),
    );

    for (const encrypted of [false, true]) {
      const out = join(dir, encrypted ? 'big-out.csv.enc' : 'big-out.csv');
      const args = [
        'batch',
        'mlp',
        '--input',
        input,
        '--out',
        out,
        '--window',
        '2',
        // One row per request keeps the job slow enough to be killed part-way.
        '--batch-rows',
        '1',
        '--format',
        'csv',
        ...(encrypted ? ['--encrypt-with', 'batch-aead'] : []),
      ];
      // The CLI's own process (not the launcher), so that SIGKILL ends the process that writes.
      const child = spawn(
        process.execPath,
        ['--conditions=@quanta/source', '--import', 'tsx', join(REPO_ROOT, 'tools/cli/src/main.ts'), ...args],
        {
          cwd: REPO_ROOT,
          env: env(),
          stdio: 'ignore',
        },
      );
      const exited = new Promise((resolve) => child.once('exit', resolve));
      const checkpoint = `${out}.checkpoint.json`;
      // Killed once a checkpoint holds some rows (the job is then well under way, not finished); an
      // encrypted output resumes from an older mark than the latest (the stream's last segment lags).
      for (;;) {
        const done = await readFile(checkpoint, 'utf8').then(
          (t) => (JSON.parse(t) as { marks: { records: number }[] }).marks.at(-1)?.records ?? 0,
          () => 0,
        );
        if (done >= 4000) break;
        if (child.exitCode !== null) throw new Error('the job finished before it could be killed');
        await new Promise((r) => setTimeout(r, 20));
      }
      child.kill('SIGKILL');
      await exited;

      const resumed = await quanta([...args, '--resume', '--json']);
      expect(resumed.stderr).toBe('');
      expect(resumed.code).toBe(0);
      const summary = JSON.parse(resumed.stdout) as { records: number; resumedFrom: number; failures: number };
      expect(summary.records).toBe(12000);
      expect(summary.failures).toBe(0);
      expect(summary.resumedFrom).toBeGreaterThanOrEqual(encrypted ? 1000 : 4000);
      expect(summary.resumedFrom).toBeLessThan(12000);

      let text: string;
      if (encrypted) {
        const plain = spawnSync(
          process.execPath,
          [join(REPO_ROOT, 'tools/cli/bin/quanta.mjs'), 'decrypt', '--key', 'batch-aead'],
          {
            input: await readFile(out),
            env: env(),
            cwd: REPO_ROOT,
          },
        );
        expect(plain.stderr.toString()).toBe('');
        expect(plain.status).toBe(0);
        text = plain.stdout.toString('utf8');
      } else text = await readFile(out, 'utf8');
      const { rows } = parseCsv(text);
      expect(rows.map((r) => r.id)).toEqual(ids.map((i) => `row-${i}`));
      rows.forEach((r, i) => expectClose(r.values, expected[i]!, r.id));
    }
  }, 300_000);

  it('--encrypt-with a fernet key: each output row is a token that Python cryptography decrypts', async () => {
    const python = '/usr/bin/python3';
    const probe = spawnSync(python, ['-c', 'import cryptography.fernet']);
    if (probe.status !== 0)
      throw new Error(`${python} has no cryptography module: apt-get install python3-cryptography`);
    // A key made by Python, imported into the tenant: what the partner holds.
    const fernetKey = spawnSync(python, [
      '-c',
      'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())',
    ])
      .stdout.toString()
      .trim();
    const keyFile = join(dir, 'fernet.key');
    await writeFile(keyFile, fernetKey);
    const imported = await quanta(['keys', 'import', 'batch-fernet', '--type', 'fernet', '--file', keyFile]);
    expect(imported.code, imported.stderr).toBe(0);

    const ids = Array.from({ length: 40 }, (_, i) => i);
    const input = join(dir, 'fernet.csv');
    await writeFile(input, csvOf(ids));
    const out = join(dir, 'fernet-out.csv');
    const run = await quanta(['batch', 'mlp', '--input', input, '--out', out, '--encrypt-with', 'batch-fernet']);
    expect(run.code, run.stderr).toBe(0);
    const decrypted = spawnSync(
      python,
      [
        '-c',
        [
          'import sys',
          'from cryptography.fernet import Fernet',
          'f = Fernet(sys.argv[1].encode())',
          'for line in sys.stdin:',
          '    print(f.decrypt(line.strip().encode()).decode())',
        ].join('\n'),
        fernetKey,
      ],
      { input: await readFile(out) },
    );
    expect(decrypted.stderr.toString()).toBe('');
    expect(decrypted.status).toBe(0);
    const { header, rows } = parseCsv(decrypted.stdout.toString('utf8'));
    expect(header[0]).toBe('id');
    expect(rows.map((r) => r.id)).toEqual(ids.map((i) => `row-${i}`));
    const expected = await mlpReference(ids);
    rows.forEach((r, i) => expectClose(r.values, expected[i]!, r.id));
  }, 120_000);

  it('an LSTM dataset by sequence: each step answers as onnxruntime does with the state carried by hand', async () => {
    // Three sequences of 5, 1 and 7 steps, contiguous; x of each step from its sequence and step.
    const lengths = { a: 5, b: 1, c: 7 } as const;
    const steps = Object.entries(lengths).flatMap(([seq, n]) => Array.from({ length: n }, (_, t) => ({ seq, t })));
    const xOf = (seq: string, t: number): number[] =>
      Array.from({ length: 4 }, (_, k) => Math.fround(Math.cos(seq.charCodeAt(0) + t * 0.7 + k)));
    const input = join(dir, 'steps.csv');
    await writeFile(
      input,
      `id,seq,x0,x1,x2,x3\n${steps.map(({ seq, t }) => [`${seq}${t}`, seq, ...xOf(seq, t)].join(',')).join('\n')}\n`,
    );
    const out = join(dir, 'steps-out.jsonl');
    const run = await quanta([
      'batch',
      'lstm',
      '--input',
      input,
      '--out',
      out,
      '--format',
      'jsonl',
      '--sequence-column',
      'seq',
      '--output',
      'hn',
    ]);
    expect(run.code, run.stderr).toBe(0);
    const lines = (await readFile(out, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; outputs: { name: string; data: number[] }[] });
    expect(lines.map((l) => l.id)).toEqual(steps.map(({ seq, t }) => `${seq}${t}`));

    // By hand: h and c start at zero for each sequence and are fed back from hn and cn.
    let k = 0;
    for (const [seq, n] of Object.entries(lengths)) {
      let h: Float32Array = new Float32Array(8);
      let c: Float32Array = new Float32Array(8);
      for (let t = 0; t < n; t++, k++) {
        const result = await lstmSession.run({
          x: new ort.Tensor('float32', Float32Array.from(xOf(seq, t)), [1, 1, 4]),
          h: new ort.Tensor('float32', h, [1, 1, 8]),
          c: new ort.Tensor('float32', c, [1, 1, 8]),
        });
        h = result['hn']!.data as Float32Array;
        c = result['cn']!.data as Float32Array;
        expect(lines[k]!.outputs.map((o) => o.name)).toEqual(['hn']);
        expectClose(lines[k]!.outputs[0]!.data, h, `${seq}${t}`);
      }
    }
  }, 120_000);

  it('--max-failures stops the job with exit code 1; bad flags exit with 2', async () => {
    const input = join(dir, 'bad.jsonl');
    const bad = Array.from({ length: 20 }, (_, i) =>
      JSON.stringify({ id: `x${i}`, inputs: [{ name: 'input', shape: [1, 2], data: [i, i] }] }),
    );
    await writeFile(input, `${bad.join('\n')}\n`);
    const stopped = await quanta([
      'batch',
      'mlp',
      '--input',
      input,
      '--out',
      join(dir, 'bad-out.jsonl'),
      '--max-failures',
      '3',
    ]);
    expect(stopped.code).toBe(1);
    expect(stopped.stderr).toMatch(/stopped: 4 records failed, more than the 3 allowed/);

    const usage = await quanta([
      'batch',
      'mlp',
      '--input',
      input,
      '--out',
      join(dir, 'x.parquet'),
      '--format',
      'parquet',
    ]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/Parquet is read, not written/);
    const missing = await quanta(['batch', 'mlp', '--input', join(dir, 'nothing.csv'), '--out', join(dir, 'x.csv')]);
    expect(missing.code).toBe(2);
    expect((await stat(input)).isFile()).toBe(true);
  }, 60_000);
});

/** A stored ZIP of `members`, as np.savez writes one. */
function zipOf(members: { name: string; data: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let at = 0;
  for (const { name, data } of members) {
    const nameBytes = Buffer.from(name);
    const crc = crc32(data) >>> 0;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    const entry = Buffer.alloc(46);
    entry.writeUInt32LE(0x02014b50, 0);
    entry.writeUInt16LE(20, 4);
    entry.writeUInt16LE(20, 6);
    entry.writeUInt32LE(crc, 16);
    entry.writeUInt32LE(data.length, 20);
    entry.writeUInt32LE(data.length, 24);
    entry.writeUInt16LE(nameBytes.length, 28);
    entry.writeUInt32LE(at, 42);
    parts.push(local, nameBytes, data);
    central.push(entry, nameBytes);
    at += 30 + nameBytes.length + data.length;
  }
  const directory = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(members.length, 8);
  end.writeUInt16LE(members.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(at, 16);
  return Buffer.concat([...parts, directory, end]);
}
