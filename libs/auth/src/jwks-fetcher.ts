import * as grpc from '@grpc/grpc-js';
import type { crypto } from '@quanta/contracts';
import type { JWK } from 'jose';

/**
 * `fetchJwks` for `createTokenVerifier` in services other than crypto: calls the crypto service's
 * public GetJwks (no token needed) with a short deadline.
 */
export function createJwksFetcher(
  client: crypto.CryptoServiceClient,
  options: { timeoutMs?: number } = {},
): () => Promise<{ keys: JWK[] }> {
  const timeoutMs = options.timeoutMs ?? 5000;
  return () =>
    new Promise((resolve, reject) => {
      client.getJwks({}, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (error, response) => {
        if (error) reject(error);
        else resolve({ keys: response.keys.map((k) => ({ ...k })) });
      });
    });
}
