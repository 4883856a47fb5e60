import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterEach, describe, expect, it } from 'vitest';
import { OnnxDataType, buildCnn, buildMlp, encodeModel } from '@quanta/onnx';
import { tensorFromOrt, tensorToOrt } from '@quanta/tensor';
import { createInstancePool } from './instance-pool.js';
import {
  inputs,
  openedPools,
  ppocrClassifierPath,
  randomFloats,
  rejection,
  runDirect,
  servingConfig,
  values,
} from '../testing/core.js';
import { killSessionWorkers, sessionWorkerCount } from './worker-instance.js';

// The instance pool in both execution modes, against onnxruntime called directly in this thread.

const cnn = buildCnn();
const pools = openedPools();
afterEach(() => pools.releaseAll());

const pool: typeof pools.open = (bytes, overrides) => pools.open(bytes, overrides);

describe.each(['worker', 'inline'] as const)('instance pool, %s sessions', (execution) => {
  it('gives the outputs onnxruntime gives directly (CNN and PP-OCR), batch of 3', async () => {
    const ocrPath = ppocrClassifierPath();
    for (const [bytes, input, shape] of [
      [cnn, 'input', [3, 3, 32, 32]],
      [await readFile(ocrPath), 'x', [3, 3, 48, 192]],
    ] as const) {
      const instances = await pool(bytes, { execution, instanceCount: 2 });
      const feed = randomFloats(shape, 5);
      const results = await instances.run(
        { [input]: tensorToOrt(feed) },
        instances.metadata.outputMetadata.map((m) => m.name),
      );
      const expected = await runDirect(bytes, inputs({ [input]: feed }));
      for (const [name, tensor] of expected) {
        const got = results[name];
        expect(got?.dims).toEqual(tensor.shape);
        expect(got?.type).toBe('float32');
        expect(values(got === undefined ? undefined : tensorFromOrt(got))).toEqual(values(tensor));
      }
    }
  });

  it("reports onnxruntime's own time of a run where it can, which the whole wait includes", async () => {
    const instances = await pool(cnn, { execution });
    const timing = { ranNs: -1n };
    const started = process.hrtime.bigint();
    await instances.run({ input: tensorToOrt(randomFloats([4, 3, 32, 32], 6)) }, ['output'], { timing });
    const wall = process.hrtime.bigint() - started;
    expect(instances.timesRuns).toBe(execution === 'worker');
    if (!instances.timesRuns) {
      // Inline: unknown (onnxruntime-node runs it from a setImmediate, after other work).
      expect(timing.ranNs).toBe(-1n);
      return;
    }
    expect(timing.ranNs).toBeGreaterThan(0n);
    expect(timing.ranNs).toBeLessThanOrEqual(wall);
  });

  it('the stats count compute_infer as onnxruntime ran and the rest of the wait as compute_input', async () => {
    const manager = pools.manager();
    const model = await manager.load(
      't',
      'cnn',
      '1',
      cnn,
      servingConfig({ execution, threadsPerInstance: 1, maxBatchSize: 4 }),
    );
    await model.infer({ id: 'a', inputs: inputs({ input: randomFloats([2, 3, 32, 32], 7) }) });
    const stats = model.stats();
    const infer = stats.computeInfer.ns;
    expect(infer).toBeGreaterThan(0n);
    // Per request: queue + compute stages never exceed the request's own time.
    expect(stats.queue.ns + stats.computeInput.ns + infer + stats.computeOutput.ns).toBeLessThanOrEqual(
      stats.success.ns,
    );
  });

  it("reports the model's inputs and outputs", async () => {
    const instances = await pool(cnn, { execution });
    expect(instances.metadata.inputMetadata.map((m) => [m.name, m.isTensor && m.shape])).toEqual([
      ['input', ['N', 3, 32, 32]],
    ]);
    expect(instances.metadata.outputMetadata.map((m) => [m.name, m.isTensor && m.shape])).toEqual([
      ['output', ['N', 10]],
    ]);
  });

  it("rejects with onnxruntime's own message when a run fails, and keeps serving", async () => {
    const instances = await pool(cnn, { execution });
    const wrong = { input: new ort.Tensor('float32', new Float32Array(3 * 16 * 16), [1, 3, 16, 16]) };
    const direct = await ort.InferenceSession.create(cnn);
    const expected = await direct.run(wrong).then(
      () => 'no error',
      (error: unknown) => (error instanceof Error ? error.message : String(error)),
    );
    await direct.release();
    expect(expected).toMatch(/dimension|Got invalid dimensions/i);
    await expect(instances.run(wrong, ['output'])).rejects.toThrow(expected);
    const feed = randomFloats([1, 3, 32, 32], 1);
    const ok = await instances.run({ input: tensorToOrt(feed) }, ['output']);
    expect(ok['output']?.dims).toEqual([1, 10]);
  });

  it('fails to start on bytes that are not a model, leaving no worker behind', async () => {
    const before = sessionWorkerCount();
    await expect(
      createInstancePool(Uint8Array.of(1, 2, 3), servingConfig({ execution, instanceCount: 2 })),
    ).rejects.toThrow(/protobuf|model/i);
    expect(sessionWorkerCount()).toBe(before);
  });

  it('refuses runs after release', async () => {
    const instances = await pool(cnn, { execution });
    await instances.release();
    await expect(instances.run({ input: tensorToOrt(randomFloats([1, 3, 32, 32], 1)) }, ['output'])).rejects.toThrow(
      'the model version has been unloaded',
    );
  });
});

describe('instance pool, worker sessions', () => {
  /** Waits (polling) until `check` holds, for at most `ms`. */
  const eventually = async (check: () => boolean, ms = 10_000): Promise<void> => {
    const until = Date.now() + ms;
    while (!check()) {
      if (Date.now() > until) throw new Error('timed out waiting');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };

  it(
    'replaces a worker that dies: runs in flight fail with its error, ' + 'later ones get what onnxruntime computes',
    async () => {
      const deaths: { error: Error; replaced: Promise<boolean> }[] = [];
      const instances = await createInstancePool(cnn, servingConfig({ execution: 'worker', threadsPerInstance: 1 }), {
        onWorkerDeath: (error, replaced) => deaths.push({ error, replaced }),
      });
      try {
        const feed = randomFloats([2, 3, 32, 32], 71);
        const expected = values((await runDirect(cnn, inputs({ input: feed }))).get('output'));
        const workers = sessionWorkerCount();
        const inFlight = instances.run({ input: tensorToOrt(feed) }, ['output']);
        await killSessionWorkers();
        await expect(inFlight).rejects.toThrow(/worker thread exited/);
        expect(deaths).toHaveLength(1);
        // Runs sent while the new worker starts wait for it.
        const waiting = instances.run({ input: tensorToOrt(feed) }, ['output']);
        expect(await deaths[0]?.replaced).toBe(true);
        const answer = (await waiting)['output'];
        expect(values(answer === undefined ? undefined : tensorFromOrt(answer))).toEqual(expected);
        expect(sessionWorkerCount()).toBe(workers);
        // And it dies and comes back again.
        await killSessionWorkers();
        await eventually(() => deaths.length === 2);
        expect(await deaths[1]?.replaced).toBe(true);
        const again = (await instances.run({ input: tensorToOrt(feed) }, ['output']))['output'];
        expect(values(again === undefined ? undefined : tensorFromOrt(again))).toEqual(expected);
      } finally {
        await instances.release();
      }
    },
  );

  it('fails waiting and later runs, rather than hang, once no new worker can start', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'quanta-respawn-'));
    const path = join(dir, 'cnn.onnx');
    await writeFile(path, cnn);
    const replaced: Promise<boolean>[] = [];
    const instances = await createInstancePool(
      { path },
      servingConfig({ execution: 'worker', threadsPerInstance: 1 }),
      {
        onWorkerDeath: (_error, done) => replaced.push(done),
      },
    );
    try {
      // The model file is gone: a new worker cannot load it.
      await rm(dir, { recursive: true });
      await killSessionWorkers();
      await eventually(() => replaced.length === 1);
      const waiting = instances.run({ input: tensorToOrt(randomFloats([1, 3, 32, 32], 3)) }, ['output']);
      expect(await replaced[0]).toBe(false);
      await expect(waiting).rejects.toThrow(
        /every onnxruntime worker of this model died and none could be restarted: the onnxruntime worker thread exited/,
      );
      await expect(instances.run({ input: tensorToOrt(randomFloats([1, 3, 32, 32], 4)) }, ['output'])).rejects.toThrow(
        /none could be restarted/,
      );
    } finally {
      await instances.release();
    }
  });

  it('starts one worker per instance and ends them on release', async () => {
    const before = sessionWorkerCount();
    const instances = await createInstancePool(cnn, servingConfig({ instanceCount: 3, threadsPerInstance: 1 }));
    expect(sessionWorkerCount()).toBe(before + 3);
    await instances.release();
    expect(sessionWorkerCount()).toBe(before);
  });

  it('fails a run whose feeds cannot be sent to the worker, and keeps serving', async () => {
    const instances = await pool(cnn, { instanceCount: 1 });
    // Not an ort.Tensor: a function in its dims, which the structured clone refuses.
    const unsendable = { type: 'float32', dims: [() => 1], data: new Float32Array(3072) } as unknown as ort.Tensor;
    await expect(instances.run({ input: unsendable }, ['output'])).rejects.toThrow(/could not be cloned/);
    const ok = await instances.run({ input: tensorToOrt(randomFloats([1, 3, 32, 32], 1)) }, ['output']);
    expect(ok['output']?.dims).toEqual([1, 10]);
  });

  it("copies a caller's inputs (they stay usable) and hands over owned ones without a copy", async () => {
    const instances = await pool(cnn, { instanceCount: 1 });
    const kept = tensorToOrt(randomFloats([2, 3, 32, 32], 3));
    const copy = Float32Array.from(kept.data as Float32Array);
    const first = await instances.run({ input: kept }, ['output']);
    expect(Array.from(kept.data as Float32Array)).toEqual(Array.from(copy));
    const given = new ort.Tensor('float32', Float32Array.from(copy), [2, 3, 32, 32]);
    const buffer = given.data.buffer;
    const second = await instances.run({ input: given }, ['output'], { ownedInputs: true });
    // Transferred to the worker: this thread's buffer is detached.
    expect(buffer.byteLength).toBe(0);
    expect(Array.from(second['output']?.data as Float32Array)).toEqual(
      Array.from(first['output']?.data as Float32Array),
    );
  });

  it('serves merged batches on two worker instances through the manager, as onnxruntime computes them', async () => {
    const bytes = buildMlp({ inputSize: 4, hiddenSizes: [16], outputSize: 2, seed: 3 });
    const manager = pools.manager();
    const model = await manager.load(
      't',
      'mlp',
      '1',
      bytes,
      servingConfig({ maxBatchSize: 8, maxQueueDelayUs: 10_000_000, instanceCount: 2 }),
    );
    const requests = [1, 3, 4].map((n, i) => inputs({ input: randomFloats([n, 4], 40 + i) }));
    const results = await Promise.all(requests.map((request, i) => model.infer({ id: `${i}`, inputs: request })));
    for (const [i, request] of requests.entries()) {
      expect(results[i]?.batchSize).toBe(8);
      expect(values(results[i]?.outputs[0])).toEqual(values((await runDirect(bytes, request)).get('output')));
    }
  });

  it('a run that fails in the worker fails its requests with INTERNAL and the onnxruntime message', async () => {
    // y = Reshape(x, [-1, 2, 2]) over x [N, K]: valid for K = 4 only, which only onnxruntime checks.
    const reshape = encodeModel({
      graph: {
        name: 'reshape',
        nodes: [{ opType: 'Reshape', inputs: ['x', 'shape'], outputs: ['y'] }],
        initializers: [
          {
            name: 'shape',
            dataType: OnnxDataType.INT64,
            dims: [3],
            raw: new Uint8Array(BigInt64Array.of(-1n, 2n, 2n).buffer),
          },
        ],
        inputs: [{ name: 'x', dataType: OnnxDataType.FLOAT, shape: ['N', 'K'] }],
        outputs: [{ name: 'y', dataType: OnnxDataType.FLOAT, shape: ['N', 2, 2] }],
      },
    });
    const manager = pools.manager();
    const model = await manager.load('t', 'reshape', '1', reshape, servingConfig({ threadsPerInstance: 1 }));
    const error = await rejection(model.infer({ id: 'bad', inputs: inputs({ x: randomFloats([1, 3], 1) }) }));
    expect(error.code).toBe('INTERNAL');
    expect(error.message).toMatch(/^model "reshape" failed to run a batch of 1: .*reshape/i);
    const good = await model.infer({ id: 'good', inputs: inputs({ x: randomFloats([1, 4], 2) }) });
    expect(good.outputs[0]?.shape).toEqual([1, 2, 2]);
    expect(values(good.outputs[0])).toEqual(values(randomFloats([1, 4], 2)));
  });

  it("hot swap: activating a new version and unloading the old one leaves only the new one's workers", async () => {
    const manager = pools.manager();
    const before = sessionWorkerCount();
    await manager.load('t', 'cnn', '1', cnn, servingConfig({ instanceCount: 2 }));
    await manager.activate('t', 'cnn', '1');
    expect(sessionWorkerCount()).toBe(before + 2);
    await manager.load('t', 'cnn', '2', buildCnn({ seed: 7 }), servingConfig({ instanceCount: 2 }));
    await manager.activate('t', 'cnn', '2');
    // The previous current version drained and released: its two workers are gone.
    expect(sessionWorkerCount()).toBe(before + 2);
    const feed = inputs({ input: randomFloats([1, 3, 32, 32], 2) });
    const answer = await manager.get('t', 'cnn').infer({ id: 'x', inputs: feed });
    expect(answer.version).toBe('2');
    expect(values(answer.outputs[0])).toEqual(values((await runDirect(buildCnn({ seed: 7 }), feed)).get('output')));
    await manager.close();
    expect(sessionWorkerCount()).toBe(before);
  });
});

describe('instance pool, worker sessions, in a process of their own', () => {
  it(
    'an idle worker does not keep the process alive, ' + 'and unloading waits for the workers (no exit 13 mid-unload)',
    async () => {
      const script = [
        "import { buildCnn } from '@quanta/onnx';",
        "import { createModelManager } from '@quanta/inference';",
        'const manager = createModelManager();',
        "const model = await manager.load('t', 'cnn', '1', buildCnn(), {",
        '  maxBatchSize: 8, maxQueueDelayUs: 1000, instanceCount: 2, maxQueueSize: 0,',
        '  sequenceState: [], sequenceIdleTimeoutMs: 0, threadsPerInstance: 1,',
        '});',
        "const input = { name: 'input', datatype: 'FP32', shape: [1, 3, 32, 32], data: new Float32Array(3072) };",
        "const answer = await model.infer({ id: 'x', inputs: new Map([['input', input]]) });",
        "console.log('answered', answer.outputs[0].shape.join('x'));",
        'await manager.close();',
        "console.log('closed');",
      ].join('\n');
      const child = spawn(
        process.execPath,
        ['--conditions=@quanta/source', '--import', 'tsx', '--input-type=module', '-e', script],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      let err = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      expect({ code, out, err: err.includes('Error') ? err : '' }).toEqual({
        code: 0,
        out: 'answered 1x10\nclosed\n',
        err: '',
      });
    },
  );
});
