import { afterEach, describe, expect, it } from 'vitest';
import { buildMlp } from '@quanta/onnx';
import { systemClock } from './clock.js';
import { createDynamicBatcher, type BatchJob, type DynamicBatcher, type JobResult } from './dynamic-batcher.js';
import { createInstancePool, type InstancePool } from './instance-pool.js';
import { signatureOf } from './signature.js';
import { createStatsRecorder } from './stats.js';
import { gatedPool, inputs, randomFloats, rejection, servingConfig, values, type GatedRun } from '../testing/core.js';
import type { QueuePolicy, ServingConfig } from './types.js';

// Priorities and queue policies in the dynamic batcher, over a real onnxruntime session (inline,
// one run at a time) whose runs wait until the test lets them go: the test decides when the one
// instance is busy, so which request leaves the queue first is an order, not a timing.

const bytes = buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: 5 });

let pools: InstancePool[] = [];
afterEach(async () => {
  await Promise.all(pools.map((pool) => pool.release()));
  pools = [];
});

interface Rig {
  batcher: DynamicBatcher;
  runs: GatedRun[];
  /** Submits request `id` (its input seeded by it); `finished` gets the id once it is answered. */
  submit: (id: number, extra?: Partial<BatchJob>) => Promise<JobResult>;
  finished: number[];
}

async function rig(overrides: Partial<ServingConfig>, batching = false): Promise<Rig> {
  // No batching unless asked: each request runs alone, so the order requests leave the queue is the run order.
  const config = servingConfig({ threadsPerInstance: 1, execution: 'inline', ...overrides });
  const real = await createInstancePool(bytes, config);
  pools.push(real);
  const { pool, runs } = gatedPool(real);
  const { signature } = signatureOf(pool.metadata);
  const batcher = createDynamicBatcher({
    model: 'mlp',
    signature,
    config,
    pool,
    stats: createStatsRecorder('mlp', '1'),
    clock: systemClock,
    batching,
  });
  const finished: number[] = [];
  return {
    batcher,
    runs,
    finished,
    submit: (id, extra = {}) =>
      batcher
        .submit({ inputs: inputs({ input: randomFloats([1, 4], id) }), fetches: ['output'], ...extra })
        .then((result) => {
          finished.push(id);
          return result;
        }),
  };
}

/** Opens the runs one by one as the batcher starts them, until `count` have run. */
async function openRuns(runs: GatedRun[], count: number): Promise<void> {
  for (let opened = 0; opened < count;) {
    const run = runs[opened];
    if (run === undefined) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      continue;
    }
    run.open();
    opened++;
  }
}

const policy = (over: Partial<QueuePolicy>): QueuePolicy => ({
  maxQueueSize: 0,
  timeoutUs: 0,
  delayOnTimeout: false,
  allowTimeoutOverride: false,
  ...over,
});

describe('priorities', () => {
  it('takes queued higher-priority requests first, in arrival order within a level', async () => {
    const { submit, runs, finished } = await rig({ priorityLevels: 3, defaultPriorityLevel: 2 });
    // 1 takes the only instance; the rest queue behind it.
    const all = [
      submit(1, { priority: 3 }),
      submit(2, { priority: 3 }),
      submit(3, {}), // the default level, 2
      submit(4, { priority: 1 }),
      submit(5, { priority: 3 }),
      submit(6, { priority: 1 }),
      submit(7, { priority: 0 }), // 0 is the default level too
    ];
    expect(runs).toHaveLength(1);
    await openRuns(runs, all.length);
    const results = await Promise.all(all);
    expect(finished).toEqual([1, 4, 6, 3, 7, 2, 5]);
    // Each got its own answer.
    expect(values(results[3]?.outputs.get('output'))).toHaveLength(3);
  });

  it('fills a batch from the highest level first', async () => {
    const { submit, runs, finished } = await rig({ priorityLevels: 2, maxBatchSize: 2 }, true);
    const all = [
      submit(1, { priority: 2 }),
      submit(2, { priority: 2 }),
      submit(3, { priority: 2 }),
      submit(4, { priority: 1 }),
      submit(5, { priority: 1 }),
    ];
    // 1 left at once (the instance was free, no delay to wait); the others wait behind it.
    expect(runs.map((r) => r.rows)).toEqual([1]);
    await openRuns(runs, 3);
    await Promise.all(all);
    expect(runs.map((r) => r.rows)).toEqual([1, 2, 2]);
    expect(finished).toEqual([1, 4, 5, 2, 3]);
  });

  it('refuses a priority above the levels, and ignores priority without levels (Triton)', async () => {
    const leveled = await rig({ priorityLevels: 2 });
    const error = await rejection(leveled.submit(1, { priority: 3 }));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toMatch(/priority 3 is out of range: the deployment has 2 priority levels/);

    const flat = await rig({});
    const answered = flat.submit(2, { priority: 9 });
    await openRuns(flat.runs, 1);
    expect((await answered).batchSize).toBe(1);
  });

  it("caps one level's queue without refusing another level", async () => {
    const { submit, runs } = await rig({
      priorityLevels: 2,
      priorityQueuePolicies: { 2: policy({ maxQueueSize: 2 }) },
    });
    const accepted = [submit(1, { priority: 2 }), submit(2, { priority: 2 }), submit(3, { priority: 2 })];
    const full = await rejection(submit(4, { priority: 2 }));
    expect(full.code).toBe('RESOURCE_EXHAUSTED');
    expect(full.message).toMatch(/queue of priority level 2 is full \(2 requests waiting\)/);
    accepted.push(submit(5, { priority: 1 }), submit(6, { priority: 1 }), submit(7, { priority: 1 }));
    await openRuns(runs, accepted.length);
    expect(await Promise.all(accepted)).toHaveLength(6);
  });
});

describe('queue policies', () => {
  it('refuses a request whose level timeout passes in the queue (REJECT), the others still run', async () => {
    const { submit, runs, finished } = await rig({
      priorityLevels: 2,
      priorityQueuePolicies: { 1: policy({ timeoutUs: 30_000 }) },
    });
    const busy = submit(1, { priority: 2 });
    const timed = submit(2, { priority: 1 });
    const patient = submit(3, { priority: 2 });
    const error = await rejection(timed);
    expect(error.code).toBe('DEADLINE_EXCEEDED');
    expect(error.message).toMatch(/queue timeout \(priority level 1\) passed/);
    await openRuns(runs, 2);
    await Promise.all([busy, patient]);
    expect(finished).toEqual([1, 3]);
  });

  it('moves a request whose level timeout passes behind every level (DELAY), where it still runs', async () => {
    const { submit, runs, finished } = await rig({
      priorityLevels: 2,
      priorityQueuePolicies: { 1: policy({ timeoutUs: 20_000, delayOnTimeout: true }) },
    });
    const all = [submit(1, { priority: 2 }), submit(2, { priority: 1 }), submit(3, { priority: 2 })];
    // Before its timeout, 2 is first in line; after it, it is behind 3.
    await new Promise((resolve) => setTimeout(resolve, 80));
    all.push(submit(4, { priority: 2 }));
    await openRuns(runs, all.length);
    await Promise.all(all);
    expect(finished).toEqual([1, 3, 4, 2]);
  });

  it("applies the request's own timeout only where the level allows it to override", async () => {
    const overridable = await rig({
      defaultQueuePolicy: policy({ timeoutUs: 60_000_000, allowTimeoutOverride: true }),
    });
    const busy = overridable.submit(1);
    const own = await rejection(overridable.submit(2, { timeoutUs: 20_000 }));
    expect(own.code).toBe('DEADLINE_EXCEEDED');
    await openRuns(overridable.runs, 1);
    await busy;

    const fixed = await rig({ defaultQueuePolicy: policy({ timeoutUs: 60_000_000 }) });
    const first = fixed.submit(1);
    const ignored = fixed.submit(2, { timeoutUs: 20_000 });
    await new Promise((resolve) => setTimeout(resolve, 80));
    await openRuns(fixed.runs, 2);
    // Its own 20 ms did not apply: the level's minute did.
    expect((await ignored).batchSize).toBe(1);
    await first;
  });

  it("keeps a request's own timeout with no level timeout (as before priorities)", async () => {
    const { submit, runs } = await rig({});
    const busy = submit(1);
    const error = await rejection(submit(2, { timeoutUs: 20_000 }));
    expect(error.code).toBe('DEADLINE_EXCEEDED');
    await openRuns(runs, 1);
    await busy;
  });
});
