import { readdir, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestS3 } from '../testing/s3.js';
import type { TestS3 } from '../testing/s3.js';
import { pull, push } from '../testing/client.js';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { startHarness, startSharedCrypto } from '../testing/harness.js';
import type { Harness, SharedCrypto } from '../testing/harness.js';

/** Dates every file of s3rver's as two hours old: objects' LastModified and uploads' Initiated come from them. */
async function ageBucket(dir: string): Promise<void> {
  const then = new Date(Date.now() - 2 * 3600_000);
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) await utimes(join(entry.parentPath, entry.name), then, then);
  }
}

describe('the sweep of a bucket that replicas may share', () => {
  let s3: TestS3;
  let crypto: SharedCrypto;
  let h: Harness;
  const prefix = 'shared/';

  beforeAll(async () => {
    s3 = await startTestS3();
    Object.assign(process.env, s3.env);
    crypto = await startSharedCrypto();
    // No sweep_grace: the default hour, as for replicas on one bucket.
    h = await startHarness({ crypto, config: { blobUrl: s3.blobUrl(prefix) } });
  }, 240_000);
  afterAll(async () => {
    await h?.close();
    await crypto?.close();
    await s3?.close();
  });

  it('runs again every grace period: what a crashed replica left goes without a restart', async () => {
    const other = 'periodic/';
    const replica = await startHarness({ crypto, config: { blobUrl: s3.blobUrl(other, { sweep_grace: '1s' }) } });
    try {
      const put = (key: string): Promise<unknown> =>
        s3.client.send(
          new PutObjectCommand({ Bucket: s3.bucket, Key: `${other}${key}`, Body: 'left by a crashed replica' }),
        );
      await put('.tmp/dead');
      await put(`acme/ef/${'ef'.repeat(32)}`);
      // Removed by the first sweep that finds them a second old: within about two seconds.
      const until = Date.now() + 15_000;
      while ((await s3.keys(other)).length > 0) {
        if (Date.now() > until) throw new Error(`still there: ${(await s3.keys(other)).join(', ')}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } finally {
      await replica.close();
    }
  });

  it(
    'spares leftovers younger than its grace (another replica may ' + 'be uploading them) and removes older ones',
    async () => {
      const token = await h.token('acme', ['models:read', 'models:write']);
      const keep = Buffer.from(buildMlp({ seed: 41 }));
      const kept = await push(h.client, token, { model: 'keep' }, keep);
      const keptKey = `${prefix}acme/${kept.sha256.slice(0, 2)}/${kept.sha256}`;

      // What an upload in progress elsewhere looks like: a temporary object, an unfinished multipart
      // upload, and a published blob whose version is about to commit.
      const writer = await h.registry.blobs.create();
      // More than two 5 MiB parts in 1 MiB writes: the last returns after a part was stored.
      for (let i = 0; i < 11; i += 1) await writer.write(Buffer.alloc(1024 * 1024, i));
      const unrecorded = { tenant: 'acme', sha256: 'cd'.repeat(32) };
      const published = await h.registry.blobs.create();
      await published.write(Buffer.from('sealed bytes of a version not yet committed'));
      await published.commit(unrecorded);
      const inProgress = await h.registry.blobs.create();
      await inProgress.write(Buffer.from('half'));
      await inProgress.read(0, 4);
      const before = { keys: await s3.keys(prefix), uploads: await s3.uploads(prefix) };
      expect(before.keys).toContain(`${prefix}acme/cd/${unrecorded.sha256}`);
      expect(before.keys.filter((k) => k.startsWith(`${prefix}.tmp/`))).toHaveLength(1);
      expect(before.uploads).toHaveLength(1);

      await h.restart();
      expect({ keys: await s3.keys(prefix), uploads: await s3.uploads(prefix) }).toEqual(before);

      await ageBucket(s3.dir);
      await h.restart();
      expect(await s3.keys(prefix)).toEqual([keptKey]);
      expect(await s3.uploads(prefix)).toEqual([]);
      expect((await pull(h.client, token, 'keep')).bytes.equals(keep)).toBe(true);
      // The writers' own aborts find nothing left to remove.
      await writer.abort().catch(() => undefined);
      await inProgress.abort();
    },
  );
});
