import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { crypto as cpb, registry as pb } from '@quanta/contracts';
import { buildCnn, buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, call, startHarness } from '../testing/harness.js';
import type { Harness } from '../testing/harness.js';
import { failure, pull, push } from '../testing/client.js';
import { rpc } from '../testing/rpc.js';
import type { RequestOf, UnaryName } from '../testing/rpc.js';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const KEY = 'model-registry';

/** Reads a RewrapDataKeys stream to its end (or, with `stopAfter`, cancels it after that many messages). */
async function rewrap(
  client: pb.RegistryServiceClient,
  token: string,
  stopAfter?: number,
): Promise<pb.RewrapDataKeysResponse[]> {
  const stream = client.rewrapDataKeys({}, bearer(token));
  const seen: pb.RewrapDataKeysResponse[] = [];
  try {
    for await (const message of stream as AsyncIterable<pb.RewrapDataKeysResponse>) {
      seen.push(message);
      if (stopAfter !== undefined && seen.length >= stopAfter) {
        stream.cancel();
        break;
      }
    }
  } catch (error: unknown) {
    if ((error as grpc.ServiceError).code !== grpc.status.CANCELLED) throw error;
  }
  return seen;
}

describe('RewrapDataKeys and GetDataKeyStatus against a real crypto service', () => {
  let h: Harness;
  let cryptoClient: cpb.CryptoServiceClient;
  /** crypto's admin token: the registry's service token, in whose tenant the registry key lives. */
  let keyAdmin: string;
  let admin: string;
  let acme: string;
  let globex: string;
  const files = new Map<string, Buffer>();

  const cryptoCall = <K extends UnaryName<typeof cpb.CryptoServiceService>>(
    method: K,
    request: RequestOf<typeof cpb.CryptoServiceService, K>,
  ) => rpc(cryptoClient, cpb.CryptoServiceService, method, request, bearer(keyAdmin));

  const everyVersionDownloads = async (): Promise<void> => {
    for (const [ref, bytes] of files) {
      const tenantToken = ref.startsWith('g-') ? globex : acme;
      const pulled = await pull(h.client, tenantToken, ref);
      expect(sha256(pulled.bytes), ref).toBe(sha256(bytes));
    }
  };

  beforeAll(async () => {
    h = await startHarness();
    keyAdmin = (await readFile(join(h.home, 'admin.token'), 'utf8')).trim();
    cryptoClient = new cpb.CryptoServiceClient(h.crypto.address, grpc.credentials.createInsecure());
    admin = await h.token('ops', ['admin'], 'operator');
    acme = await h.token('acme', ['models:read', 'models:write']);
    globex = await h.token('globex', ['models:read', 'models:write']);
    const mlp = Buffer.from(buildMlp({ seed: 1 }));
    const cnn = Buffer.from(buildCnn({ seed: 2 }));
    files.set('mlp:1', mlp);
    files.set('cnn:1', cnn);
    files.set('mlp-copy:1', mlp); // same content: one stored file for two versions
    files.set('g-mlp:1', Buffer.from(buildMlp({ seed: 3 })));
    for (const [ref, bytes] of files)
      await push(h.client, ref.startsWith('g-') ? globex : acme, { model: ref.split(':')[0]! }, bytes);
  }, 240_000);

  afterAll(async () => {
    cryptoClient?.close();
    await h?.close();
  });

  it('counts what raising min_decryption_version would strand, and rewraps every file resumably', async () => {
    const before = await call(h.client, 'getDataKeyStatus', { belowKeyVersion: 0 }, admin);
    expect(before).toMatchObject({
      keyName: KEY,
      latestKeyVersion: 1,
      belowKeyVersion: 1,
      versionsBelow: 0n,
      filesBelow: 0n,
    });
    expect(before.counts).toEqual([{ keyName: KEY, keyVersion: 1, versions: 4n, files: 3n }]);

    // A file stored before the database kept its key: the header's is read once and recorded.
    await h.registry.store.query(
      "UPDATE registry_blobs SET key_name = NULL, key_version = NULL, wrapped_key = NULL WHERE tenant = 'globex'",
    );

    const rotated = await cryptoCall('rotateKey', { name: KEY });
    expect(rotated.key?.latestVersion).toBe(2);
    const stale = await call(h.client, 'getDataKeyStatus', { belowKeyVersion: 2 }, admin);
    expect(stale).toMatchObject({ latestKeyVersion: 2, belowKeyVersion: 2, versionsBelow: 4n, filesBelow: 3n });

    // The hazard this guards against: raised before a rewrap, the stored versions stop downloading.
    await cryptoCall('updateKeyConfig', { name: KEY, config: { minDecryptionVersion: 2 } });
    const stranded = await failure(pull(h.client, acme, 'mlp:1'));
    expect(stranded.code).toBe(grpc.status.UNAVAILABLE);
    expect(stranded.details).toMatch(/min_decryption_version|below|version 1/i);
    await cryptoCall('updateKeyConfig', { name: KEY, config: { minDecryptionVersion: 1 } });

    // Cancelled after its first file (the server may have done more before it saw the cancel): what
    // is done stays done, the rest is still under v1 and still readable.
    const partial = await rewrap(h.client, admin, 1);
    expect(partial[0]).toMatchObject({ done: 1n, total: 3n, rewrapped: 1n, keyVersion: 2 });
    const midway = await call(h.client, 'getDataKeyStatus', { belowKeyVersion: 2 }, admin);
    expect(midway.filesBelow).toBeLessThan(3n);
    await everyVersionDownloads();

    const rest = await rewrap(h.client, admin);
    expect(rest.map((m) => m.done)).toEqual([1n, 2n, 3n]);
    const last = rest.at(-1)!;
    expect(last).toMatchObject({ total: 3n, keyName: KEY, keyVersion: 2 });
    // The cancelled call may have gone on with a file while the status was read.
    expect(last.rewrapped).toBeLessThanOrEqual(midway.filesBelow);
    expect(last.rewrapped + last.skipped).toBe(3n);
    const again = await rewrap(h.client, admin);
    expect(again.at(-1)).toMatchObject({ total: 3n, rewrapped: 0n, skipped: 3n });

    const after = await call(h.client, 'getDataKeyStatus', { belowKeyVersion: 2 }, admin);
    expect(after).toMatchObject({ versionsBelow: 0n, filesBelow: 0n });
    expect(after.counts).toEqual([{ keyName: KEY, keyVersion: 2, versions: 4n, files: 3n }]);

    // Version 1 can no longer decrypt: every stored version still downloads, byte for byte.
    await cryptoCall('updateKeyConfig', { name: KEY, config: { minDecryptionVersion: 2 } });
    await everyVersionDownloads();
    // And a new upload after the raise is stored under v2 and reads back.
    const fresh = Buffer.from(buildMlp({ seed: 9 }));
    files.set('fresh:1', fresh);
    await push(h.client, acme, { model: 'fresh' }, fresh);
    await everyVersionDownloads();
  }, 120_000);

  it('needs the admin scope, and records the rewrap in the audit trail', async () => {
    expect((await failure(rewrap(h.client, acme))).code).toBe(grpc.status.PERMISSION_DENIED);
    const denied = await failure(call(h.client, 'getDataKeyStatus', { belowKeyVersion: 0 }, acme));
    expect(denied.details).toMatch(/admin/);
    expect(denied.code).toBe(grpc.status.PERMISSION_DENIED);
    const events = await call(
      h.client,
      'listAuditEvents',
      { action: 'RewrapDataKeys', subject: '', pageSize: 0, pageToken: '' },
      admin,
    );
    expect(events.events.length).toBeGreaterThanOrEqual(3);
    expect(
      events.events.every((e) => e.resource === `data-keys/${KEY}` && e.subject === 'operator' && e.tenant === 'ops'),
    ).toBe(true);
    expect(events.events.filter((e) => e.outcome === pb.AuditOutcome.AUDIT_OUTCOME_OK).length).toBeGreaterThanOrEqual(
      2,
    );
  });
});
