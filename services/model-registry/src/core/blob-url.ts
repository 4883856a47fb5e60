import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDuration } from '@quanta/service-kit';

/** Where the sealed model files are, as `QUANTA_BLOB_URL` names it. */
export type BlobLocation = FileBlobLocation | S3BlobLocation;

export interface FileBlobLocation {
  readonly kind: 'file';
  /** An absolute folder. */
  readonly dir: string;
}

export interface S3BlobLocation {
  readonly kind: 's3';
  readonly bucket: string;
  /** Key prefix of every object, '' or ending in '/'. */
  readonly prefix: string;
  /** An S3-compatible endpoint (`http://127.0.0.1:9000`); AWS S3 itself when absent. */
  readonly endpoint?: string;
  /** The SDK's default chain (AWS_REGION, ~/.aws/config) when absent. */
  readonly region?: string;
  /** Bucket in the path (`endpoint/bucket/key`) rather than the host name: what most S3-compatible servers need. */
  readonly forcePathStyle: boolean;
  /**
   * Temporaries and unrecorded blobs younger than this are left alone by the start-up sweep: in a
   * bucket that several registry replicas share they may belong to an upload still running in
   * another replica.
   */
  readonly sweepGraceMs: number;
}

/** How long a shared bucket's sweep leaves young objects alone unless the URL says otherwise. */
export const DEFAULT_S3_SWEEP_GRACE_MS = 60 * 60 * 1000;

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const S3_PARAMS = new Set(['endpoint', 'region', 'force_path_style', 'sweep_grace']);
export const BLOB_URL_FORMS =
  'file:///ABSOLUTE/PATH or s3://BUCKET/PREFIX?endpoint=http://HOST:PORT&region=REGION&force_path_style=true';

/** Parses QUANTA_BLOB_URL; throws an Error whose message says what is wrong and what is accepted. */
export function parseBlobUrl(raw: string): BlobLocation {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`is not a URL; use ${BLOB_URL_FORMS}`);
  }
  if (url.protocol === 'file:') {
    if (url.search !== '' || url.hash !== '') throw new Error('a file: URL takes no query or fragment');
    const dir = fileURLToPath(url);
    if (!isAbsolute(dir)) throw new Error('a file: URL names an absolute folder: file:///ABSOLUTE/PATH');
    return { kind: 'file', dir };
  }
  if (url.protocol !== 's3:')
    throw new Error(`has the unknown scheme "${url.protocol.replace(/:$/, '')}"; use ${BLOB_URL_FORMS}`);
  const bucket = url.hostname;
  if (bucket === '') throw new Error('names no bucket: s3://BUCKET/PREFIX?...');
  if (!BUCKET.test(bucket)) throw new Error(`"${bucket}" is not a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-')`);
  if (url.port !== '' || url.username !== '' || url.password !== '') {
    throw new Error(
      'an s3: URL carries no port or credentials: the endpoint goes in ?endpoint=, credentials in ' +
        'AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY',
    );
  }
  for (const name of url.searchParams.keys()) {
    if (!S3_PARAMS.has(name))
      throw new Error(`has the unknown parameter "${name}" (known: ${[...S3_PARAMS].join(', ')})`);
  }
  const params = url.searchParams;
  const endpoint = params.get('endpoint') ?? undefined;
  if (endpoint !== undefined) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(endpoint);
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      throw new Error(`endpoint "${endpoint}" is not an http:// or https:// URL`);
    }
  }
  const region = params.get('region') ?? undefined;
  if (region === '') throw new Error('region is empty');
  const pathStyle = params.get('force_path_style') ?? 'false';
  if (pathStyle !== 'true' && pathStyle !== 'false')
    throw new Error(`force_path_style is "${pathStyle}", not true or false`);
  const graceRaw = params.get('sweep_grace');
  const sweepGraceMs = graceRaw === null ? DEFAULT_S3_SWEEP_GRACE_MS : parseDuration(graceRaw);
  if (sweepGraceMs === undefined) throw new Error(`sweep_grace "${graceRaw}" is not a duration (like 0s, 10m, 1h)`);
  const path = decodeURIComponent(url.pathname).replace(/^\/+|\/+$/g, '');
  return {
    kind: 's3',
    bucket,
    prefix: path === '' ? '' : `${path}/`,
    ...(endpoint === undefined ? {} : { endpoint }),
    ...(region === undefined ? {} : { region }),
    forcePathStyle: pathStyle === 'true',
    sweepGraceMs,
  };
}
