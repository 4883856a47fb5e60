import { InputAccumulator, createIngestClient } from '@quanta/monitoring-client';
import { afterAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { call, record, startHarness, window } from '../testing/harness.js';

describe('the ingest client against the real monitoring service', () => {
  const open: Harness[] = [];
  afterAll(async () => {
    for (const h of open) await h.close();
  });

  it(
    'delivers exact counts, drops without blocking while monitoring is down, ' + 'and resumes when it is back',
    async () => {
      const first = await startHarness({ realClock: true });
      open.push(first);
      const port = first.server.port;
      const admin = await first.token('platform', ['admin']);
      const client = createIngestClient({
        address: `127.0.0.1:${port}`,
        token: admin,
        maxBuffered: 10_000,
        flushSize: 200,
        flushIntervalMs: 20,
        maxReconnectBackoffMs: 200,
      });

      for (let i = 0; i < 5000; i++) client.record(record(Date.now(), { requestId: `a${i}` }));
      await client.flush();
      const reader = await first.token('acme', ['monitoring:read']);
      const before = await call(
        first.client,
        'getModelStats',
        { model: 'cifar', version: '', byVersion: false, span: window(60) },
        reader,
      );
      expect(before.stats?.count).toBe(5000n);
      expect(client.stats()).toMatchObject({ accepted: 5000, droppedFull: 0, droppedFailed: 0 });

      // Monitoring goes away.
      await first.server.stop({ graceMs: 0 });
      open.splice(open.indexOf(first), 1);
      first.client.close();
      const started = performance.now();
      for (let i = 0; i < 30_000; i++) client.record(record(Date.now(), { requestId: `b${i}` }));
      expect(performance.now() - started).toBeLessThan(500);
      expect(client.stats().buffered).toBeLessThanOrEqual(10_000);
      expect(client.stats().droppedFull).toBeGreaterThanOrEqual(20_000);
      await client.flush();
      const down = client.stats();
      expect(down.accepted).toBe(5000);
      expect(down.droppedFull + down.droppedFailed).toBe(30_000);

      // It comes back on the same port (trusting the same token issuer, as it would the same crypto
      // service): the client reconnects by itself and its records arrive again.
      const second = await startHarness({ realClock: true, config: { port }, issuer: first.issuer });
      open.push(second);
      // A probe's flush fails fast while the channel is still backing off (at most 200 ms here), so
      // probing is bounded by time, not by a count that a fast machine can exhaust within one backoff.
      let probes = 0;
      const giveUpAt = Date.now() + 30_000;
      while (client.stats().accepted === 5000) {
        if (Date.now() > giveUpAt) throw new Error(`the client never reconnected (${probes} probes in 30 s)`);
        client.record(record(Date.now(), { requestId: `p${++probes}` }));
        await client.flush();
        if (client.stats().accepted === 5000) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      for (let i = 0; i < 777; i++) client.record(record(Date.now(), { requestId: `c${i}` }));
      await client.close();
      expect(client.stats().accepted).toBe(5000 + 1 + 777);
      const stats = await call(
        second.client,
        'getModelStats',
        { model: 'cifar', version: '', byVersion: false, span: window(60) },
        reader,
      );
      expect(stats.stats?.count).toBe(BigInt(1 + 777));
    },
  );

  it('sends input summaries beside the records, counts refusals, drops them while monitoring is down', async () => {
    const h = await startHarness({ realClock: true });
    open.push(h);
    const admin = await h.token('platform', ['admin']);
    const client = createIngestClient({
      address: `127.0.0.1:${h.server.port}`,
      token: admin,
      flushIntervalMs: 20,
      maxBufferedSummaries: 3,
      maxReconnectBackoffMs: 200,
    });
    const summary = (input: string, values: number[]) => {
      const acc = new InputAccumulator();
      for (const v of values) acc.addValue(v);
      const labels = { tenant: 'acme', model: 'cifar', version: '1', deployment: 'd', input, time: new Date() };
      return acc.toSummary(labels);
    };
    // Summaries alone (no records) are sent after the flush interval.
    expect(client.summary(summary('x', [1, 2, 3]))).toBe(true);
    expect(client.summary({ ...summary('x', [4]), bins: [{ index: 999, count: 1n }] })).toBe(true);
    await client.flush();
    expect(client.stats()).toMatchObject({ summaries: 2, summariesAccepted: 1, summariesRejected: 1 });
    client.record(record(Date.now()));
    client.summary(summary('y', [5, 6]));
    await client.flush();
    expect(client.stats()).toMatchObject({ accepted: 1, summaries: 3, summariesAccepted: 2 });
    const now = Math.floor(Date.now() / 1000);
    const held = h.server.drift.store.inputs('acme', 'cifar', '', { start: now - 60, end: now + 1 });
    expect([...held].map(([name, acc]) => [name, acc.count, acc.sum]).sort()).toEqual([
      ['x', 3, 6],
      ['y', 2, 11],
    ]);

    // Monitoring goes away: a full buffer drops new summaries, a failed send drops its own.
    await h.server.stop({ graceMs: 0 });
    open.splice(open.indexOf(h), 1);
    h.client.close();
    const results = Array.from({ length: 5 }, () => client.summary(summary('x', [1])));
    await client.close();
    const dropped = client.stats();
    expect(results.filter((r) => !r).length).toBeGreaterThanOrEqual(2);
    expect(dropped.summaries).toBe(8);
    expect(dropped.summariesAccepted + dropped.summariesRejected + dropped.summariesDropped).toBe(8);
    expect(dropped.summariesDropped).toBe(5);
  });
});
