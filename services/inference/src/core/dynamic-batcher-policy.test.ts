import { afterEach, describe, expect, it } from 'vitest';
import { buildMlp } from '@quanta/onnx';
import { createDynamicBatcher, type DynamicBatcher, type JobResult } from './dynamic-batcher.js';
import { createInstancePool, type InstancePool } from './instance-pool.js';
import { signatureOf } from './signature.js';
import { createStatsRecorder, type StatsRecorder } from './stats.js';
import {
  gatedPool,
  inputs,
  manualClock,
  manualTimers,
  nextTurn,
  randomFloats,
  rejection,
  runDirect,
  servingConfig,
  values,
  type GatedRun,
} from '../testing/core.js';
import type { ServingConfig } from './types.js';

// When the dynamic batcher sends a batch, driven by hand: a hand-moved clock and timers for the
// queue delay, and a real instance pool (real onnxruntime sessions) whose runs wait until the
// test lets them go, so the test decides when an instance is busy or free. Inline sessions, one
// run in flight each, unless a test says otherwise (a worker instance takes two: see the last test).

const bytes = buildMlp({ inputSize: 4, hiddenSizes: [8], outputSize: 3, seed: 11 });

interface Rig {
  batcher: DynamicBatcher;
  runs: GatedRun[];
  timers: ReturnType<typeof manualTimers>;
  clock: ReturnType<typeof manualClock>;
  stats: StatsRecorder;
  submit: (id: number, rows?: number, extra?: { deadline?: number; signal?: AbortSignal }) => Promise<JobResult>;
}

let pools: InstancePool[] = [];
afterEach(async () => {
  await Promise.all(pools.map((pool) => pool.release()));
  pools = [];
});

async function rig(overrides: Partial<ServingConfig> = {}): Promise<Rig> {
  const config = servingConfig({
    maxBatchSize: 8,
    maxQueueDelayUs: 1000,
    threadsPerInstance: 1,
    execution: 'inline',
    ...overrides,
  });
  const real = await createInstancePool(bytes, config);
  pools.push(real);
  const { pool, runs } = gatedPool(real);
  const timers = manualTimers();
  const clock = manualClock();
  const stats = createStatsRecorder('mlp', '1');
  const { signature } = signatureOf(pool.metadata);
  const batcher = createDynamicBatcher({ model: 'mlp', signature, config, pool, stats, clock, timers, batching: true });
  return {
    batcher,
    runs,
    timers,
    clock,
    stats,
    submit: (id, rows = 1, extra = {}) =>
      batcher.submit({ inputs: inputs({ input: randomFloats([rows, 4], id) }), fetches: ['output'], ...extra }),
  };
}

const rowsOf = (runs: readonly GatedRun[]): number[] => runs.map((run) => run.rows);

describe('dynamic batcher: when a batch leaves', () => {
  it('sends a lone request on the next turn, and the next one too once the first is answered', async () => {
    const { submit, runs, timers } = await rig();
    const first = submit(1);
    // Same-tick requests may still join it: it leaves on the next turn, not synchronously.
    expect(runs).toHaveLength(0);
    await nextTurn();
    expect(rowsOf(runs)).toEqual([1]);
    runs[0]?.open();
    const answer = await first;
    expect(values(answer.outputs.get('output'))).toEqual(
      values((await runDirect(bytes, inputs({ input: randomFloats([1, 4], 1) }))).get('output')),
    );
    // No time has passed: the answered request must not make this one wait the delay.
    const second = submit(2);
    await nextTurn();
    expect(rowsOf(runs)).toEqual([1, 1]);
    expect(timers.armed()).toBe(0);
    runs[1]?.open();
    expect((await second).times.queueNs).toBe(0n);
  });

  it('marks a run alone only while the model is idle, not for a while after requests waited', async () => {
    const { submit, runs, timers } = await rig({ maxBatchSize: 1 });
    const first = submit(1);
    await nextTurn();
    const second = submit(2);
    // The first found nothing queued or running; the second waits behind it.
    expect(runs.map((run) => run.alone)).toEqual([true]);
    runs[0]?.open();
    await first;
    await nextTurn();
    // The first batch ended with a request waiting: the model is under load, the next runs are not alone.
    expect(runs.map((run) => run.alone)).toEqual([true, false]);
    runs[1]?.open();
    await second;
    const third = submit(3);
    await nextTurn();
    expect(runs[2]?.alone).toBe(false);
    runs[2]?.open();
    await third;
    // Once the cooldown (100 ms) has passed with nothing waiting, a lone request is alone again.
    timers.advanceUs(100_000);
    const fourth = submit(4);
    await nextTurn();
    expect(runs[3]?.alone).toBe(true);
    runs[3]?.open();
    await fourth;
  });

  it('merges what is submitted in the same tick as a lone request', async () => {
    const { submit, runs } = await rig();
    const pending = [submit(1), submit(2, 2), submit(3)];
    await nextTurn();
    expect(rowsOf(runs)).toEqual([4]);
    runs[0]?.open();
    const results = await Promise.all(pending);
    expect(results.map((r) => r.batchSize)).toEqual([4, 4, 4]);
    expect(results.map((r) => r.outputs.get('output')?.shape)).toEqual([
      [1, 3],
      [2, 3],
      [1, 3],
    ]);
  });

  it(
    'holds requests while the only instance is busy and sends them at once when it frees after ' + 'the delay',
    async () => {
      const { submit, runs, timers } = await rig();
      const first = submit(1);
      await nextTurn();
      const queued = [submit(2), submit(3), submit(4, 2)];
      await nextTurn();
      timers.advanceUs(5000);
      // However long they wait, nothing more runs while the instance is busy.
      expect(rowsOf(runs)).toEqual([1]);
      runs[0]?.open();
      await first;
      // The oldest has waited 5 ms > 1 ms: all of them leave together, no timer.
      expect(rowsOf(runs)).toEqual([1, 4]);
      runs[1]?.open();
      const results = await Promise.all(queued);
      expect(results.map((r) => [r.batchSize, r.times.queueNs])).toEqual([
        [4, 5_000_000n],
        [4, 5_000_000n],
        [4, 5_000_000n],
      ]);
      for (const [i, result] of results.entries()) {
        const alone = await runDirect(bytes, inputs({ input: randomFloats([i === 2 ? 2 : 1, 4], i + 2) }));
        expect(values(result.outputs.get('output'))).toEqual(values(alone.get('output')));
      }
    },
  );

  it("waits only the rest of the oldest request's delay once the instance frees", async () => {
    const { submit, runs, timers } = await rig();
    const first = submit(1);
    await nextTurn();
    const oldest = submit(2);
    timers.advanceUs(400);
    const younger = submit(3);
    runs[0]?.open();
    await first;
    expect(rowsOf(runs)).toEqual([1]);
    timers.advanceUs(599);
    expect(rowsOf(runs)).toEqual([1]);
    timers.advanceUs(1);
    expect(rowsOf(runs)).toEqual([1, 2]);
    runs[1]?.open();
    expect((await oldest).times.queueNs).toBe(1_000_000n);
    expect((await younger).times.queueNs).toBe(600_000n);
  });

  it('sends a full batch at once, without waiting the delay', async () => {
    const { submit, runs, timers } = await rig({ maxBatchSize: 4 });
    const first = submit(1);
    await nextTurn();
    const queued = [submit(2), submit(3, 2), submit(4), submit(5)];
    runs[0]?.open();
    await first;
    // No time passed: 4 rows fill the batch; the fifth request waits for its own delay.
    expect(rowsOf(runs)).toEqual([1, 4]);
    runs[1]?.open();
    expect((await Promise.all(queued.slice(0, 3))).map((r) => r.times.queueNs)).toEqual([0n, 0n, 0n]);
    expect(rowsOf(runs)).toEqual([1, 4]);
    timers.advanceUs(1000);
    expect(rowsOf(runs)).toEqual([1, 4, 1]);
    runs[2]?.open();
    expect((await queued[3])?.times.queueNs).toBe(1_000_000n);
  });

  it('sends a batch at once when the next compatible request does not fit (waiting cannot grow it)', async () => {
    const { submit, runs, timers } = await rig({ maxBatchSize: 4 });
    const first = submit(1);
    await nextTurn();
    const two = submit(2, 2);
    const three = submit(3, 3);
    runs[0]?.open();
    await first;
    expect(rowsOf(runs)).toEqual([1, 2]);
    runs[1]?.open();
    expect((await two).times.queueNs).toBe(0n);
    // The 3-row request is the head now: it waits its own delay for company.
    expect(rowsOf(runs)).toEqual([1, 2]);
    timers.advanceUs(1000);
    expect(rowsOf(runs)).toEqual([1, 2, 3]);
    runs[2]?.open();
    expect((await three).batchSize).toBe(3);
  });

  it('with a second instance free, a request that arrives while the other runs waits the delay', async () => {
    const { submit, runs, timers } = await rig({ instanceCount: 2 });
    const first = submit(1);
    await nextTurn();
    expect(rowsOf(runs)).toEqual([1]);
    // Not lone (one is running): it waits up to the delay for others on the free instance.
    const second = submit(2);
    await nextTurn();
    timers.advanceUs(500);
    const third = submit(3);
    timers.advanceUs(499);
    expect(rowsOf(runs)).toEqual([1]);
    timers.advanceUs(1);
    expect(rowsOf(runs)).toEqual([1, 2]);
    // Both instances busy now: the next one waits without a timer.
    const fourth = submit(4);
    timers.advanceUs(3000);
    expect(rowsOf(runs)).toEqual([1, 2]);
    expect(timers.armed()).toBe(0);
    for (const run of runs) run.open();
    await Promise.all([first, second, third]);
    expect(rowsOf(runs)).toEqual([1, 2, 1]);
    runs[2]?.open();
    expect((await fourth).times.queueNs).toBe(3_000_000n);
  });

  it(
    'answers RESOURCE_EXHAUSTED when the queue is full, ' + 'and drain sends the queued ones without the delay',
    async () => {
      const { batcher, submit, runs, stats } = await rig({ maxQueueSize: 2, instanceCount: 1 });
      const first = submit(1);
      await nextTurn();
      const queued = [submit(2), submit(3)];
      const error = await rejection(submit(4));
      expect(error.code).toBe('RESOURCE_EXHAUSTED');
      expect(error.message).toBe('model "mlp": the queue is full (2 requests waiting); retry later');
      runs[0]?.open();
      await first;
      // The instance is free, but the delay has not passed (the clock did not move).
      expect(rowsOf(runs)).toEqual([1]);
      const drained = batcher.drain();
      expect(rowsOf(runs)).toEqual([1, 2]);
      runs[1]?.open();
      expect((await Promise.all(queued)).map((r) => r.batchSize)).toEqual([2, 2]);
      await drained;
      expect(stats.snapshot().executionCount).toBe(2n);
      expect((await rejection(submit(5))).code).toBe('UNAVAILABLE');
    },
  );

  it('fails a request whose deadline passes in the queue with DEADLINE_EXCEEDED, without running it', async () => {
    const { submit, runs, clock, timers } = await rig();
    const first = submit(1);
    await nextTurn();
    const late = submit(2, 1, { deadline: clock.now() + 5 });
    const kept = submit(3);
    clock.advance(10);
    // Its deadline timer (the real one, 5 ms) or the dispatch check drops it.
    timers.advanceUs(2000);
    runs[0]?.open();
    await first;
    const error = await rejection(late);
    expect(error.code).toBe('DEADLINE_EXCEEDED');
    expect(error.message).toBe('model "mlp": the request\'s deadline passed while it waited in the queue');
    expect(rowsOf(runs)).toEqual([1, 1]);
    runs[1]?.open();
    expect((await kept).batchSize).toBe(1);
    expect((await rejection(submit(4, 1, { deadline: clock.now() - 1 }))).code).toBe('DEADLINE_EXCEEDED');
  });

  it('drops a queued request whose signal aborts, with CANCELLED', async () => {
    const { submit, runs, timers } = await rig();
    const first = submit(1);
    await nextTurn();
    const controller = new AbortController();
    const aborted = submit(2, 1, { signal: controller.signal });
    const kept = submit(3);
    controller.abort();
    const error = await rejection(aborted);
    expect(error.code).toBe('CANCELLED');
    expect(error.message).toBe('model "mlp": the request was cancelled while queued');
    runs[0]?.open();
    await first;
    timers.advanceUs(1000);
    expect(rowsOf(runs)).toEqual([1, 1]);
    runs[1]?.open();
    await kept;
    expect((await rejection(submit(4, 1, { signal: controller.signal }))).code).toBe('CANCELLED');
  });

  it('drops a lone request cancelled before its turn, with CANCELLED, and never runs it', async () => {
    const { submit, runs } = await rig();
    const controller = new AbortController();
    const lone = submit(1, 1, { signal: controller.signal });
    // Same tick: a lone request is checked when it is taken, not watched.
    controller.abort();
    const error = await rejection(lone);
    expect(error.code).toBe('CANCELLED');
    expect(error.message).toBe('model "mlp": the request was cancelled while queued');
    expect(runs).toHaveLength(0);
    // The model is idle again: the next lone request runs.
    const next = submit(2);
    await nextTurn();
    expect(rowsOf(runs)).toEqual([1]);
    runs[0]?.open();
    await next;
  });

  it('drops a lone request whose deadline passed before its turn, and never runs it', async () => {
    const { submit, runs, clock } = await rig();
    const late = submit(1, 1, { deadline: clock.now() + 1 });
    clock.advance(2);
    expect((await rejection(late)).code).toBe('DEADLINE_EXCEEDED');
    expect(runs).toHaveLength(0);
  });
});

describe("dynamic batcher: loneRequestsWait (Triton's behaviour)", () => {
  it('holds even a lone request for the delay', async () => {
    const { submit, runs, timers } = await rig({ loneRequestsWait: true });
    const first = submit(1);
    await nextTurn();
    expect(rowsOf(runs)).toEqual([]);
    timers.advanceUs(999);
    expect(rowsOf(runs)).toEqual([]);
    timers.advanceUs(1);
    expect(rowsOf(runs)).toEqual([1]);
    runs[0]?.open();
    expect((await first).times.queueNs).toBe(1_000_000n);
  });
});

describe("dynamic batcher: preferred batch sizes (Triton's preferred_batch_size)", () => {
  it(
    'sends the largest preferred batch the queue allows at once, without waiting the delay, ' +
      'and keeps the rest queued',
    async () => {
      const { submit, runs, timers } = await rig({ preferredBatchSizes: [2, 4] });
      const first = submit(1);
      await nextTurn();
      // Seven rows queue behind the busy instance (the third request has 2 rows).
      const queued = [submit(2), submit(3), submit(4, 2), submit(5), submit(6), submit(7)];
      await nextTurn();
      runs[0]?.open();
      await first;
      // No time has passed (the delay has not run out) and 7 rows are queued: the first 4 leave now.
      expect(rowsOf(runs)).toEqual([1, 4]);
      expect(timers.armed()).toBe(0);
      runs[1]?.open();
      const leading = await Promise.all(queued.slice(0, 3));
      expect(leading.map((r) => r.batchSize)).toEqual([4, 4, 4]);
      // Of the 3 rows left, 2 are a preferred batch; the last request stays queued behind them.
      expect(rowsOf(runs)).toEqual([1, 4, 2]);
      runs[2]?.open();
      const pair = await Promise.all(queued.slice(3, 5));
      expect(pair.map((r) => r.batchSize)).toEqual([2, 2]);
      // One row is no preferred size: it waits out its delay, as without preferences.
      expect(rowsOf(runs)).toEqual([1, 4, 2]);
      timers.advanceUs(999);
      expect(rowsOf(runs)).toEqual([1, 4, 2]);
      timers.advanceUs(1);
      expect(rowsOf(runs)).toEqual([1, 4, 2, 1]);
      runs[3]?.open();
      const last = await queued[5];
      expect(last?.batchSize).toBe(1);
      // Split back exactly: each answer is what the model gives that request alone.
      for (const [i, result] of [...leading, ...pair, last].entries()) {
        const alone = await runDirect(bytes, inputs({ input: randomFloats([i === 2 ? 2 : 1, 4], i + 2) }));
        expect(values(result?.outputs.get('output'))).toEqual(values(alone.get('output')));
      }
    },
  );

  it('waits the delay while fewer rows than the smallest preferred size are queued, then sends them', async () => {
    const { submit, runs, timers } = await rig({ preferredBatchSizes: [4] });
    const first = submit(1);
    await nextTurn();
    const queued = [submit(2), submit(3)];
    runs[0]?.open();
    await first;
    expect(rowsOf(runs)).toEqual([1]);
    timers.advanceUs(999);
    expect(rowsOf(runs)).toEqual([1]);
    timers.advanceUs(1);
    expect(rowsOf(runs)).toEqual([1, 2]);
    runs[1]?.open();
    expect((await Promise.all(queued)).map((r) => r.batchSize)).toEqual([2, 2]);
  });

  it('ignores sizes a batch cannot have and still fills a batch to the max batch size', async () => {
    // 8 is the max itself, 0 and 9 cannot happen: as if none were preferred.
    const { submit, runs } = await rig({ preferredBatchSizes: [0, 8, 9] });
    const first = submit(1);
    await nextTurn();
    const queued = Array.from({ length: 9 }, (_, i) => submit(i + 2));
    runs[0]?.open();
    await first;
    expect(rowsOf(runs)).toEqual([1, 8]);
    runs[1]?.open();
    await Promise.all(queued.slice(0, 8));
    expect(rowsOf(runs)).toEqual([1, 8]);
  });
});

describe('dynamic batcher: worker sessions take the next batch while one runs', () => {
  it('hands a second batch to the busy worker instance, and holds requests only once both are taken', async () => {
    const { submit, runs, timers } = await rig({ execution: 'worker' });
    const first = submit(1);
    await nextTurn();
    expect(rowsOf(runs)).toEqual([1]);
    // The instance runs one batch and has room for the next: these two wait the delay, then go.
    const second = [submit(2), submit(3)];
    expect(rowsOf(runs)).toEqual([1]);
    timers.advanceUs(1000);
    expect(rowsOf(runs)).toEqual([1, 2]);
    // Both runs in flight: now requests accumulate, however long they wait.
    const third = [submit(4), submit(5), submit(6)];
    timers.advanceUs(5000);
    expect(rowsOf(runs)).toEqual([1, 2]);
    runs[0]?.open();
    await first;
    // One run ended: the held requests have waited past their delay and leave together.
    expect(rowsOf(runs)).toEqual([1, 2, 3]);
    runs[1]?.open();
    runs[2]?.open();
    const answers = await Promise.all([...second, ...third]);
    expect(answers.map((a) => a.batchSize)).toEqual([2, 2, 3, 3, 3]);
    for (const [i, answer] of answers.entries()) {
      const alone = await runDirect(bytes, inputs({ input: randomFloats([1, 4], i + 2) }));
      expect(values(answer.outputs.get('output'))).toEqual(values(alone.get('output')));
    }
  });
});
