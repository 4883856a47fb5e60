import * as grpc from '@grpc/grpc-js';
import { crypto as cpb } from '@quanta/contracts';
import { unavailable } from '@quanta/service-kit';
import type { SealedHeader } from '../core/sealed-format.js';

/** The envelope keys of model files, made and unwrapped by the crypto service. */
export interface DataKeys {
  /** A fresh 256-bit data key, in plaintext and wrapped under the registry key. */
  generate(tenant: string): Promise<{ plaintext: Buffer; wrapped: Buffer; keyName: string; keyVersion: number }>;
  unwrap(tenant: string, header: Pick<SealedHeader, 'keyName' | 'keyVersion' | 'wrappedKey'>): Promise<Buffer>;
  /** Wraps a data key under the latest version of its key (crypto's Rewrap: the plaintext never leaves crypto). */
  rewrap(tenant: string, keyName: string, wrapped: Buffer): Promise<{ wrapped: Buffer; keyVersion: number }>;
  /** The latest version of a key. */
  latestVersion(keyName: string): Promise<number>;
  /** The key that wraps new data keys. */
  readonly keyName: string;
}

/** Binds a wrapped key to the tenant whose file it seals: another tenant's header cannot be replayed. */
const associatedData = (tenant: string): Buffer => Buffer.from(`quanta.registry.v1/blob-key/${tenant}`, 'utf8');

function call<Req, Res>(
  fn: (
    req: Req,
    md: grpc.Metadata,
    options: grpc.CallOptions,
    cb: (error: grpc.ServiceError | null, res: Res) => void,
  ) => unknown,
  request: Req,
  timeoutMs = 10_000,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn(request, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

const codeOf = (error: unknown): number | undefined => (error as Partial<grpc.ServiceError> | undefined)?.code;
const detailsOf = (error: unknown): string =>
  (error as Partial<grpc.ServiceError> | undefined)?.details ??
  (error instanceof Error ? error.message : String(error));

/**
 * Data keys through a CryptoService client whose calls carry the registry's service token. The
 * wrapping key is created (AES-256-GCM) on first use when it does not exist.
 */
export function createDataKeys(client: cpb.CryptoServiceClient, keyName: string): DataKeys {
  let ensured: Promise<void> | undefined;

  const ensureKey = (): Promise<void> => {
    ensured ??= (async () => {
      try {
        await call(client.getKey.bind(client), { name: keyName });
      } catch (error: unknown) {
        if (codeOf(error) !== grpc.status.NOT_FOUND) throw error;
        try {
          await call(client.createKey.bind(client), {
            name: keyName,
            type: cpb.KeyType.KEY_TYPE_AES256_GCM,
            config: {},
          });
        } catch (createError: unknown) {
          // Another registry process may have created it in between.
          if (codeOf(createError) !== grpc.status.ALREADY_EXISTS) throw createError;
        }
      }
    })().catch((error: unknown) => {
      ensured = undefined; // try again on the next upload
      throw error;
    });
    return ensured;
  };

  return {
    keyName,
    async rewrap(tenant, name, wrapped) {
      try {
        const reply = await call(client.rewrap.bind(client), {
          keyName: name,
          ciphertext: wrapped,
          associatedData: associatedData(tenant),
        });
        return { wrapped: reply.ciphertext, keyVersion: reply.keyVersion };
      } catch (error: unknown) {
        throw unavailable(`the crypto service could not rewrap a data key under "${name}": ${detailsOf(error)}`, {
          cause: error,
        });
      }
    },
    async latestVersion(name) {
      try {
        const reply = await call(client.getKey.bind(client), { name });
        return reply.key?.latestVersion ?? 0;
      } catch (error: unknown) {
        throw unavailable(`the crypto service could not describe key "${name}": ${detailsOf(error)}`, { cause: error });
      }
    },
    async generate(tenant) {
      try {
        await ensureKey();
        const reply = await call(client.generateDataKey.bind(client), {
          keyName,
          bits: 256,
          wrappedOnly: false,
          associatedData: associatedData(tenant),
        });
        return { plaintext: reply.plaintext, wrapped: reply.wrappedKey, keyName, keyVersion: reply.keyVersion };
      } catch (error: unknown) {
        throw unavailable(`the crypto service could not make a data key under "${keyName}": ${detailsOf(error)}`, {
          cause: error,
        });
      }
    },
    async unwrap(tenant, header) {
      try {
        const reply = await call(client.unwrapDataKey.bind(client), {
          keyName: header.keyName,
          wrappedKey: header.wrappedKey,
          associatedData: associatedData(tenant),
        });
        return reply.plaintext;
      } catch (error: unknown) {
        throw unavailable(
          `the crypto service could not unwrap the data key of a model file (key "${header.keyName}" ` +
            `v${header.keyVersion}): ${detailsOf(error)}`,
          {
            cause: error,
          },
        );
      }
    },
  };
}
