import { ConfigError } from '@quanta/service-kit';
import type { BlobStore } from './blob-store.js';
import { createFsBlobStore } from './blob-store.js';
import type { BlobLocation } from './blob-url.js';
import { parseBlobUrl } from './blob-url.js';
import { openS3BlobStore } from './s3-blob-store.js';

/**
 * Opens the blob store that QUANTA_BLOB_URL names (`defaultDir` when unset) and, for a bucket,
 * checks at once that it exists and that the credentials may use it. Bad settings throw
 * service-kit's ConfigError with one line that says what is wrong, as a bad flag does.
 */
export async function openBlobStore(
  url: string | undefined,
  defaultDir: string,
  options: { maxObjectBytes?: number } = {},
): Promise<BlobStore> {
  if (url === undefined) return createFsBlobStore(defaultDir);
  let location: BlobLocation;
  try {
    location = parseBlobUrl(url);
  } catch (error: unknown) {
    throw new ConfigError([`QUANTA_BLOB_URL: "${url}" ${(error as Error).message}`]);
  }
  if (location.kind === 'file') return createFsBlobStore(location.dir);
  try {
    return await openS3BlobStore(location, options);
  } catch (error: unknown) {
    throw new ConfigError([`QUANTA_BLOB_URL: ${(error as Error).message}`]);
  }
}
