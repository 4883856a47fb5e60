import * as grpc from '@grpc/grpc-js';
import { registry as pb } from '@quanta/contracts';
import { buildMlp } from '@quanta/onnx';
import type { QuantaService } from '@quanta/service-kit';
import { DomainError, createService, errorCodeOf, notFound, serverStreaming } from '@quanta/service-kit';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createModelCache } from './model-cache.js';
import { FetchError, createModelFetcher } from './model-fetcher.js';
import { readyVersion, sha } from '../testing/sync-fixtures.js';

/** What the fake registry sends for a ref: a header, then these chunks (possibly lying). */
interface Script {
  readonly header: pb.ModelVersion;
  readonly chunks: readonly Uint8Array[];
  /** End the stream with this status after the chunks. */
  readonly fail?: { code: grpc.status; details: string };
  /** Never end the stream (a hung registry); it ends when the client cancels. */
  readonly hang?: boolean;
}

describe('model fetcher (against a real gRPC server that can lie)', () => {
  const good = buildMlp({ seed: 5 });
  const other = buildMlp({ seed: 6 });
  const scripts = new Map<string, Script>();
  const calls: { ref: string; tenant: string }[] = [];
  let service: QuantaService;
  let client: pb.RegistryServiceClient;

  beforeAll(async () => {
    service = createService({ name: 'fake-registry', port: 0, logger: pino({ level: 'silent' }) });
    service.addService(pb.RegistryServiceService, {
      downloadVersion: serverStreaming<pb.DownloadVersionRequest, pb.DownloadVersionResponse>(
        { scope: 'public' },
        async function* (req, ctx) {
          calls.push({ ref: req.ref, tenant: req.tenant });
          const script = scripts.get(req.ref);
          if (script === undefined) throw notFound(`model "${req.ref}" not found`);
          yield { part: { $case: 'header', value: { version: script.header } } };
          for (const chunk of script.chunks) yield { part: { $case: 'chunk', value: Buffer.from(chunk) } };
          if (script.hang === true)
            await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
          if (script.fail !== undefined) {
            throw new DomainError(errorCodeOf(script.fail.code), script.fail.details);
          }
        },
      ),
    });
    const { address } = await service.start();
    client = new pb.RegistryServiceClient(address, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    client.close();
    await service.stop({ graceMs: 100 });
  });

  const half = (b: Uint8Array): Uint8Array[] => [b.subarray(0, b.length >> 1), b.subarray(b.length >> 1)];

  it('returns the bytes when sha256 and size match, caches them, serves the next fetch from the cache', async () => {
    scripts.set('m:1', { header: readyVersion('m', 1, good), chunks: half(good) });
    const cache = createModelCache({ maxBytes: 1 << 20 });
    const fetcher = createModelFetcher({ client, cache });
    const before = calls.length;
    const first = await fetcher.fetch('acme', 'm:1');
    expect(Buffer.from(first.bytes).equals(Buffer.from(good))).toBe(true);
    expect(first).toMatchObject({ cached: false, version: { model: 'm', version: 1 } });
    expect(calls.slice(before)).toEqual([{ ref: 'm:1', tenant: 'acme' }]);
    // Another tenant's deployment of the same digest: no download at all.
    const second = await fetcher.fetch('other', 'n:4', readyVersion('n', 4, good));
    expect(second).toMatchObject({ cached: true, version: { model: 'n', version: 4 } });
    expect(calls.length).toBe(before + 1);
  });

  it('downloads a digest once when several fetches of it run together', async () => {
    scripts.set('d:1', { header: readyVersion('d', 1, other), chunks: half(other) });
    const fetcher = createModelFetcher({ client, cache: createModelCache({ maxBytes: 1 << 20 }) });
    const before = calls.length;
    const expected = readyVersion('d', 1, other);
    const all = await Promise.all([1, 2, 3, 4].map(() => fetcher.fetch('acme', 'd:1', expected)));
    expect(calls.length - before).toBe(1);
    for (const r of all) expect(Buffer.from(r.bytes).equals(Buffer.from(other))).toBe(true);
  });

  it('fails with DATA_LOSS and caches nothing when the bytes hash differently from the header', async () => {
    scripts.set('bad:1', {
      header: readyVersion('bad', 1, good),
      chunks: [other.subarray(0, good.length), new Uint8Array(Math.max(0, good.length - other.length))],
    });
    const cache = createModelCache({ maxBytes: 1 << 20 });
    const fetcher = createModelFetcher({ client, cache });
    const error = await fetcher.fetch('acme', 'bad:1').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FetchError);
    expect(error).toMatchObject({ code: 'DATA_LOSS' });
    expect((error as Error).message).toContain(`the version's is ${sha(good)}`);
    expect(cache.stats().entries).toBe(0);
  });

  it('fails when fewer or more bytes arrive than the header says', async () => {
    const fetcher = createModelFetcher({ client, cache: createModelCache({ maxBytes: 1 << 20 }) });
    scripts.set('short:1', { header: readyVersion('short', 1, good), chunks: [good.subarray(0, 100)] });
    await expect(fetcher.fetch('acme', 'short:1')).rejects.toThrow(/100 bytes arrived, the version's size is \d+/);
    scripts.set('long:1', { header: readyVersion('long', 1, good), chunks: [good, new Uint8Array(1)] });
    await expect(fetcher.fetch('acme', 'long:1')).rejects.toThrow(/more than the header's \d+ bytes arrived/);
  });

  it('fails when the header names another digest than the deployment expects', async () => {
    scripts.set('swap:2', { header: readyVersion('swap', 2, other), chunks: [other] });
    const fetcher = createModelFetcher({ client, cache: createModelCache({ maxBytes: 1 << 20 }) });
    await expect(fetcher.fetch('acme', 'swap:2', readyVersion('swap', 2, good))).rejects.toThrow(
      `the deployment expects ${sha(good)}`,
    );
  });

  it('passes on the registry status: DATA_LOSS after all chunks is refused, NOT_FOUND stays NOT_FOUND', async () => {
    scripts.set('lost:1', {
      header: readyVersion('lost', 1, good),
      chunks: [good],
      fail: { code: grpc.status.DATA_LOSS, details: 'the stored file of lost:1 is damaged' },
    });
    const fetcher = createModelFetcher({ client, cache: createModelCache({ maxBytes: 1 << 20 }) });
    await expect(fetcher.fetch('acme', 'lost:1')).rejects.toMatchObject({
      code: 'DATA_LOSS',
      message: expect.stringContaining('is damaged') as unknown,
    });
    await expect(fetcher.fetch('acme', 'nope:1')).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringContaining('"nope:1" not found') as unknown,
    });
  });

  it('cancels a download that stalls, with UNAVAILABLE', async () => {
    scripts.set('stall:1', { header: readyVersion('stall', 1, good), chunks: [good.subarray(0, 10)], hang: true });
    const fetcher = createModelFetcher({ client, cache: createModelCache({ maxBytes: 1 << 20 }), idleTimeoutMs: 200 });
    await expect(fetcher.fetch('acme', 'stall:1')).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: expect.stringContaining('nothing arrived for 200 ms') as unknown,
    });
  });

  it('refuses a file over the size limit before downloading it', async () => {
    scripts.set('big:1', { header: readyVersion('big', 1, good), chunks: [good] });
    const fetcher = createModelFetcher({ client, cache: createModelCache({ maxBytes: 1 << 20 }), maxModelBytes: 10 });
    await expect(fetcher.fetch('acme', 'big:1')).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
  });
});

describe('model cache', () => {
  it('evicts the least recently used files beyond its byte bound and never keeps one larger than it', () => {
    const cache = createModelCache({ maxBytes: 100 });
    cache.put('a', new Uint8Array(40));
    cache.put('b', new Uint8Array(40));
    expect(cache.get('a')?.length).toBe(40); // a is now the most recent
    cache.put('c', new Uint8Array(40)); // 120 > 100: b goes
    expect([cache.has('a'), cache.has('b'), cache.has('c')]).toEqual([true, false, true]);
    cache.put('huge', new Uint8Array(101));
    expect(cache.has('huge')).toBe(false);
    expect(cache.stats()).toMatchObject({ entries: 2, bytes: 80, evictions: 1 });
  });
});
