import * as grpc from '@grpc/grpc-js';
import type { crypto } from '@quanta/contracts';
import { createJwksFetcher } from './jwks-fetcher.js';
import type { RevocationSnapshot } from './revocations.js';
import { createTokenVerifier } from './token-verifier.js';
import type { TokenVerifier, TokenVerifierOptions } from './token-verifier.js';

/**
 * `fetchRevocations` for `createTokenVerifier` in services other than crypto: calls the crypto
 * service's public GetRevocations (no token needed) with a short deadline.
 */
export function createRevocationFetcher(
  client: crypto.CryptoServiceClient,
  options: { timeoutMs?: number } = {},
): (knownVersion: bigint) => Promise<RevocationSnapshot> {
  const timeoutMs = options.timeoutMs ?? 5000;
  return (knownVersion) =>
    new Promise((resolve, reject) => {
      client.getRevocations(
        { knownVersion },
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (error, response) => {
          if (error) {
            reject(error);
            return;
          }
          if (response.unchanged) {
            resolve({ unchanged: true, version: response.version });
            return;
          }
          resolve({
            unchanged: false,
            version: response.version,
            revocations: response.revocations.map((r) => ({
              ...(r.jti === '' ? {} : { jti: r.jti }),
              ...(r.subjectDigest === '' ? {} : { subjectDigest: r.subjectDigest }),
              ...(r.issuedBefore === undefined ? {} : { issuedBeforeMs: r.issuedBefore.getTime() }),
              expiresAtMs: r.expireTime?.getTime() ?? 0,
            })),
          });
        },
      );
    });
}

/**
 * The verifier of a service other than crypto: keys from GetJwks, revocations from GetRevocations
 * polled every `revocationPollMs` (2 s), both public calls to the crypto service. Close it on stop.
 */
export function createCryptoTokenVerifier(
  client: crypto.CryptoServiceClient,
  options: Pick<TokenVerifierOptions, 'logger' | 'revocationPollMs'> = {},
): TokenVerifier {
  return createTokenVerifier({
    fetchJwks: createJwksFetcher(client),
    fetchRevocations: createRevocationFetcher(client),
    ...options,
  });
}
