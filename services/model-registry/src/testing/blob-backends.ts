// The two blob stores that registry tests run against, and a look inside each that does not go
// through the registry: what is published, what temporaries are left, the stored bytes.
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CreateMultipartUploadCommand,
  GetObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { RegistryConfig } from '../config.js';
import type { RegistryServer } from '../server/registry-server.js';
import { startTestS3 } from './s3.js';
import type { TestS3 } from './s3.js';

export interface BlobProbe {
  /** sha256 of every published blob, sorted. */
  published(): Promise<string[]>;
  /** Temporary files or objects, and unfinished multipart uploads. */
  temporaries(): Promise<string[]>;
  /** The sealed bytes stored for a blob. */
  stored(tenant: string, sha256: string): Promise<Buffer>;
  replace(tenant: string, sha256: string, bytes: Buffer): Promise<void>;
  /**
   * Leaves what an upload killed with its process leaves: a temporary (and, in a bucket, an
   * unfinished multipart upload) and a published blob that nothing recorded, whose sha it returns.
   */
  plantLeftovers(tenant: string): Promise<string>;
  /** Folders of this machine that hold the store's bytes (none for the folder store beyond QUANTA_HOME). */
  readonly dirs: readonly string[];
}

export interface BlobBackend {
  readonly name: 'folder' | 's3';
  /** Settings for a registry on this backend. */
  readonly config: Partial<RegistryConfig>;
  /** Environment for a registry process on this backend (merge with the rest). */
  readonly env: NodeJS.ProcessEnv;
  probe(registry: RegistryServer | { blobDir: string }): BlobProbe;
  close(): Promise<void>;
}

const ORPHAN = 'ab'.padEnd(64, '0');

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    if (entry.isFile()) out.push(join(entry.parentPath, entry.name));
  }
  return out.sort();
}

function folderProbe(root: string): BlobProbe {
  const path = (tenant: string, sha: string): string => join(root, tenant, sha.slice(0, 2), sha);
  return {
    dirs: [],
    published: async () =>
      (await filesUnder(root))
        .filter((f) => !f.includes(`${join(root, '.tmp')}`))
        .map((f) => f.slice(-64))
        .sort(),
    temporaries: () => filesUnder(join(root, '.tmp')),
    stored: (tenant, sha) => readFile(path(tenant, sha)),
    replace: (tenant, sha, bytes) => writeFile(path(tenant, sha), bytes),
    async plantLeftovers(tenant) {
      await mkdir(join(root, '.tmp'), { recursive: true });
      await writeFile(join(root, '.tmp', 'dead.part'), 'half');
      await mkdir(join(root, tenant, 'ab'), { recursive: true });
      await writeFile(path(tenant, ORPHAN), 'sealed bytes nobody recorded');
      return ORPHAN;
    },
  };
}

function s3Probe(s3: TestS3, prefix: string): BlobProbe {
  const key = (tenant: string, sha: string): string => `${prefix}${tenant}/${sha.slice(0, 2)}/${sha}`;
  return {
    dirs: [s3.dir],
    published: async () =>
      (await s3.keys(prefix))
        .filter((k) => !k.startsWith(`${prefix}.tmp/`))
        .map((k) => k.slice(-64))
        .sort(),
    temporaries: async () => [...(await s3.keys(`${prefix}.tmp/`)), ...(await s3.uploads(`${prefix}.tmp/`))],
    async stored(tenant, sha) {
      const response = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key(tenant, sha) }));
      return Buffer.from(await response.Body!.transformToByteArray());
    },
    async replace(tenant, sha, bytes) {
      await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key(tenant, sha), Body: bytes }));
    },
    async plantLeftovers(tenant) {
      await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${prefix}.tmp/dead-object`, Body: 'half' }));
      const { UploadId } = await s3.client.send(
        new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: `${prefix}.tmp/dead-upload` }),
      );
      await s3.client.send(
        new UploadPartCommand({
          Bucket: s3.bucket,
          Key: `${prefix}.tmp/dead-upload`,
          UploadId,
          PartNumber: 1,
          Body: Buffer.alloc(1000, 1),
        }),
      );
      await s3.client.send(
        new PutObjectCommand({ Bucket: s3.bucket, Key: key(tenant, ORPHAN), Body: 'sealed bytes nobody recorded' }),
      );
      return ORPHAN;
    },
  };
}

export const BLOB_BACKENDS = ['folder', 's3'] as const;

/**
 * The folder store (the registry's default), or s3rver with a bucket, credentials in this process's
 * environment (a registry in this process reads them from there) and a sweep that takes everything
 * it finds (`sweep_grace=0`), as in a bucket that one registry owns.
 */
export async function startBlobBackend(name: 'folder' | 's3', prefix = 'quanta/blobs'): Promise<BlobBackend> {
  if (name === 'folder') {
    return {
      name,
      config: {},
      env: {},
      probe: (registry) => folderProbe(registry.blobDir),
      close: () => Promise.resolve(),
    };
  }
  const s3 = await startTestS3();
  Object.assign(process.env, s3.env);
  const blobUrl = s3.blobUrl(prefix, { sweep_grace: '0' });
  return {
    name,
    config: { blobUrl },
    env: { ...s3.env, QUANTA_BLOB_URL: blobUrl },
    probe: () => s3Probe(s3, `${prefix}/`),
    close: () => s3.close(),
  };
}
