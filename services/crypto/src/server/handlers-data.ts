import * as grpc from '@grpc/grpc-js';
import type { crypto as pb } from '@quanta/contracts';
import { grpcStatusOf, invalidArgument, isDomainError, unary } from '@quanta/service-kit';
import type { CallContext } from '@quanta/service-kit';
import type { KeyManager } from '../core/index.js';
import { actorOf } from './context.js';
import type { PayloadLimit } from './context.js';
import { optionalBytes, safeNumber } from './convert.js';

type DataHandlers = Pick<
  pb.CryptoServiceServer,
  | 'encrypt'
  | 'decrypt'
  | 'rewrap'
  | 'batchEncrypt'
  | 'batchDecrypt'
  | 'batchRewrap'
  | 'generateDataKey'
  | 'unwrapDataKey'
  | 'sign'
  | 'verify'
>;

export const MAX_BATCH_ITEMS = 10_000;
/** Items of one batch run this many at a time: enough to overlap the audit writes, not enough to hog the store. */
const BATCH_CONCURRENCY = 16;

function batchSize(rpc: string, items: readonly { length: number }[], limit: PayloadLimit): void {
  if (items.length > MAX_BATCH_ITEMS) {
    throw invalidArgument(`${rpc}: ${items.length} items is over the maximum of ${MAX_BATCH_ITEMS}; split the batch`);
  }
  const total = items.reduce((sum, item) => sum + item.length, 0);
  limit.check(
    rpc,
    'the batch',
    total,
    `split it into smaller batches, or send large items through EncryptStream/DecryptStream`,
  );
}

/** Runs every item on its own: a failed item becomes its error status, the others go on. */
async function eachItem<I, R>(
  items: readonly I[],
  ctx: CallContext,
  run: (item: I) => Promise<R>,
  failed: (error: pb.BatchItemError) => R,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length && !ctx.signal.aborted) {
      const index = next++;
      try {
        results[index] = await run(items[index] as I);
      } catch (error: unknown) {
        if (isDomainError(error)) {
          results[index] = failed({ code: grpcStatusOf(error.code), message: `item ${index}: ${error.message}` });
        } else {
          ctx.logger.error({ err: error, item: index }, `${ctx.method}: item failed unexpectedly`);
          results[index] = failed({ code: grpc.status.INTERNAL, message: `item ${index}: internal error` });
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(BATCH_CONCURRENCY, items.length) }, worker));
  return results;
}

const noCiphertext = (error: pb.BatchItemError): pb.CiphertextResult => ({
  ciphertext: Buffer.alloc(0),
  keyVersion: 0,
  error,
});
const noPlaintext = (error: pb.BatchItemError): pb.PlaintextResult => ({
  plaintext: Buffer.alloc(0),
  keyVersion: 0,
  error,
});

/** Data operations: every RPC needs `keys:use`; unary payloads are capped so that large ones stream. */
export function createDataHandlers(keys: KeyManager, limit: PayloadLimit): DataHandlers {
  return {
    encrypt: unary<pb.EncryptRequest, pb.EncryptResponse>(async (req, ctx) => {
      limit.check('Encrypt', 'plaintext', req.plaintext.length, 'use EncryptStream for large payloads');
      const out = await keys.encrypt(actorOf(ctx), req.keyName, req.plaintext, optionalBytes(req.associatedData));
      return { ciphertext: out.ciphertext, keyVersion: out.version };
    }),

    decrypt: unary<pb.DecryptRequest, pb.DecryptResponse>(async (req, ctx) => {
      limit.check('Decrypt', 'ciphertext', req.ciphertext.length, 'use DecryptStream for large payloads');
      const ttlSeconds = safeNumber(req.ttlSeconds, 'ttl_seconds');
      const out = await keys.decrypt(
        actorOf(ctx),
        req.keyName,
        req.ciphertext,
        optionalBytes(req.associatedData),
        ttlSeconds === 0 ? undefined : { ttlSeconds },
      );
      return { plaintext: out.plaintext, keyVersion: out.version };
    }),

    rewrap: unary<pb.RewrapRequest, pb.RewrapResponse>(async (req, ctx) => {
      limit.check(
        'Rewrap',
        'ciphertext',
        req.ciphertext.length,
        'decrypt with DecryptStream and encrypt again with EncryptStream',
      );
      const out = await keys.rewrap(actorOf(ctx), req.keyName, req.ciphertext, optionalBytes(req.associatedData));
      return { ciphertext: out.ciphertext, keyVersion: out.version };
    }),

    batchEncrypt: unary<pb.BatchEncryptRequest, pb.BatchEncryptResponse>(async (req, ctx) => {
      batchSize(
        'BatchEncrypt',
        req.items.map((i) => i.plaintext),
        limit,
      );
      const actor = actorOf(ctx);
      const results = await eachItem(
        req.items,
        ctx,
        async (item): Promise<pb.CiphertextResult> => {
          const out = await keys.encrypt(actor, req.keyName, item.plaintext, optionalBytes(item.associatedData));
          return { ciphertext: out.ciphertext, keyVersion: out.version };
        },
        noCiphertext,
      );
      return { results };
    }),

    batchDecrypt: unary<pb.BatchDecryptRequest, pb.BatchDecryptResponse>(async (req, ctx) => {
      batchSize(
        'BatchDecrypt',
        req.items.map((i) => i.ciphertext),
        limit,
      );
      const actor = actorOf(ctx);
      const results = await eachItem(
        req.items,
        ctx,
        async (item): Promise<pb.PlaintextResult> => {
          const out = await keys.decrypt(actor, req.keyName, item.ciphertext, optionalBytes(item.associatedData));
          return { plaintext: out.plaintext, keyVersion: out.version };
        },
        noPlaintext,
      );
      return { results };
    }),

    batchRewrap: unary<pb.BatchRewrapRequest, pb.BatchRewrapResponse>(async (req, ctx) => {
      batchSize(
        'BatchRewrap',
        req.items.map((i) => i.ciphertext),
        limit,
      );
      const actor = actorOf(ctx);
      const results = await eachItem(
        req.items,
        ctx,
        async (item): Promise<pb.CiphertextResult> => {
          const out = await keys.rewrap(actor, req.keyName, item.ciphertext, optionalBytes(item.associatedData));
          return { ciphertext: out.ciphertext, keyVersion: out.version };
        },
        noCiphertext,
      );
      return { results };
    }),

    generateDataKey: unary<pb.GenerateDataKeyRequest, pb.GenerateDataKeyResponse>(async (req, ctx) => {
      const bits = req.bits === 0 ? 256 : req.bits;
      if (bits !== 128 && bits !== 256)
        throw invalidArgument(`GenerateDataKey: bits must be 128 or 256, got ${req.bits}`);
      const aad = optionalBytes(req.associatedData);
      const out = await keys.generateDataKey(actorOf(ctx), req.keyName, {
        bits,
        includePlaintext: !req.wrappedOnly,
        ...(aad === undefined ? {} : { aad }),
      });
      return { plaintext: out.plaintext ?? Buffer.alloc(0), wrappedKey: out.wrapped, keyVersion: out.version };
    }),

    unwrapDataKey: unary<pb.UnwrapDataKeyRequest, pb.UnwrapDataKeyResponse>(async (req, ctx) => {
      limit.check(
        'UnwrapDataKey',
        'wrapped_key',
        req.wrappedKey.length,
        'a wrapped key from GenerateDataKey is under 100 bytes',
      );
      return {
        plaintext: await keys.unwrapDataKey(
          actorOf(ctx),
          req.keyName,
          req.wrappedKey,
          optionalBytes(req.associatedData),
        ),
      };
    }),

    sign: unary<pb.SignRequest, pb.SignResponse>(async (req, ctx) => {
      limit.check('Sign', 'data', req.data.length, 'sign a SHA-256 digest of large data instead');
      const out = await keys.sign(
        actorOf(ctx),
        req.keyName,
        req.data,
        req.keyVersion === 0 ? undefined : req.keyVersion,
      );
      return { signature: out.signature, keyVersion: out.version };
    }),

    verify: unary<pb.VerifyRequest, pb.VerifyResponse>(async (req, ctx) => {
      limit.check('Verify', 'data', req.data.length, 'verify a SHA-256 digest of large data instead');
      const valid = await keys.verify(
        actorOf(ctx),
        req.keyName,
        req.data,
        req.signature,
        req.keyVersion === 0 ? undefined : req.keyVersion,
      );
      return { valid };
    }),
  };
}
