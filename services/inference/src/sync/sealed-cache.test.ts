import { mkdtemp, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { crypto as cpb, registry as pb } from '@quanta/contracts';
import { buildMlp } from '@quanta/onnx';
import type { QuantaService } from '@quanta/service-kit';
import { createClient, createService, serverStreaming } from '@quanta/service-kit';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createModelCache } from './model-cache.js';
import { createModelFetcher } from './model-fetcher.js';
import { createSealedDiskCache } from './sealed-cache.js';
import type { ServiceProcess } from '@quanta/service-kit/testing';
import { startServiceProcess } from '@quanta/service-kit/testing';
import { readyVersion, sha } from '../testing/sync-fixtures.js';

const logger = pino({ level: 'silent' });

describe('sealed disk cache (real crypto process)', () => {
  let home: string;
  let crypto: ServiceProcess;
  let client: cpb.CryptoServiceClient;

  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), 'quanta-inference-cache-'));
    crypto = await startServiceProcess('crypto', {
      QUANTA_HOME: home,
      QUANTA_CRYPTO_PORT: '0',
      QUANTA_DATABASE_URL: undefined,
    });
    const token = (await readFile(join(home, 'admin.token'), 'utf8')).trim();
    client = createClient(cpb.CryptoServiceClient, crypto.address, { token, telemetry: false });
  }, 60_000);
  afterAll(async () => {
    client?.close();
    await crypto?.stop();
    await rm(home, { recursive: true, force: true });
  });

  it('keeps files sealed (no plaintext on disk), opens them in a fresh instance, drops a tampered one', async () => {
    const dir = join(home, 'cache-a');
    const model = buildMlp({ inputSize: 64, hiddenSizes: [64], outputSize: 8, seed: 4 });
    const digest = sha(model);
    await createSealedDiskCache({ dir, crypto: client, logger }).put(digest, model);
    expect(await readdir(dir)).toEqual([digest]);
    const file = await readFile(join(dir, digest));
    expect((await stat(join(dir, digest))).mode & 0o777).toBe(0o600);
    // No 32-byte run of the model (its weights) appears in the file.
    for (let at = 0; at + 32 <= model.length; at += 256)
      expect(file.indexOf(Buffer.from(model.subarray(at, at + 32)))).toBe(-1);

    // A fresh instance (a restarted replica) opens it through the crypto service.
    const reopened = await createSealedDiskCache({ dir, crypto: client, logger }).get(digest);
    expect(reopened !== undefined && Buffer.from(reopened).equals(Buffer.from(model))).toBe(true);

    // Renamed to another digest: bound to its own, it does not open, and is removed.
    const other = sha(Buffer.from('other'));
    await writeFile(join(dir, other), file);
    expect(await createSealedDiskCache({ dir, crypto: client, logger }).get(other)).toBeUndefined();
    expect(await readdir(dir)).toEqual([digest]);

    // One flipped ciphertext bit: GCM refuses it, the file goes.
    const flipped = Buffer.from(file);
    flipped[flipped.length - 10]! ^= 1;
    await writeFile(join(dir, digest), flipped);
    expect(await createSealedDiskCache({ dir, crypto: client, logger }).get(digest)).toBeUndefined();
    expect(await readdir(dir)).toEqual([]);
  });

  it('evicts the least recently used files beyond its byte bound', async () => {
    const dir = join(home, 'cache-b');
    const files = [1, 2, 3].map((seed) => buildMlp({ inputSize: 32, hiddenSizes: [32], outputSize: 4, seed }));
    const size = files[0]!.length + 200; // sealed: the plaintext plus a header under 200 bytes
    const cache = createSealedDiskCache({ dir, crypto: client, logger, maxBytes: 2 * size });
    await cache.put(sha(files[0]!), files[0]!);
    await cache.put(sha(files[1]!), files[1]!);
    // Both written a while ago (the first earlier); using the first makes the second the least recently used.
    const ago = (s: number): Date => new Date(Date.now() - s * 1000);
    await utimes(join(dir, sha(files[0]!)), ago(60), ago(60));
    await utimes(join(dir, sha(files[1]!)), ago(50), ago(50));
    expect(await cache.get(sha(files[0]!))).toBeDefined();
    await cache.put(sha(files[2]!), files[2]!);
    expect((await readdir(dir)).sort()).toEqual([sha(files[0]!), sha(files[2]!)].sort());
  });

  it('lets a restarted fetcher load from disk without downloading', async () => {
    const model = buildMlp({ seed: 8 });
    const version = readyVersion('m', 1, model);
    let downloads = 0;
    const registry: QuantaService = createService({ name: 'scripted-registry', port: 0, logger });
    registry.addService(pb.RegistryServiceService, {
      downloadVersion: serverStreaming<pb.DownloadVersionRequest, pb.DownloadVersionResponse>(
        { scope: 'public' },
        // serverStreaming wants an AsyncIterable; the file is at hand.
        // eslint-disable-next-line @typescript-eslint/require-await
        async function* () {
          downloads++;
          yield { part: { $case: 'header', value: { version } } };
          yield { part: { $case: 'chunk', value: Buffer.from(model) } };
        },
      ),
    });
    const { address } = await registry.start();
    const registryClient = new pb.RegistryServiceClient(address, grpc.credentials.createInsecure());
    try {
      const dir = join(home, 'cache-c');
      const fetcherOf = (): ReturnType<typeof createModelFetcher> =>
        createModelFetcher({
          client: registryClient,
          cache: createModelCache({ maxBytes: 1 << 24 }),
          disk: createSealedDiskCache({ dir, crypto: client, logger }),
        });
      expect(await fetcherOf().fetch('t', 'm:1', version)).toMatchObject({ cached: false });
      expect(downloads).toBe(1);
      const again = await fetcherOf().fetch('t', 'm:1', version);
      expect(again.cached).toBe(true);
      expect(Buffer.from(again.bytes).equals(Buffer.from(model))).toBe(true);
      // A bare reference learns the digest from the header, then stops the download and opens the file.
      expect(await fetcherOf().fetch('t', 'm')).toMatchObject({ cached: true, version: { version: 1 } });
      expect(downloads).toBe(2);
    } finally {
      registryClient.close();
      await registry.stop({ graceMs: 100 });
    }
  });
});
