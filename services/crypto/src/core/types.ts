import type { Transform } from 'node:stream';
import type { Store } from '@quanta/store';

export type KeyType = 'aes256-gcm' | 'chacha20-poly1305' | 'fernet' | 'hmac-sha256' | 'ed25519';
export const KEY_TYPES: readonly KeyType[] = ['aes256-gcm', 'chacha20-poly1305', 'fernet', 'hmac-sha256', 'ed25519'];

export interface KeyConfig {
  /** Versions below this are refused for decrypt/verify/unwrap (FAILED_PRECONDITION). Default 1. */
  minDecryptionVersion: number;
  /**
   * Lowest version sign(…, version) may pick (0 = no floor); ≤ latest and ≥ minDecryptionVersion when set. Encrypt
   * always uses the latest. Default 0.
   */
  minEncryptionVersion: number;
  /** deleteKey is refused (FAILED_PRECONDITION) unless true. Default false. */
  deletionAllowed: boolean;
  /** exportKey is refused (FAILED_PRECONDITION) unless true; once true it cannot be set back. Default false. */
  exportable: boolean;
  /** 0 = never; otherwise a key whose latest version is older rotates on its next use. Default 0. */
  autoRotatePeriodSeconds: number;
}

export interface KeyVersionInfo {
  version: number;
  createdAt: Date;
  /** ed25519 keys only: the 32-byte raw public key of this version (not secret). */
  publicKey?: Buffer;
}

export interface KeyInfo extends KeyConfig {
  tenant: string;
  name: string;
  type: KeyType;
  latestVersion: number;
  versions: KeyVersionInfo[];
  createdAt: Date;
  updatedAt: Date;
}

/** Who acts: every call is scoped to actor.tenant; subject and traceId go to the audit log. */
export interface Actor {
  tenant: string;
  subject: string;
  traceId?: string;
}

export interface AuditEvent {
  id: string;
  tenant: string;
  subject: string;
  keyName: string;
  /** Key version used; 0 when the request failed before a version was chosen. */
  version: number;
  /**
   * e.g. 'create', 'import', 'rotate', 'config', 'delete', 'export', 'encrypt', 'decrypt', 'rewrap', 'datakey',
   * 'unwrap', 'sign', 'verify', 'encrypt-stream', 'decrypt-stream'.
   */
  operation: string;
  outcome: 'ok' | 'error';
  /** gRPC status name (e.g. 'INVALID_ARGUMENT') when outcome is 'error'. */
  errorCode?: string;
  traceId?: string;
  time: Date;
}

export interface PageRequest {
  pageSize: number;
  /** Opaque token from a previous page's nextPageToken; absent/empty for the first page. */
  pageToken?: string;
}

/**
 * The crypto engine. Every method throws a `DomainError` from @quanta/service-kit:
 * NOT_FOUND for an unknown key (also another tenant's), INVALID_ARGUMENT for bad input and for every
 * authentication failure (one message: "ciphertext is invalid or was not made with this key"),
 * FAILED_PRECONDITION for a version under min_decryption_version, a disallowed delete/export, or an
 * operation the key type does not support; ALREADY_EXISTS when creating a name that exists.
 */
export interface KeyManager {
  createKey(actor: Actor, name: string, type: KeyType, config?: Partial<KeyConfig>): Promise<KeyInfo>;
  /**
   * material: fernet → url-safe base64 text (string or its ASCII bytes) of 32 bytes;
   * aes256-gcm / chacha20-poly1305 → 32 raw bytes; hmac-sha256 → 16..64 raw bytes; ed25519 → 32-byte seed.
   */
  importKey(
    actor: Actor,
    name: string,
    type: KeyType,
    material: Buffer | string,
    config?: Partial<KeyConfig>,
  ): Promise<KeyInfo>;
  getKey(actor: Actor, name: string): Promise<KeyInfo>;
  listKeys(actor: Actor, page: PageRequest): Promise<{ keys: KeyInfo[]; nextPageToken: string }>;
  rotateKey(actor: Actor, name: string): Promise<KeyInfo>;
  updateKeyConfig(actor: Actor, name: string, patch: Partial<KeyConfig>): Promise<KeyInfo>;
  deleteKey(actor: Actor, name: string): Promise<void>;
  /** Same encoding as importKey takes (fernet: ASCII bytes of the url-safe base64 key). Default: latest version. */
  exportKey(actor: Actor, name: string, version?: number): Promise<{ version: number; material: Buffer }>;
  /**
   * AEAD keys: binary `0x01 | uint32 BE version | nonce(12) | ciphertext | tag(16)`. Fernet keys: the token's ASCII
   * bytes (no aad allowed).
   */
  encrypt(
    actor: Actor,
    name: string,
    plaintext: Buffer,
    aad?: Buffer,
  ): Promise<{ ciphertext: Buffer; version: number }>;
  /** ttlSeconds applies to fernet tokens only (like Fernet.decrypt(token, ttl)). */
  decrypt(
    actor: Actor,
    name: string,
    ciphertext: Buffer,
    aad?: Buffer,
    opts?: { ttlSeconds?: number },
  ): Promise<{ plaintext: Buffer; version: number }>;
  /** Re-encrypts under the encryption version; fernet tokens keep their timestamp (MultiFernet.rotate). */
  rewrap(
    actor: Actor,
    name: string,
    ciphertext: Buffer,
    aad?: Buffer,
  ): Promise<{ ciphertext: Buffer; version: number }>;
  /** A random data key encrypted (as encrypt does) under the named AEAD key. */
  generateDataKey(
    actor: Actor,
    name: string,
    opts: { bits?: 128 | 256; includePlaintext: boolean; aad?: Buffer },
  ): Promise<{ plaintext?: Buffer; wrapped: Buffer; version: number }>;
  unwrapDataKey(actor: Actor, name: string, wrapped: Buffer, aad?: Buffer): Promise<Buffer>;
  /**
   * hmac-sha256 → 32-byte HMAC; ed25519 → 64-byte signature. Signatures are raw (the version is returned beside them).
   */
  sign(actor: Actor, name: string, data: Buffer, version?: number): Promise<{ signature: Buffer; version: number }>;
  /** Without a version, every allowed version is tried (constant-time compare for HMAC). */
  verify(actor: Actor, name: string, data: Buffer, signature: Buffer, version?: number): Promise<boolean>;
  /** AEAD keys only; see stream-format in streaming.ts. The transform errors (INVALID_ARGUMENT) on tampering. */
  encryptStream(actor: Actor, name: string, aad?: Buffer): Promise<{ version: number; transform: Transform }>;
  decryptStream(actor: Actor, name: string, aad?: Buffer): Promise<Transform>;
  /** The actor's tenant's events; with `allTenants` (an `admin` caller) every tenant's. */
  listAudit(
    actor: Actor,
    filter: { keyName?: string; allTenants?: boolean } & PageRequest,
  ): Promise<{ events: AuditEvent[]; nextPageToken: string }>;
}

export interface KeyManagerOptions {
  store: Store;
  /** 32 bytes; wraps every key's material (see loadMasterKey). */
  masterKey: Buffer;
  /** Injected for tests (Fernet timestamps, TTL, auto-rotation, audit times). */
  clock?: () => Date;
}

export interface MasterKeyOptions {
  env?: NodeJS.ProcessEnv;
  home: string;
  logger?: { warn(msg: string): void };
}
