// A real S3-protocol server for tests (s3rver, files in a fresh folder) on an ephemeral port, with
// one bucket. Exported as `@quanta/model-registry/testing` for tests/e2e as well.
// Limits of s3rver 3.7 that tests must stay within: a listing of more than one page (1000 keys, or
// MaxKeys) fails with InternalError, as its continuation tokens use DES, which OpenSSL 3 refuses;
// UploadPartCopy is not implemented.
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListMultipartUploadsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';

/** s3rver's account: it checks request signatures against these. */
export const TEST_S3_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' } as const;
export const TEST_S3_REGION = 'us-east-1';

export interface TestS3 {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  readonly bucket: string;
  /** s3rver's files. */
  readonly dir: string;
  /** What a registry process needs besides QUANTA_BLOB_URL: the credentials. */
  readonly env: { readonly AWS_ACCESS_KEY_ID: string; readonly AWS_SECRET_ACCESS_KEY: string };
  /** QUANTA_BLOB_URL for this server's bucket under `prefix`, with more query parameters if given. */
  blobUrl(prefix?: string, params?: Record<string, string>): string;
  /** A client with s3rver's credentials, for looking at the bucket. */
  readonly client: S3Client;
  /** Keys of the objects under `prefix`. */
  keys(prefix?: string): Promise<string[]>;
  /** Keys of the multipart uploads under `prefix` that are neither completed nor aborted. */
  uploads(prefix?: string): Promise<string[]>;
  close(): Promise<void>;
}

interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
  status: number;
  type: string;
  body: unknown;
}
type Middleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;
interface S3rverInstance {
  middleware: Middleware[];
  run(): Promise<{ port: number }>;
  httpServer: Server;
  close(): Promise<void>;
}
type S3rverConstructor = new (options: Record<string, unknown>) => S3rverInstance;

const escapeXml = (text: string): string => text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * s3rver 3.7 answers ListMultipartUploads with NotImplemented and AbortMultipartUpload with
 * MethodNotAllowed, so incomplete uploads could be neither seen nor removed. This serves both from
 * its own store layout (`<dir>/<bucket>/._S3rver_uploads/<uploadId>/key`), without checking
 * signatures, in front of s3rver's routes.
 */
function multipartUploadRoutes(dir: string): Middleware {
  return async (ctx, next) => {
    const [bucket, ...keyParts] = decodeURIComponent(ctx.path).replace(/^\//, '').split('/');
    const uploadsDir = join(dir, bucket ?? '', '._S3rver_uploads');
    const key = keyParts.join('/');
    if (ctx.method === 'GET' && key === '' && 'uploads' in ctx.query) {
      const prefix = typeof ctx.query['prefix'] === 'string' ? ctx.query['prefix'] : '';
      const entries: string[] = [];
      for (const uploadId of await readdir(uploadsDir).catch(() => [] as string[])) {
        const uploadKey = await readFile(join(uploadsDir, uploadId, 'key'), 'utf8').catch(() => undefined);
        if (uploadKey === undefined || !uploadKey.startsWith(prefix)) continue;
        const initiated = (await stat(join(uploadsDir, uploadId, 'key'))).mtime.toISOString();
        entries.push(`<Upload><Key>${escapeXml(uploadKey)}</Key><UploadId>${uploadId}</UploadId><Initiated>${initiated}</Initiated></Upload>`);
      }
      ctx.type = 'application/xml';
      ctx.body = `<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult><Bucket>${escapeXml(bucket ?? '')}</Bucket><Prefix>${escapeXml(prefix)}</Prefix><IsTruncated>false</IsTruncated>${entries.join('')}</ListMultipartUploadsResult>`;
      return;
    }
    const uploadId = ctx.query['uploadId'];
    if (ctx.method === 'DELETE' && key !== '' && typeof uploadId === 'string') {
      const uploadDir = join(uploadsDir, uploadId.replace(/[^0-9a-f]/g, ''));
      if ((await readFile(join(uploadDir, 'key'), 'utf8').catch(() => undefined)) !== key) {
        ctx.status = 404;
        ctx.type = 'application/xml';
        ctx.body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>`;
        return;
      }
      await rm(uploadDir, { recursive: true, force: true });
      ctx.status = 204;
      return;
    }
    await next();
  };
}

/** Starts s3rver on 127.0.0.1:0 with a fresh folder and one bucket (`quanta` unless named). */
export async function startTestS3(options: { bucket?: string } = {}): Promise<TestS3> {
  const bucket = options.bucket ?? 'quanta';
  const dir = await mkdtemp(join(tmpdir(), 'quanta-s3-'));
  // s3rver ships no types: it is loaded through require and described by S3rverInstance.
  const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;
  const server = new S3rver({ address: '127.0.0.1', port: 0, directory: dir, silent: true, configureBuckets: [{ name: bucket }] });
  server.middleware.unshift(multipartUploadRoutes(dir));
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({
    endpoint,
    region: TEST_S3_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: TEST_S3_CREDENTIALS.AWS_ACCESS_KEY_ID, secretAccessKey: TEST_S3_CREDENTIALS.AWS_SECRET_ACCESS_KEY },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return {
    endpoint,
    bucket,
    dir,
    env: TEST_S3_CREDENTIALS,
    client,
    blobUrl(prefix = '', params = {}) {
      const query = new URLSearchParams({ endpoint, region: TEST_S3_REGION, force_path_style: 'true', ...params });
      return `s3://${bucket}/${prefix}?${query.toString()}`;
    },
    async keys(prefix = '') {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
        for (const object of page.Contents ?? []) if (object.Key !== undefined) keys.push(object.Key);
        token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
      } while (token !== undefined);
      return keys.sort();
    },
    async uploads(prefix = '') {
      const page = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
      return (page.Uploads ?? []).map((u) => u.Key ?? '').sort();
    },
    async close() {
      client.destroy();
      // Keep-alive sockets of clients would hold the close until they time out.
      server.httpServer.closeAllConnections();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
