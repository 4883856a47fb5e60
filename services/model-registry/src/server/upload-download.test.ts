import { createHash } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { registry as pb } from '@quanta/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../testing/test-process.js';
import { call, startHarness } from '../testing/test-harness.js';
import type { Harness } from '../testing/test-harness.js';
import { failure, grpc, pull, push } from '../testing/test-client.js';

const OCR_CLS = join(REPO_ROOT, 'node_modules', '@gutenye', 'ocr-models', 'assets', 'ch_ppocr_mobile_v2.0_cls_infer.onnx');
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    if (entry.isFile()) out.push(join(entry.parentPath, entry.name));
  }
  return out;
}

describe('UploadVersion / DownloadVersion against a real crypto service', () => {
  let h: Harness;
  let writer: string;
  let reader: string;
  let ocr: Buffer;

  beforeAll(async () => {
    h = await startHarness();
    writer = await h.token('acme', ['models:read', 'models:write']);
    reader = await h.token('acme', ['models:read']);
    ocr = await readFile(OCR_CLS);
  }, 240_000);
  afterAll(async () => {
    await h?.close();
  });

  it('round-trips the PP-OCR classifier byte for byte, sealed on disk', async () => {
    const version = await push(h.client, writer, { model: 'ocr-cls', description: 'PP-OCR mobile cls', expectedSha256: sha256(ocr), expectedSizeBytes: BigInt(ocr.length) }, ocr);
    expect(version).toMatchObject({ model: 'ocr-cls', version: 1, status: pb.VersionStatus.VERSION_STATUS_READY, sha256: sha256(ocr), sizeBytes: BigInt(ocr.length) });
    expect(version.signature?.inputs[0]).toMatchObject({ name: 'x', datatype: 'FP32' });
    const pulled = await pull(h.client, reader, 'ocr-cls:1');
    expect(pulled.bytes.equals(ocr)).toBe(true);
    expect(pulled.version.sha256).toBe(sha256(ocr));

    // The plaintext is nowhere in the blob folder: look for 64-byte slices from several places.
    const files = await filesUnder(h.registry.blobDir);
    expect(files).toHaveLength(1);
    const stored = await readFile(files[0]!);
    expect(stored.length).toBeGreaterThan(ocr.length);
    for (const at of [0, 4096, Math.floor(ocr.length / 2), ocr.length - 64]) {
      expect(stored.includes(ocr.subarray(at, at + 64))).toBe(false);
    }
    expect((await stat(files[0]!)).mode & 0o077).toBe(0);
  });

  it('numbers versions per model and stores identical content once', async () => {
    const v2 = await push(h.client, writer, { model: 'ocr-cls' }, ocr, 1000);
    expect(v2.version).toBe(2);
    const other = await push(h.client, writer, { model: 'ocr-copy' }, ocr);
    expect(other.version).toBe(1);
    expect(await filesUnder(h.registry.blobDir)).toHaveLength(1);
    const list = await call(h.client, 'listVersions', { model: 'ocr-cls', pageSize: 0, pageToken: '', status: 0, tags: {} }, reader);
    expect(list.versions.map((v) => v.version)).toEqual([2, 1]);
  });

  it('refuses a reader without models:write and a caller without a token', async () => {
    const denied = await failure(push(h.client, reader, { model: 'ocr-cls' }, ocr));
    expect(denied.code).toBe(grpc.status.PERMISSION_DENIED);
    const anonymous = await failure(call(h.client, 'getModel', { name: 'ocr-cls' }));
    expect(anonymous.code).toBe(grpc.status.UNAUTHENTICATED);
  });
});
