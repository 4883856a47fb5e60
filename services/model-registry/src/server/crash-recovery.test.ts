import { watch } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { registry as pb } from '@quanta/contracts';
import { buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, call } from '../testing/harness.js';
import { failure, pull, push } from '../testing/client.js';
import { BLOB_BACKENDS, startBlobBackend } from '../testing/blob-backends.js';
import type { BlobBackend, BlobProbe } from '../testing/blob-backends.js';
import type { ServiceProcess } from '@quanta/service-kit/testing';
import { startServiceProcess } from '@quanta/service-kit/testing';

/** Resolves when a file appears in `dir` (inotify, no polling). */
function fileAppears(dir: string): { promise: Promise<void>; close(): void } {
  const watcher = watch(dir);
  const promise = new Promise<void>((resolve) => watcher.once('change', () => resolve()));
  return { promise, close: () => watcher.close() };
}

describe.each(BLOB_BACKENDS)('the registry as its own process, blobs in a %s', (backendName) => {
  let home: string;
  let crypto: ServiceProcess;
  let registry: ServiceProcess;
  let token: string;
  let backend: BlobBackend;
  let blobs: BlobProbe;
  const env = (): NodeJS.ProcessEnv => ({
    QUANTA_HOME: home,
    QUANTA_REGISTRY_PORT: '0',
    QUANTA_CRYPTO_ADDR: crypto.address,
    QUANTA_DATABASE_URL: undefined,
    ...backend.env,
  });

  beforeAll(async () => {
    backend = await startBlobBackend(backendName);
    home = await mkdtemp(join(tmpdir(), 'quanta-registry-crash-'));
    blobs = backend.probe({ blobDir: join(home, 'blobs') });
    crypto = await startServiceProcess('crypto', {
      QUANTA_HOME: home,
      QUANTA_CRYPTO_PORT: '0',
      QUANTA_DATABASE_URL: undefined,
    });
    registry = await startServiceProcess('model-registry', env());
    token = (await readFile(join(home, 'admin.token'), 'utf8')).trim();
  }, 240_000);
  afterAll(async () => {
    await registry?.stop();
    await crypto?.stop();
    await backend?.close();
    await rm(home, { recursive: true, force: true });
  });

  it('an upload killed with its process halfway leaves no version and, after a restart, no file', async () => {
    let client = new pb.RegistryServiceClient(registry.address, grpc.credentials.createInsecure());
    const keep = Buffer.from(buildMlp({ seed: 21 }));
    await push(client, token, { model: 'keep' }, keep);

    // The folder store's temporary file, or s3rver's folder of unfinished multipart uploads.
    const tmp =
      backend.name === 'folder' ? join(home, 'blobs', '.tmp') : join(blobs.dirs[0]!, 'quanta', '._S3rver_uploads');
    await mkdir(tmp, { recursive: true });
    const appeared = fileAppears(tmp);
    // More than two 5 MiB parts of a multipart upload arrive before the kill.
    const big = Buffer.concat([Buffer.from(buildMlp({ seed: 22 })), Buffer.alloc(24 * 1024 * 1024, 7)]);
    const stream = client.uploadVersion(bearer(token), () => undefined);
    stream.on('error', () => undefined);
    stream.write({
      part: {
        $case: 'header',
        value: {
          model: 'crashed',
          description: '',
          tags: {},
          expectedSha256: '',
          expectedSizeBytes: BigInt(big.length),
          createModel: true,
          lineage: undefined,
        },
      },
    });
    for (let offset = 0; offset < big.length / 2; offset += 256 * 1024)
      stream.write({ part: { $case: 'chunk', value: big.subarray(offset, offset + 256 * 1024) } });
    // The server has started spooling (its temporary blob or multipart upload exists): kill it mid-upload.
    await appeared.promise;
    appeared.close();
    await registry.kill();
    client.close();
    expect((await blobs.temporaries()).length).toBeGreaterThan(0);
    // Uploads write no plaintext scratch copy, but the sweep still removes one found in registry-tmp/.
    const legacyScratch = join(home, 'registry-tmp');
    await mkdir(legacyScratch, { recursive: true });
    await writeFile(join(legacyScratch, 'left-by-an-old-version.onnx'), keep);

    registry = await startServiceProcess('model-registry', env());
    client = new pb.RegistryServiceClient(registry.address, grpc.credentials.createInsecure());
    try {
      expect(await blobs.temporaries()).toEqual([]);
      expect(await readdir(join(home, 'registry-tmp'))).toEqual([]);
      expect((await failure(call(client, 'getModel', { name: 'crashed' }, token))).code).toBe(grpc.status.NOT_FOUND);
      expect(await blobs.published()).toEqual([
        (await call(client, 'getVersion', { ref: 'keep:1' }, token)).version?.sha256,
      ]);
      expect((await pull(client, token, 'keep')).bytes.equals(keep)).toBe(true);
    } finally {
      client.close();
    }
  }, 240_000);

  it('streams a 128 MiB model up and down with bounded registry memory (peak RSS from /proc)', async () => {
    const client = new pb.RegistryServiceClient(registry.address, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 8 << 20,
    });
    try {
      // 4096 x 8192 weights: 134 MB of FP32, more than the growth allowed below.
      const model = Buffer.from(buildMlp({ inputSize: 4096, hiddenSizes: [], outputSize: 8192, seed: 3 }));
      expect(model.length).toBeGreaterThan(128 * 1024 * 1024);
      const status = async (): Promise<{ rss: number; hwm: number }> => {
        const text = await readFile(`/proc/${registry.child.pid}/status`, 'utf8');
        const kb = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(text)?.[1]) * 1024;
        return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
      };
      // Forget the start-up peak (Linux resets VmHWM to the current RSS when 5 is written to
      // clear_refs), so that the peak below is the transfer's own, whatever the start-up reached.
      await writeFile(`/proc/${registry.child.pid}/clear_refs`, '5').catch(() => undefined);
      const before = await status();
      const version = await pushWithBackpressure(client, token, 'big', model);
      expect(version.sizeBytes).toBe(BigInt(model.length));
      const pulled = await pull(client, token, 'big:1');
      expect(pulled.bytes.equals(model)).toBe(true);
      const after = await status();
      // The upload and the download together never held the file: their peak stayed below the
      // file's own size above the resident size before them. (Issue 4's 100 MB target is a
      // benchmark figure, `npm run bench:registry`: a timed or sized unit test on a shared machine
      // flakes. Alone this measures 30-65 MiB, most of it dead chunk buffers V8 has not yet
      // collected; under a loaded CI machine it has reached 101 MiB.)
      expect(after.hwm - Math.max(before.rss, 0)).toBeLessThan(120 * 1024 * 1024);
    } finally {
      client.close();
    }
  }, 240_000);
});

/** Uploads in 1 MiB chunks, waiting for the channel to drain: the way the CLI pushes. */
function pushWithBackpressure(
  client: pb.RegistryServiceClient,
  token: string,
  model: string,
  bytes: Buffer,
): Promise<pb.ModelVersion> {
  return new Promise((resolve, reject) => {
    const stream = client.uploadVersion(bearer(token), (error, response) => {
      if (error) reject(error);
      else if (response?.version === undefined) reject(new Error('no version'));
      else resolve(response.version);
    });
    stream.write({
      part: {
        $case: 'header',
        value: {
          model,
          description: '',
          tags: {},
          expectedSha256: '',
          expectedSizeBytes: BigInt(bytes.length),
          createModel: true,
          lineage: undefined,
        },
      },
    });
    let offset = 0;
    const pump = (): void => {
      while (offset < bytes.length) {
        const chunk = bytes.subarray(offset, offset + (1 << 20));
        offset += chunk.length;
        if (!stream.write({ part: { $case: 'chunk', value: chunk } })) {
          stream.once('drain', pump);
          return;
        }
      }
      stream.end();
    };
    pump();
  });
}
