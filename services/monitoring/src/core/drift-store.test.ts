import type { monitoring as pb } from '@quanta/contracts';
import { InputAccumulator } from '@quanta/monitoring-client';
import { describe, expect, it } from 'vitest';
import { createDriftStore } from './drift-store.js';

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const S0 = T0 / 1000;

function summary(timeMs: number, values: number[], over: Partial<pb.InputSummary> = {}): pb.InputSummary {
  const acc = new InputAccumulator();
  for (const v of values) acc.addValue(v);
  return {
    ...acc.toSummary({
      tenant: 'acme',
      model: 'cifar',
      version: '1',
      deployment: 'd',
      input: 'x',
      time: new Date(timeMs),
    }),
    ...over,
  };
}

describe('the drift store', () => {
  it('merges summaries per input over a span, per version or every version together', () => {
    const now = { ms: T0 + 10_000 };
    const store = createDriftStore({ horizonSeconds: 60, clock: () => now.ms });
    store.add(summary(T0 + 1000, [1, 2]));
    store.add(summary(T0 + 1500, [3]));
    store.add(summary(T0 + 5000, [4], { version: '2' }));
    store.add(summary(T0 + 3000, [5], { input: 'y' })); // out of order
    store.add(summary(T0 + 2000, [6], { tenant: 'globex' }));
    const all = store.inputs('acme', 'cifar', '', { start: S0, end: S0 + 10 });
    expect([...all].map(([k, v]) => [k, v.count, v.sum])).toEqual([
      ['x', 4, 10],
      ['y', 1, 5],
    ]);
    const v1 = store.inputs('acme', 'cifar', '1', { start: S0, end: S0 + 10 });
    expect(v1.get('x')?.sum).toBe(6);
    // [start, end): the second T0+5 s is outside [S0, S0 + 5).
    expect(store.inputs('acme', 'cifar', '', { start: S0, end: S0 + 5 }).get('x')?.sum).toBe(6);
    expect(store.inputs('acme', 'cifar', '', { start: S0 + 2, end: S0 + 10 }).get('x')?.sum).toBe(4);
    expect(store.versions('acme', 'cifar', { start: S0, end: S0 + 10 }).sort()).toEqual(['1', '2']);
    expect(store.versions('acme', 'cifar', { start: S0 + 4, end: S0 + 10 })).toEqual(['2']);
    expect(store.inputs('globex', 'cifar', '', { start: S0, end: S0 + 10 }).get('x')?.sum).toBe(6);
  });

  it('keeps many summaries of one second merged, with the same totals', () => {
    const store = createDriftStore({ horizonSeconds: 60, clock: () => T0 + 1000 });
    for (let i = 0; i < 100; i++) store.add(summary(T0 + 500, [i]));
    const x = store.inputs('acme', 'cifar', '1', { start: S0, end: S0 + 1 }).get('x')!;
    expect([x.count, x.sum, x.min, x.max]).toEqual([100, 4950, 0, 99]);
  });

  it('forgets what leaves the horizon, in queries at once and in memory at a sweep', () => {
    const now = { ms: T0 };
    const store = createDriftStore({ horizonSeconds: 10, clock: () => now.ms });
    store.add(summary(T0, [1]));
    store.add(summary(T0 + 5000, [2]));
    now.ms = T0 + 12_000;
    expect(store.inputs('acme', 'cifar', '', { start: S0 - 100, end: S0 + 20 }).get('x')?.sum).toBe(2);
    expect(store.sweep()).toBe(1);
    now.ms = T0 + 30_000;
    expect(store.sweep()).toBe(1);
    expect(store.inputs('acme', 'cifar', '', { start: S0 - 100, end: S0 + 40 }).size).toBe(0);
    expect(store.versions('acme', 'cifar', { start: S0 - 100, end: S0 + 40 })).toEqual([]);
  });
});
