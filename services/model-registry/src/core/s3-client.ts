// The SDK client of an S3 blob location, how its failures read, and the start-up access check.
import { randomUUID } from 'node:crypto';
import { DeleteObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { TMP_DIR } from './blob-store.js';
import type { S3BlobLocation } from './blob-url.js';

/** The SDK client for a location: credentials, and the region when the URL has none, from the SDK's default chain. */
export function createS3Client(location: S3BlobLocation): S3Client {
  // The SDK warns once per process, over eight lines of stderr, that its releases from 2027 on
  // will need Node.js 22; the version in the lock file runs on the Node.js 20 that Quanta targets.
  // Setting the variable to anything but "true" shows the warning again.
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
  return new S3Client({
    ...(location.endpoint === undefined ? {} : { endpoint: location.endpoint }),
    ...(location.region === undefined ? {} : { region: location.region }),
    forcePathStyle: location.forcePathStyle,
    // The SDK's default (WHEN_SUPPORTED) sends streamed bodies aws-chunked with trailing CRC32
    // checksums, which S3-compatible servers such as s3rver store as part of the bytes. Every
    // blob carries its own authentication (AES-GCM per segment, sha256 checked on download), so
    // checksums are sent and checked only where the API requires them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // A down or unroutable endpoint fails the start-up check within seconds, not after the OS's connect timeout.
    requestHandler: { connectionTimeout: 5000 },
  });
}

/** An object that is not there, as the filesystem store reports it (download maps ENOENT to DATA_LOSS "missing"). */
export function missing(key: string, cause: unknown): NodeJS.ErrnoException {
  return Object.assign(new Error(`object ${key} does not exist`, { cause }), { code: 'ENOENT' });
}

export function isNotFound(error: unknown): boolean {
  const e = error as { name?: unknown; $metadata?: { httpStatusCode?: unknown } };
  return e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404;
}

export function isNotImplemented(error: unknown): boolean {
  const e = error as { name?: unknown; $metadata?: { httpStatusCode?: unknown } };
  return e.name === 'NotImplemented' || e.name === 'MethodNotAllowed' || e.$metadata?.httpStatusCode === 501;
}

/** One line for what keeps a store from working, naming the bucket and endpoint. */
export function describeS3Failure(location: S3BlobLocation, error: unknown): string {
  const where = location.endpoint ?? `AWS S3${location.region === undefined ? '' : ` (${location.region})`}`;
  const e = error as { name?: unknown; code?: unknown; message?: unknown; $metadata?: { httpStatusCode?: unknown } };
  const name = typeof e.name === 'string' ? e.name : '';
  const code = typeof e.code === 'string' ? e.code : '';
  const message = (typeof e.message === 'string' ? e.message : String(error)).split('\n')[0] ?? '';
  const status = e.$metadata?.httpStatusCode;
  if (name === 'NoSuchBucket') return `bucket "${location.bucket}" does not exist at ${where}`;
  if (
    [
      'InvalidAccessKeyId',
      'SignatureDoesNotMatch',
      'AccessDenied',
      'Forbidden',
      'InvalidToken',
      'ExpiredToken',
    ].includes(name) ||
    status === 403
  ) {
    const detail = message === '' || message === name ? '' : `: ${message}`;
    return (
      `${where} refused the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) ` +
      `for bucket "${location.bucket}": ${name || String(status)}${detail}`
    );
  }
  if (name === 'CredentialsProviderError' || /credentials/i.test(message))
    return `no credentials for ${where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (${message})`;
  if (/region is missing/i.test(message))
    return `no region for ${where}: add &region=REGION to QUANTA_BLOB_URL or set AWS_REGION`;
  if (
    ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'EHOSTUNREACH', 'ETIMEDOUT'].includes(code) ||
    name === 'TimeoutError'
  ) {
    return `cannot reach the object store at ${where}: ${code || name} ${message}`.trimEnd();
  }
  return `the object store at ${where} failed on bucket "${location.bucket}": ${name || code || 'error'}: ${message}`;
}

export async function checkS3Access(client: S3Client, location: S3BlobLocation): Promise<void> {
  const probe = `${location.prefix}${TMP_DIR}/start-check-${randomUUID()}`;
  try {
    // A full first page, not MaxKeys=1: s3rver cannot make continuation tokens under OpenSSL 3
    // (it uses DES), and the sweep that follows lists every blob anyway.
    await client.send(new ListObjectsV2Command({ Bucket: location.bucket, Prefix: location.prefix }));
    await client.send(new PutObjectCommand({ Bucket: location.bucket, Key: probe, Body: Buffer.alloc(0) }));
    await client.send(new DeleteObjectCommand({ Bucket: location.bucket, Key: probe }));
  } catch (error: unknown) {
    throw new Error(describeS3Failure(location, error), { cause: error });
  }
}
