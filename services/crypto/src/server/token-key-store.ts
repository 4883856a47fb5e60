import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import type { JWK } from 'jose';
import type { SigningKeyRecord, SigningKeyStore } from '@quanta/auth';
import type { Migration, Store } from '@quanta/store';

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'token signing keys',
    sql: `CREATE TABLE token_signing_keys (
      kid text PRIMARY KEY,
      public_jwk text NOT NULL,
      wrapped_private text NOT NULL,
      created_at timestamptz NOT NULL
    )`,
  },
];

/**
 * The token issuer's Ed25519 keys, kept in the store with the private half wrapped (AES-256-GCM,
 * bound to the kid) under a key derived from the master key, so that the master key itself
 * wraps nothing but tenant keys.
 */
export async function createStoredSigningKeyStore(store: Store, masterKey: Buffer): Promise<SigningKeyStore> {
  await store.migrate('crypto-tokens', MIGRATIONS);
  const wrapKey = Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), 'quanta token-signing keys v1', 32));

  const wrap = (kid: string, jwk: JWK): string => {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', wrapKey, nonce).setAAD(Buffer.from(kid));
    const body = Buffer.concat([cipher.update(JSON.stringify(jwk)), cipher.final()]);
    return Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64');
  };
  const unwrap = (kid: string, wrapped: string): JWK => {
    const raw = Buffer.from(wrapped, 'base64');
    const decipher = createDecipheriv('aes-256-gcm', wrapKey, raw.subarray(0, 12)).setAAD(Buffer.from(kid));
    decipher.setAuthTag(raw.subarray(raw.length - 16));
    try {
      return JSON.parse(
        Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString(),
      ) as JWK;
    } catch (error: unknown) {
      throw new Error(
        `token signing key "${kid}" cannot be unwrapped: is QUANTA_MASTER_KEY the one it was made with?`,
        { cause: error },
      );
    }
  };

  return {
    async load() {
      const rows = await store.query<{
        kid: string;
        public_jwk: string;
        wrapped_private: string;
        created_at: Date | string;
      }>('SELECT kid, public_jwk, wrapped_private, created_at FROM token_signing_keys');
      return rows.map((row): SigningKeyRecord => ({
        kid: row.kid,
        publicJwk: JSON.parse(row.public_jwk) as JWK,
        privateJwk: unwrap(row.kid, row.wrapped_private),
        createdAt: new Date(row.created_at),
      }));
    },
    async save(record) {
      await store.query(
        'INSERT INTO token_signing_keys (kid, public_jwk, wrapped_private, created_at) VALUES ($1, $2, $3, $4)',
        [
          record.kid,
          JSON.stringify(record.publicJwk),
          wrap(record.kid, record.privateJwk),
          record.createdAt.toISOString(),
        ],
      );
    },
  };
}
