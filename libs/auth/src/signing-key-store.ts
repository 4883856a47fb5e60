import type { JWK } from 'jose';

/** One Ed25519 token-signing key. `kid` is what a token's header names. */
export interface SigningKeyRecord {
  readonly kid: string;
  /** The private key as a JWK (`d` included): the store must keep it secret (wrapped at rest). */
  readonly privateJwk: JWK;
  readonly publicJwk: JWK;
  readonly createdAt: Date;
}

/** Where the issuer keeps its signing keys; the crypto service keeps them wrapped by its master key. */
export interface SigningKeyStore {
  /** Every key, in any order. */
  load(): Promise<SigningKeyRecord[]>;
  save(record: SigningKeyRecord): Promise<void>;
}

/** Keys in memory only: for tests and for tools that issue short-lived tokens. */
export function createMemorySigningKeyStore(): SigningKeyStore {
  const records: SigningKeyRecord[] = [];
  return {
    load: () => Promise.resolve([...records]),
    save: (record) => {
      records.push(record);
      return Promise.resolve();
    },
  };
}
