import { watch } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { registry as pb } from '@quanta/contracts';
import { buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, call } from '../testing/test-harness.js';
import { failure, pull, push } from '../testing/test-client.js';
import type { ServiceProcess } from '../testing/test-process.js';
import { startServiceProcess } from '../testing/test-process.js';

/** Resolves when a file appears in `dir` (inotify, no polling). */
function fileAppears(dir: string): { promise: Promise<void>; close(): void } {
  const watcher = watch(dir);
  const promise = new Promise<void>((resolve) => watcher.once('change', () => resolve()));
  return { promise, close: () => watcher.close() };
}

describe('an upload whose registry process is killed halfway', () => {
  let home: string;
  let crypto: ServiceProcess;
  let registry: ServiceProcess;
  let token: string;
  const env = (): NodeJS.ProcessEnv => ({ QUANTA_HOME: home, QUANTA_REGISTRY_PORT: '0', QUANTA_CRYPTO_ADDR: crypto.address, QUANTA_DATABASE_URL: undefined });

  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), 'quanta-registry-crash-'));
    crypto = await startServiceProcess('crypto', { QUANTA_HOME: home, QUANTA_CRYPTO_PORT: '0', QUANTA_DATABASE_URL: undefined });
    registry = await startServiceProcess('model-registry', env());
    token = (await readFile(join(home, 'admin.token'), 'utf8')).trim();
  }, 240_000);
  afterAll(async () => {
    await registry?.stop();
    await crypto?.stop();
    await rm(home, { recursive: true, force: true });
  });

  it('leaves no version and, after a restart, no file', async () => {
    let client = new pb.RegistryServiceClient(registry.address, grpc.credentials.createInsecure());
    const keep = Buffer.from(buildMlp({ seed: 21 }));
    await push(client, token, { model: 'keep' }, keep);

    const tmp = join(home, 'blobs', '.tmp');
    await mkdir(tmp, { recursive: true });
    const appeared = fileAppears(tmp);
    const big = Buffer.concat([Buffer.from(buildMlp({ seed: 22 })), Buffer.alloc(8 * 1024 * 1024, 7)]);
    const stream = client.uploadVersion(bearer(token), () => undefined);
    stream.on('error', () => undefined);
    stream.write({ part: { $case: 'header', value: { model: 'crashed', description: '', tags: {}, expectedSha256: '', expectedSizeBytes: BigInt(big.length), createModel: true, lineage: undefined } } });
    for (let offset = 0; offset < big.length / 2; offset += 256 * 1024) stream.write({ part: { $case: 'chunk', value: big.subarray(offset, offset + 256 * 1024) } });
    // The server has started spooling (its temporary blob exists): kill it mid-upload.
    await appeared.promise;
    appeared.close();
    await registry.kill();
    client.close();
    expect((await readdir(tmp)).length).toBeGreaterThan(0);

    registry = await startServiceProcess('model-registry', env());
    client = new pb.RegistryServiceClient(registry.address, grpc.credentials.createInsecure());
    try {
      expect(await readdir(tmp)).toEqual([]);
      expect(await readdir(join(home, 'registry-tmp'))).toEqual([]);
      expect((await failure(call(client, 'getModel', { name: 'crashed' }, token))).code).toBe(grpc.status.NOT_FOUND);
      const blobs = (await readdir(join(home, 'blobs'), { recursive: true, withFileTypes: true })).filter((f) => f.isFile());
      expect(blobs.map((f) => f.name)).toEqual([(await call(client, 'getVersion', { ref: 'keep:1' }, token)).version?.sha256]);
      expect((await pull(client, token, 'keep')).bytes.equals(keep)).toBe(true);
    } finally {
      client.close();
    }
  }, 240_000);
});
