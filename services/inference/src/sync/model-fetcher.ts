import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { registry as pb } from '@quanta/contracts';
import type { ModelCache } from './model-cache.js';
import type { DiskCache } from './sealed-cache.js';

/** Why a model file could not be had; `code` is a gRPC status name the front ends can pass on. */
export class FetchError extends Error {
  override readonly name = 'FetchError';
  constructor(
    readonly code:
      | 'NOT_FOUND'
      | 'FAILED_PRECONDITION'
      | 'DATA_LOSS'
      | 'UNAVAILABLE'
      | 'PERMISSION_DENIED'
      | 'RESOURCE_EXHAUSTED'
      | 'INTERNAL',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface FetchedModel {
  /** The version the bytes belong to (the download's header, or the expected version on a cache hit). */
  readonly version: pb.ModelVersion;
  readonly bytes: Uint8Array;
  /** True when no download happened. */
  readonly cached: boolean;
}

export interface ModelFetcher {
  /**
   * The file of `ref` (`name:3`, `name@alias`, `name`) of `tenant`. With `expected` (a deployment's
   * resolved version), a cached file of that digest is used without asking the registry, and a
   * download whose header names another digest fails. The bytes are checked against the header's
   * sha256 and size before they are returned or cached.
   */
  fetch(tenant: string, ref: string, expected?: pb.ModelVersion): Promise<FetchedModel>;
}

export interface ModelFetcherOptions {
  readonly client: pb.RegistryServiceClient;
  readonly cache: ModelCache;
  /** A second level that outlives the process (sealed files); asked after `cache`, filled after each download. */
  readonly disk?: DiskCache;
  /** Largest file accepted, in bytes (it is held in memory whole). Default 2 GiB. */
  readonly maxModelBytes?: number;
  /**
   * A download that receives nothing for this long is cancelled (a hung registry must not hold a
   * model's queue). Default 60 s.
   */
  readonly idleTimeoutMs?: number;
  /** DownloadVersion chunk size; 0: the registry's default (1 MiB). */
  readonly chunkSizeBytes?: number;
}

const STATUS_CODES: Readonly<Partial<Record<number, FetchError['code']>>> = {
  [grpc.status.NOT_FOUND]: 'NOT_FOUND',
  [grpc.status.FAILED_PRECONDITION]: 'FAILED_PRECONDITION',
  [grpc.status.DATA_LOSS]: 'DATA_LOSS',
  [grpc.status.UNAVAILABLE]: 'UNAVAILABLE',
  [grpc.status.DEADLINE_EXCEEDED]: 'UNAVAILABLE',
  [grpc.status.PERMISSION_DENIED]: 'PERMISSION_DENIED',
  [grpc.status.UNAUTHENTICATED]: 'PERMISSION_DENIED',
};

function isGrpcError(error: unknown): error is grpc.ServiceError {
  return error instanceof Error && typeof (error as Partial<grpc.ServiceError>).code === 'number';
}

export function createModelFetcher(options: ModelFetcherOptions): ModelFetcher {
  const maxBytes = options.maxModelBytes ?? 2 * 1024 * 1024 * 1024;
  const idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
  // One download per digest at a time: deployments that share a file wait for the same bytes.
  const inFlight = new Map<string, Promise<FetchedModel>>();

  async function download(tenant: string, ref: string, expected: pb.ModelVersion | undefined): Promise<FetchedModel> {
    const what = `${tenant}/${ref}`;
    // waitForReady: a registry that is (re)starting is waited for (the idle watchdog bounds it),
    // instead of failing the load at once while the channel is between reconnection attempts.
    const call = options.client.downloadVersion(
      { ref, chunkSizeBytes: options.chunkSizeBytes ?? 0, tenant },
      new grpc.Metadata({ waitForReady: true }),
    );
    let idle: NodeJS.Timeout | undefined;
    let stalled = false;
    const watchdog = (): void => {
      clearTimeout(idle);
      idle = setTimeout(() => {
        stalled = true;
        call.cancel();
      }, idleTimeoutMs);
      idle.unref();
    };
    watchdog();
    try {
      let version: pb.ModelVersion | undefined;
      let bytes: Buffer | undefined;
      let received = 0;
      const hash = createHash('sha256');
      for await (const message of call as AsyncIterable<pb.DownloadVersionResponse>) {
        watchdog();
        const part = message.part;
        if (part?.$case === 'header') {
          if (version !== undefined) throw new FetchError('DATA_LOSS', `download of ${what}: a second header arrived`);
          version = part.value.version;
          if (version === undefined)
            throw new FetchError('DATA_LOSS', `download of ${what}: the header names no version`);
          const label = `${tenant}/${version.model}:${version.version}`;
          if (expected !== undefined && expected.sha256 !== version.sha256) {
            throw new FetchError(
              'DATA_LOSS',
              `download of ${label}: the registry sent sha256 ${version.sha256}, ` +
                `the deployment expects ${expected.sha256}; not loaded`,
            );
          }
          const cachedBytes = options.cache.get(version.sha256) ?? (await fromDisk(version.sha256));
          if (cachedBytes !== undefined) return { version, bytes: cachedBytes, cached: true };
          if (version.sizeBytes > BigInt(maxBytes)) {
            throw new FetchError(
              'RESOURCE_EXHAUSTED',
              `${label} is ${version.sizeBytes} bytes, over this replica's limit of ${maxBytes}`,
            );
          }
          bytes = Buffer.allocUnsafe(Number(version.sizeBytes));
        } else if (part?.$case === 'chunk') {
          if (version === undefined || bytes === undefined)
            throw new FetchError('DATA_LOSS', `download of ${what}: a chunk came before the header`);
          if (received + part.value.length > bytes.length) {
            throw new FetchError(
              'DATA_LOSS',
              `download of ${tenant}/${version.model}:${version.version}: ` +
                `more than the header's ${bytes.length} bytes arrived; not loaded`,
            );
          }
          part.value.copy(bytes, received);
          hash.update(part.value);
          received += part.value.length;
        }
      }
      if (version === undefined || bytes === undefined)
        throw new FetchError('DATA_LOSS', `download of ${what} ended without a header`);
      const label = `${tenant}/${version.model}:${version.version}`;
      if (received !== bytes.length) {
        throw new FetchError(
          'DATA_LOSS',
          `download of ${label}: ${received} bytes arrived, the version's size is ${bytes.length}; not loaded`,
        );
      }
      const digest = hash.digest('hex');
      if (digest !== version.sha256) {
        throw new FetchError(
          'DATA_LOSS',
          `download of ${label}: the bytes hash to sha256 ${digest}, the version's is ${version.sha256}; not loaded`,
        );
      }
      options.cache.put(digest, bytes);
      await options.disk?.put(digest, bytes);
      return { version, bytes, cached: false };
    } catch (error: unknown) {
      if (error instanceof FetchError) throw error;
      if (stalled)
        throw new FetchError('UNAVAILABLE', `download of ${what}: nothing arrived for ${idleTimeoutMs} ms; cancelled`, {
          cause: error,
        });
      if (isGrpcError(error)) {
        throw new FetchError(
          STATUS_CODES[error.code] ?? 'INTERNAL',
          `download of ${what} from the registry failed: ${error.details || error.message}`,
          { cause: error },
        );
      }
      throw error;
    } finally {
      // Leaving early (a cache hit after the header, a bad message) must not leave the stream open;
      // on a finished call this does nothing.
      clearTimeout(idle);
      call.cancel();
    }
  }

  async function fromDisk(sha256: string): Promise<Uint8Array | undefined> {
    const bytes = await options.disk?.get(sha256);
    if (bytes !== undefined) options.cache.put(sha256, bytes);
    return bytes;
  }

  return {
    fetch(tenant, ref, expected) {
      if (expected !== undefined && expected.sha256 !== '') {
        const cachedBytes = options.cache.get(expected.sha256);
        if (cachedBytes !== undefined) return Promise.resolve({ version: expected, bytes: cachedBytes, cached: true });
        const running = inFlight.get(expected.sha256);
        // The same digest under another name or tenant: the bytes are what matter, the version is ours.
        if (running !== undefined)
          return running.then((done) => ({ version: expected, bytes: done.bytes, cached: true }));
        const started = (async (): Promise<FetchedModel> => {
          const kept = await fromDisk(expected.sha256);
          return kept === undefined
            ? download(tenant, ref, expected)
            : { version: expected, bytes: kept, cached: true };
        })().finally(() => inFlight.delete(expected.sha256));
        inFlight.set(expected.sha256, started);
        return started;
      }
      return download(tenant, ref, undefined);
    },
  };
}
