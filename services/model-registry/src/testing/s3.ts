// A real S3-protocol server for tests (s3rver, files in a fresh folder) on an ephemeral port, with
// one bucket. Exported as `@quanta/model-registry/testing` for tests/e2e as well.
// Limits of s3rver 3.7 that tests must stay within: a listing of more than one page (1000 keys, or
// MaxKeys) fails with InternalError, as its continuation tokens use DES, which OpenSSL 3 refuses;
// UploadPartCopy is not implemented. What it lacks that the registry's tests need is added in front
// of its routes: SigV4 signature checks, ListMultipartUploads, AbortMultipartUpload, UploadPartCopy.
import { createHash, createHmac } from 'node:crypto';
import { open, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';

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
  /** An object's bytes. */
  get(key: string): Promise<Buffer>;
  /** Keys of the multipart uploads under `prefix` that are neither completed nor aborted. */
  uploads(prefix?: string): Promise<string[]>;
  close(): Promise<void>;
}

interface KoaContext {
  method: string;
  path: string;
  /** The request line's target, as sent (still percent-encoded). */
  url: string;
  headers: Record<string, string | string[] | undefined>;
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

const xmlError = (ctx: KoaContext, status: number, code: string, message: string): void => {
  ctx.status = status;
  ctx.type = 'application/xml';
  ctx.body =
    `<?xml version="1.0" ` +
    `encoding="UTF-8"?><Error><Code>${code}</Code><Message>${escapeXml(message)}</Message></Error>`;
};

/** RFC 3986 encoding, as SigV4's canonical query string wants it. */
const encodeRfc3986 = (text: string): string =>
  encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/**
 * s3rver checks only that a SigV4 request's access key exists, not its signature: a wrong secret
 * would pass. This recomputes the signature of header-signed requests (the SDK's way) from the
 * secret of the key and answers SignatureDoesNotMatch as S3 does.
 */
function sigV4Check(secrets: ReadonlyMap<string, string>): Middleware {
  return async (ctx, next) => {
    const authorization = ctx.headers['authorization'];
    const match =
      typeof authorization === 'string'
        ? /^AWS4-HMAC-SHA256 Credential=([^/]+)\/([^,]+), ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]+)$/.exec(
            authorization,
          )
        : null;
    if (match === null) return next();
    const [, accessKeyId = '', scope = '', signedHeaders = '', signature = ''] = match;
    const secret = secrets.get(accessKeyId);
    // An unknown key is s3rver's to refuse (InvalidAccessKeyId).
    if (secret === undefined) return next();
    const [target = '', rawQuery = ''] = ctx.url.split('?', 2) as [string, string?];
    const query = rawQuery
      .split('&')
      .filter((pair) => pair !== '')
      .map((pair) => {
        const [name = '', value = ''] = pair.split('=', 2) as [string, string?];
        return [
          encodeRfc3986(decodeURIComponent(name.replace(/\+/g, ' '))),
          encodeRfc3986(decodeURIComponent(value.replace(/\+/g, ' '))),
        ] as const;
      })
      .sort(([a, av], [b, bv]) => (a === b ? (av < bv ? -1 : av > bv ? 1 : 0) : a < b ? -1 : 1))
      .map(([name, value]) => `${name}=${value}`)
      .join('&');
    const header = (name: string): string => {
      const value = ctx.headers[name];
      return (Array.isArray(value) ? value.join(',') : (value ?? '')).trim().replace(/\s+/g, ' ');
    };
    const canonicalHeaders = signedHeaders
      .split(';')
      .map((name) => `${name}:${header(name)}\n`)
      .join('');
    const canonicalRequest = [
      ctx.method,
      target,
      query,
      canonicalHeaders,
      signedHeaders,
      header('x-amz-content-sha256') || 'UNSIGNED-PAYLOAD',
    ].join('\n');
    const stringToSign = [
      'AWS4-HMAC-SHA256',
      header('x-amz-date'),
      scope,
      createHash('sha256').update(canonicalRequest).digest('hex'),
    ].join('\n');
    let key: Buffer = Buffer.from(`AWS4${secret}`);
    for (const part of scope.split('/')) key = createHmac('sha256', key).update(part).digest();
    if (createHmac('sha256', key).update(stringToSign).digest('hex') !== signature) {
      xmlError(
        ctx,
        403,
        'SignatureDoesNotMatch',
        'The request signature we calculated does not match the signature you provided. Check your key and ' +
          'signing method.',
      );
      return;
    }
    await next();
  };
}

/**
 * s3rver 3.7 answers ListMultipartUploads with NotImplemented and AbortMultipartUpload with
 * MethodNotAllowed, so incomplete uploads could be neither seen nor removed, and UploadPartCopy
 * with NotImplemented. This serves the three from its own store layout (an upload's key in
 * `<dir>/<bucket>/._S3rver_uploads/<uploadId>/key`, its parts beside it as `<n>` and `<n>.md5`; an
 * object in `<dir>/<bucket>/<key>._S3rver_object`), in front of s3rver's routes (after the
 * signature check).
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
        entries.push(
          `<Upload><Key>${escapeXml(uploadKey)}</Key><UploadId>${uploadId}</UploadId>` +
            `<Initiated>${initiated}</Initiated></Upload>`,
        );
      }
      ctx.type = 'application/xml';
      ctx.body =
        `<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult>` +
        `<Bucket>${escapeXml(bucket ?? '')}</Bucket><Prefix>${escapeXml(prefix)}</Prefix>` +
        `<IsTruncated>false</IsTruncated>${entries.join('')}</ListMultipartUploadsResult>`;
      return;
    }
    const uploadId = ctx.query['uploadId'];
    const copySource = ctx.headers['x-amz-copy-source'];
    if (ctx.method === 'PUT' && key !== '' && typeof uploadId === 'string' && typeof copySource === 'string') {
      const uploadDir = join(uploadsDir, uploadId.replace(/[^0-9a-f]/g, ''));
      const partNumber = Number(ctx.query['partNumber']);
      const [sourceBucket = '', ...sourceKey] = decodeURIComponent(copySource).replace(/^\//, '').split('/');
      const range = /^bytes=(\d+)-(\d+)$/.exec(String(ctx.headers['x-amz-copy-source-range'] ?? ''));
      if (
        !Number.isInteger(partNumber) ||
        range === null ||
        (await readFile(join(uploadDir, 'key'), 'utf8').catch(() => undefined)) !== key
      ) {
        xmlError(ctx, 400, 'InvalidRequest', 'an UploadPartCopy this test server does not serve');
        return;
      }
      const source = await open(`${join(dir, sourceBucket, ...sourceKey)}._S3rver_object`).catch(() => undefined);
      if (source === undefined) {
        xmlError(ctx, 404, 'NoSuchKey', 'The specified key does not exist.');
        return;
      }
      const start = Number(range[1]);
      const bytes = Buffer.alloc(Number(range[2]) - start + 1);
      try {
        await source.read(bytes, 0, bytes.length, start);
      } finally {
        await source.close();
      }
      const md5 = createHash('md5').update(bytes).digest('hex');
      await writeFile(join(uploadDir, String(partNumber)), bytes);
      await writeFile(join(uploadDir, `${partNumber}.md5`), md5);
      ctx.type = 'application/xml';
      ctx.body =
        `<?xml version="1.0" encoding="UTF-8"?><CopyPartResult><ETag>"${md5}"</ETag>` +
        `<LastModified>${new Date().toISOString()}</LastModified></CopyPartResult>`;
      return;
    }
    if (ctx.method === 'DELETE' && key !== '' && typeof uploadId === 'string') {
      const uploadDir = join(uploadsDir, uploadId.replace(/[^0-9a-f]/g, ''));
      if ((await readFile(join(uploadDir, 'key'), 'utf8').catch(() => undefined)) !== key) {
        xmlError(ctx, 404, 'NoSuchUpload', 'The specified upload does not exist.');
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
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    directory: dir,
    silent: true,
    configureBuckets: [{ name: bucket }],
  });
  server.middleware.unshift(
    sigV4Check(new Map([[TEST_S3_CREDENTIALS.AWS_ACCESS_KEY_ID, TEST_S3_CREDENTIALS.AWS_SECRET_ACCESS_KEY]])),
    multipartUploadRoutes(dir),
  );
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  // As the registry's store does (s3-client.ts): no eight-line warning about the SDK's future Node.js versions.
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
  const client = new S3Client({
    endpoint,
    region: TEST_S3_REGION,
    forcePathStyle: true,
    credentials: {
      accessKeyId: TEST_S3_CREDENTIALS.AWS_ACCESS_KEY_ID,
      secretAccessKey: TEST_S3_CREDENTIALS.AWS_SECRET_ACCESS_KEY,
    },
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
        const page = await client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
        );
        for (const object of page.Contents ?? []) if (object.Key !== undefined) keys.push(object.Key);
        token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
      } while (token !== undefined);
      return keys.sort();
    },
    async get(key) {
      const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return Buffer.from(await response.Body!.transformToByteArray());
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
