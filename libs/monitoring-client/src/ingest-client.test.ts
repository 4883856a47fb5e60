import { createServer } from 'node:net';
import { monitoring as pb } from '@quanta/contracts';
import type { QuantaService } from '@quanta/service-kit';
import { clientStreaming, createService } from '@quanta/service-kit';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createIngestClient } from './ingest-client.js';

function rec(i: number): pb.InferenceRecord {
  return {
    tenant: 'acme',
    model: 'm',
    version: '1',
    deployment: 'd',
    requestId: `r${i}`,
    traceId: '',
    spanId: '',
    statusCode: 0,
    queueUs: 1n,
    computeUs: 2n,
    totalUs: 3n,
    batchSize: 1,
    bytesIn: 0n,
    bytesOut: 0n,
    route: '',
    cacheHit: false,
    cacheMiss: false,
    time: new Date(),
  };
}

/** A real gRPC server with only Ingest: it counts what arrives, and can hold calls (a slow monitoring). */
async function startSink(): Promise<{
  service: QuantaService;
  address: string;
  received: string[];
  messages: number[];
  hold(): () => void;
  arrived(n: number): Promise<void>;
}> {
  const received: string[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const messages: number[] = [];
  let gate: Promise<void> | undefined;
  const service = createService({ name: 'sink', port: 0, logger: pino({ level: 'silent' }) });
  service.addService(pb.MonitoringServiceService, {
    ingest: clientStreaming<pb.IngestRequest, pb.IngestResponse>({ scope: 'public' }, async (requests) => {
      let n = 0;
      for await (const r of requests) {
        messages.push(r.records.length);
        for (const x of r.records) received.push(x.requestId);
        for (const w of waiters.filter((w) => received.length >= w.n)) w.resolve();
        n += r.records.length;
      }
      if (gate !== undefined) await gate;
      return { accepted: BigInt(n), rejected: 0n, rejections: [], summariesAccepted: 0n, summariesRejected: 0n };
    }),
  });
  const { address } = await service.start();
  return {
    service,
    address,
    received,
    messages,
    arrived: (n) =>
      received.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve })),
    hold() {
      let release!: () => void;
      gate = new Promise((resolve) => (release = resolve));
      return () => {
        gate = undefined;
        release();
      };
    },
  };
}

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

describe('ingest client', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0)) await c();
  });

  it('delivers exactly what was recorded, in batches of batchSize', async () => {
    const sink = await startSink();
    cleanup.push(() => sink.service.stop({ graceMs: 100 }));
    const client = createIngestClient({
      address: sink.address,
      token: 't',
      batchSize: 100,
      flushSize: 250,
      flushIntervalMs: 50,
    });
    cleanup.push(() => client.close());
    for (let i = 0; i < 2345; i++) expect(client.record(rec(i))).toBe(true);
    await client.flush();
    expect(sink.received).toHaveLength(2345);
    expect(new Set(sink.received).size).toBe(2345);
    expect(Math.max(...sink.messages)).toBeLessThanOrEqual(100);
    expect(client.stats()).toMatchObject({
      recorded: 2345,
      accepted: 2345,
      droppedFull: 0,
      droppedFailed: 0,
      buffered: 0,
    });
  });

  it('sends on the interval when fewer than flushSize records wait', async () => {
    const sink = await startSink();
    cleanup.push(() => sink.service.stop({ graceMs: 100 }));
    let sent!: () => void;
    const delivered = new Promise<void>((resolve) => (sent = resolve));
    const client = createIngestClient({
      address: sink.address,
      token: 't',
      flushSize: 1000,
      flushIntervalMs: 20,
      onSent: (s) => s.accepted === 3 && sent(),
    });
    cleanup.push(() => client.close());
    client.record(rec(1));
    client.record(rec(2));
    client.record(rec(3));
    await delivered;
    expect(sink.received).toEqual(['r1', 'r2', 'r3']);
  });

  it('drops instead of blocking or growing while monitoring is slow; delivers the buffer once it answers', async () => {
    const sink = await startSink();
    cleanup.push(() => sink.service.stop({ graceMs: 100 }));
    const release = sink.hold();
    const client = createIngestClient({
      address: sink.address,
      token: 't',
      maxBuffered: 1000,
      flushSize: 100,
      flushIntervalMs: 10,
    });
    cleanup.push(() => client.close());
    // Fill the first send, wait until the server holds it.
    for (let i = 0; i < 100; i++) client.record(rec(i));
    await sink.arrived(100);
    const started = performance.now();
    let kept = 0;
    for (let i = 100; i < 50_100; i++) if (client.record(rec(i))) kept++;
    const elapsed = performance.now() - started;
    expect(elapsed).toBeLessThan(500); // 50 000 calls: microseconds each, no waiting
    expect(kept).toBe(1000);
    expect(client.stats()).toMatchObject({ buffered: 1000, inFlight: 100, droppedFull: 49_000 });
    release();
    await client.flush();
    expect(sink.received).toHaveLength(1100);
    expect(client.stats()).toMatchObject({ accepted: 1100, droppedFull: 49_000, buffered: 0 });
  });

  it('with no server at all, record() still returns at once and the losses are counted', async () => {
    const errors: Error[] = [];
    const client = createIngestClient({
      address: `127.0.0.1:${await deadPort()}`,
      token: 't',
      maxBuffered: 500,
      flushSize: 100,
      onError: (e) => errors.push(e),
    });
    cleanup.push(() => client.close());
    const started = performance.now();
    for (let i = 0; i < 20_000; i++) client.record(rec(i));
    expect(performance.now() - started).toBeLessThan(500);
    expect(client.stats().buffered).toBeLessThanOrEqual(500);
    await client.flush();
    const s = client.stats();
    expect(s.accepted).toBe(0);
    expect(s.droppedFull + s.droppedFailed).toBe(20_000);
    expect(s.failedSends).toBeGreaterThan(0);
    expect(errors[0]?.message).toMatch(/UNAVAILABLE/);
  });
});
