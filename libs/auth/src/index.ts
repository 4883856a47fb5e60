// Access tokens of the Quanta platform: EdDSA (Ed25519) JWTs issued by the crypto service and
// checked by every service through a service-kit Authenticator.
export { DEFAULT_AUDIENCE, DEFAULT_ISSUER, TENANT_PATTERN, TOKEN_ALGORITHM, isScope } from './claims.js';
export type { TokenClaims } from './claims.js';
export { createMemorySigningKeyStore } from './signing-key-store.js';
export type { SigningKeyRecord, SigningKeyStore } from './signing-key-store.js';
export { createTokenIssuer } from './token-issuer.js';
export type { InspectedToken, IssuedToken, TokenIssuer, TokenIssuerOptions } from './token-issuer.js';
export { createTokenVerifier } from './token-verifier.js';
export type { TokenVerifier, TokenVerifierOptions } from './token-verifier.js';
export { createJwksFetcher } from './jwks-fetcher.js';
export { createCryptoTokenVerifier, createRevocationFetcher } from './revocation-fetcher.js';
export { indexRevocations, subjectDigest } from './revocations.js';
export type { RevocableClaims, Revocation, RevocationIndex, RevocationSnapshot } from './revocations.js';
