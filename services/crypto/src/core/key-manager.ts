import { randomBytes } from 'node:crypto';
import type { Transform } from 'node:stream';
import { alreadyExists, failedPrecondition, invalidArgument, isDomainError, notFound } from '@quanta/service-kit';
import type { Queryable } from '@quanta/store';
import { aeadVersion, decryptAead, encryptAead } from './aead.js';
import type { AeadAlgorithm } from './aead.js';
import { listAudit, recordAudit } from './audit.js';
import { belowMinDecryption, invalidCiphertext, keyNotFound } from './errors.js';
import { decodeFernetToken, FernetKey, fernetDecrypt, InvalidFernetToken } from './fernet.js';
import { checkKeyName, checkKeyType, DEFAULT_CONFIG, mergeConfig } from './key-config.js';
import {
  ed25519PublicKey,
  exportMaterial,
  generateMaterial,
  importMaterial,
  signWith,
  verifyWith,
} from './key-material.js';
import {
  configOf,
  deleteKeyRows,
  insertKey,
  insertVersion,
  listKeyPage,
  loadKey,
  loadKeyWithLatest,
  loadVersion,
  loadVersionInfo,
  loadVersionRange,
  toKeyInfo,
  updateKey,
} from './key-repository.js';
import type { KeyRow, VersionRow } from './key-repository.js';
import { unwrapMaterial, wrapMaterial } from './master-key.js';
import { CRYPTO_MIGRATIONS } from './migrations.js';
import { createDecryptStream, createEncryptStream } from './streaming.js';
import type { Actor, KeyConfig, KeyInfo, KeyManager, KeyManagerOptions, KeyType } from './types.js';

const AEAD_TYPES: readonly KeyType[] = ['aes256-gcm', 'chacha20-poly1305'];
const SIGN_TYPES: readonly KeyType[] = ['hmac-sha256', 'ed25519'];
const EMPTY = Buffer.alloc(0);

/** What one request learned before it ended, for its audit event. */
interface Use {
  version: number;
}

export async function createKeyManager(options: KeyManagerOptions): Promise<KeyManager> {
  const { store, masterKey } = options;
  if (masterKey.length !== 32) throw new Error(`the master key must be 32 bytes; got ${masterKey.length}`);
  const clock = options.clock ?? (() => new Date());
  await store.migrate('crypto', CRYPTO_MIGRATIONS);

  const nowSeconds = (): number => Math.floor(clock().getTime() / 1000);

  /**
   * Runs one request and writes its audit event: ok with the version used, or error with its code.
   * A failed request's changes are rolled back by its transaction before the event is written.
   */
  async function audited<T>(
    actor: Actor,
    operation: string,
    keyName: string,
    fn: (use: Use) => Promise<T>,
  ): Promise<T> {
    if (typeof actor.tenant !== 'string' || actor.tenant === '') throw invalidArgument('the caller has no tenant');
    const use: Use = { version: 0 };
    const event = {
      tenant: actor.tenant,
      subject: actor.subject,
      keyName,
      operation,
      ...(actor.traceId ? { traceId: actor.traceId } : {}),
    };
    let result: T;
    try {
      result = await fn(use);
    } catch (err: unknown) {
      const errorCode = isDomainError(err) ? err.code : 'INTERNAL';
      await recordAudit(store, { ...event, version: use.version, outcome: 'error', errorCode, time: clock() }).catch(
        () => undefined,
      );
      throw err;
    }
    await recordAudit(store, { ...event, version: use.version, outcome: 'ok', time: clock() });
    return result;
  }

  async function mustLoad(db: Queryable, tenant: string, name: string, forUpdate = false): Promise<KeyRow> {
    checkKeyName(name);
    const row = await loadKey(db, tenant, name, forUpdate);
    if (!row) throw keyNotFound(name);
    return row;
  }

  function material(row: KeyRow, v: VersionRow): Buffer {
    return unwrapMaterial(masterKey, v.wrapped_material, row.tenant, row.name, v.version, row.type);
  }

  function newVersion(
    row: Pick<KeyRow, 'tenant' | 'name' | 'type'>,
    version: number,
    raw: Buffer,
    at: Date,
  ): VersionRow {
    return {
      version,
      wrapped_material: wrapMaterial(masterKey, raw, row.tenant, row.name, version, row.type),
      public_key: row.type === 'ed25519' ? ed25519PublicKey(raw) : null,
      created_at: at,
    };
  }

  async function info(db: Queryable, row: KeyRow): Promise<KeyInfo> {
    return toKeyInfo(row, await loadVersionInfo(db, row.tenant, row.name));
  }

  async function create(
    actor: Actor,
    operation: string,
    name: string,
    type: KeyType,
    raw: () => Buffer,
    config: Partial<KeyConfig> | undefined,
  ): Promise<KeyInfo> {
    return audited(actor, operation, name, async (use) => {
      checkKeyName(name);
      checkKeyType(type);
      const cfg = mergeConfig(DEFAULT_CONFIG, config ?? {}, 1);
      const material = raw();
      const at = clock();
      const row: KeyRow = {
        tenant: actor.tenant,
        name,
        type,
        latest_version: 1,
        min_decryption_version: cfg.minDecryptionVersion,
        min_encryption_version: cfg.minEncryptionVersion,
        deletion_allowed: cfg.deletionAllowed,
        exportable: cfg.exportable,
        auto_rotate_period_seconds: cfg.autoRotatePeriodSeconds,
        created_at: at,
        updated_at: at,
      };
      const created = await store.transaction(async (tx) => {
        if (!(await insertKey(tx, row))) throw alreadyExists(`key "${name}" already exists`);
        await insertVersion(tx, actor.tenant, name, newVersion(row, 1, material, at));
        return info(tx, row);
      });
      use.version = 1;
      return created;
    });
  }

  async function rotateLocked(tx: Queryable, row: KeyRow): Promise<KeyRow> {
    const at = clock();
    const next: KeyRow = { ...row, latest_version: row.latest_version + 1, updated_at: at };
    await insertVersion(tx, row.tenant, row.name, newVersion(row, next.latest_version, generateMaterial(), at));
    await updateKey(tx, next);
    return next;
  }

  /**
   * The key and its latest version for a new ciphertext or signature, rotating first when its auto-rotate period has
   * passed.
   */
  async function forEncryption(
    tenant: string,
    name: string,
    types: readonly KeyType[],
    operation: string,
  ): Promise<{ row: KeyRow; latest: VersionRow }> {
    checkKeyName(name);
    const found = await loadKeyWithLatest(store, tenant, name);
    if (!found) throw keyNotFound(name);
    let row = found.row;
    let latest: VersionRow | undefined = found.latest;
    if (!types.includes(row.type))
      throw failedPrecondition(`key "${name}" is a ${row.type} key; ${operation} needs a ${types.join(' or ')} key`);
    const period = row.auto_rotate_period_seconds;
    if (period > 0 && latest && clock().getTime() - latest.created_at.getTime() >= period * 1000) {
      row = await store.transaction(async (tx) => {
        const locked = await mustLoad(tx, tenant, name, true);
        const current = await loadVersion(tx, tenant, name, locked.latest_version);
        // Another request may have rotated meanwhile.
        if (current && clock().getTime() - current.created_at.getTime() < period * 1000) return locked;
        return rotateLocked(tx, locked);
      });
      latest = await loadVersion(store, tenant, name, row.latest_version);
    }
    if (!latest) throw new Error(`key "${name}" has no row for its latest version ${row.latest_version}`);
    return { row, latest };
  }

  function checkAad(row: KeyRow, aad: Buffer | undefined): Buffer {
    if (row.type === 'fernet') {
      if (aad && aad.length > 0)
        throw invalidArgument(`key "${row.name}" is a fernet key: Fernet tokens take no associated data (aad)`);
      return EMPTY;
    }
    return aad ?? EMPTY;
  }

  function encryptWith(
    row: KeyRow,
    latest: VersionRow,
    plaintext: Buffer,
    aad: Buffer,
    fernetTimestamp?: number,
  ): Buffer {
    const raw = material(row, latest);
    if (row.type === 'fernet')
      return Buffer.from(new FernetKey(raw).encrypt(plaintext, fernetTimestamp ?? nowSeconds()), 'latin1');
    return encryptAead(row.type as AeadAlgorithm, raw, latest.version, plaintext, aad);
  }

  /** Decrypts with the version the ciphertext names (AEAD) or with every allowed version (Fernet, like MultiFernet). */
  async function decryptWith(
    row: KeyRow,
    ciphertext: Buffer,
    aad: Buffer,
    use: Use,
    ttlSeconds?: number,
  ): Promise<{ plaintext: Buffer; timestamp?: number }> {
    if (row.type === 'fernet') {
      let timestamp: number;
      try {
        timestamp = decodeFernetToken(ciphertext).timestamp;
      } catch {
        throw invalidCiphertext();
      }
      const allowed = await loadVersionRange(
        store,
        row.tenant,
        row.name,
        row.min_decryption_version,
        row.latest_version,
      );
      try {
        const out = fernetDecrypt(
          allowed.map((v) => new FernetKey(material(row, v))),
          ciphertext,
          nowSeconds(),
          ttlSeconds,
        );
        use.version = allowed[out.keyIndex]!.version;
        return { plaintext: out.plaintext, timestamp };
      } catch (err: unknown) {
        if (!(err instanceof InvalidFernetToken)) throw err;
      }
      // Say so when the token is good but its version was retired, as for AEAD ciphertexts.
      const retired = await loadVersionRange(store, row.tenant, row.name, 1, row.min_decryption_version - 1);
      for (const v of retired) {
        try {
          fernetDecrypt([new FernetKey(material(row, v))], ciphertext, nowSeconds());
        } catch {
          continue;
        }
        use.version = v.version;
        throw belowMinDecryption(row.name, v.version, row.min_decryption_version);
      }
      throw invalidCiphertext();
    }
    const version = aeadVersion(ciphertext);
    use.version = version;
    if (version < row.min_decryption_version) throw belowMinDecryption(row.name, version, row.min_decryption_version);
    const v = version > row.latest_version ? undefined : await loadVersion(store, row.tenant, row.name, version);
    if (!v) throw invalidCiphertext();
    return { plaintext: decryptAead(row.type as AeadAlgorithm, material(row, v), ciphertext, aad) };
  }

  function checkTtl(row: KeyRow, ttlSeconds: number | undefined): number | undefined {
    if (ttlSeconds === undefined) return undefined;
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 0)
      throw invalidArgument(`ttl_seconds must be a non-negative integer; got ${ttlSeconds}`);
    if (row.type !== 'fernet')
      throw invalidArgument(`ttl_seconds applies to fernet keys only; key "${row.name}" is ${row.type}`);
    return ttlSeconds;
  }

  const DATA_TYPES: readonly KeyType[] = [...AEAD_TYPES, 'fernet'];

  return {
    createKey: (actor, name, type, config) => create(actor, 'create', name, type, generateMaterial, config),

    importKey: (actor, name, type, materialIn, config) =>
      create(actor, 'import', name, type, () => importMaterial(checkKeyType(type), materialIn), config),

    async getKey(actor, name) {
      return info(store, await mustLoad(store, actor.tenant, name));
    },

    listKeys: (actor, page) => listKeyPage(store, actor.tenant, page),

    rotateKey: (actor, name) =>
      audited(actor, 'rotate', name, async (use) => {
        const rotated = await store.transaction(async (tx) =>
          info(tx, await rotateLocked(tx, await mustLoad(tx, actor.tenant, name, true))),
        );
        use.version = rotated.latestVersion;
        return rotated;
      }),

    updateKeyConfig: (actor, name, patch) =>
      audited(actor, 'config', name, (use) =>
        store.transaction(async (tx) => {
          const row = await mustLoad(tx, actor.tenant, name, true);
          use.version = row.latest_version;
          const cfg = mergeConfig(configOf(row), patch, row.latest_version);
          const next: KeyRow = {
            ...row,
            min_decryption_version: cfg.minDecryptionVersion,
            min_encryption_version: cfg.minEncryptionVersion,
            deletion_allowed: cfg.deletionAllowed,
            exportable: cfg.exportable,
            auto_rotate_period_seconds: cfg.autoRotatePeriodSeconds,
            updated_at: clock(),
          };
          await updateKey(tx, next);
          return info(tx, next);
        }),
      ),

    deleteKey: (actor, name) =>
      audited(actor, 'delete', name, (use) =>
        store.transaction(async (tx) => {
          const row = await mustLoad(tx, actor.tenant, name, true);
          use.version = row.latest_version;
          if (!row.deletion_allowed)
            throw failedPrecondition(`key "${name}" does not allow deletion; set deletion_allowed first`);
          await deleteKeyRows(tx, actor.tenant, name);
        }),
      ),

    exportKey: (actor, name, version) =>
      audited(actor, 'export', name, async (use) => {
        const row = await mustLoad(store, actor.tenant, name);
        if (!row.exportable) throw failedPrecondition(`key "${name}" is not exportable`);
        const wanted = version ?? row.latest_version;
        use.version = wanted;
        const v =
          Number.isInteger(wanted) && wanted >= 1 ? await loadVersion(store, actor.tenant, name, wanted) : undefined;
        if (!v) throw notFound(`key "${name}" has no version ${wanted}; its latest is ${row.latest_version}`);
        return { version: wanted, material: exportMaterial(row.type, material(row, v)) };
      }),

    encrypt: (actor, name, plaintext, aad) =>
      audited(actor, 'encrypt', name, async (use) => {
        const { row, latest } = await forEncryption(actor.tenant, name, DATA_TYPES, 'encrypt');
        const ad = checkAad(row, aad);
        use.version = latest.version;
        return { ciphertext: encryptWith(row, latest, plaintext, ad), version: latest.version };
      }),

    decrypt: (actor, name, ciphertext, aad, opts) =>
      audited(actor, 'decrypt', name, async (use) => {
        const row = await mustLoad(store, actor.tenant, name);
        if (!DATA_TYPES.includes(row.type))
          throw failedPrecondition(
            `key "${name}" is a ${row.type} key; decrypt needs a ${DATA_TYPES.join(' or ')} key`,
          );
        const ttl = checkTtl(row, opts?.ttlSeconds);
        const { plaintext } = await decryptWith(row, ciphertext, checkAad(row, aad), use, ttl);
        return { plaintext, version: use.version };
      }),

    rewrap: (actor, name, ciphertext, aad) =>
      audited(actor, 'rewrap', name, async (use) => {
        const { row, latest } = await forEncryption(actor.tenant, name, DATA_TYPES, 'rewrap');
        const ad = checkAad(row, aad);
        const { plaintext, timestamp } = await decryptWith(row, ciphertext, ad, use);
        use.version = latest.version;
        // Fernet keeps the token's own timestamp, as MultiFernet.rotate does, so TTLs still count from the original.
        return { ciphertext: encryptWith(row, latest, plaintext, ad, timestamp), version: latest.version };
      }),

    generateDataKey: (actor, name, opts) =>
      audited(actor, 'datakey', name, async (use) => {
        const bits = opts.bits ?? 256;
        if (bits !== 128 && bits !== 256)
          throw invalidArgument(`data key bits must be 128 or 256; got ${String(bits)}`);
        const { row, latest } = await forEncryption(actor.tenant, name, DATA_TYPES, 'generate a data key');
        const ad = checkAad(row, opts.aad);
        use.version = latest.version;
        const dataKey = randomBytes(bits / 8);
        const wrapped = encryptWith(row, latest, dataKey, ad);
        return { ...(opts.includePlaintext ? { plaintext: dataKey } : {}), wrapped, version: latest.version };
      }),

    unwrapDataKey: (actor, name, wrapped, aad) =>
      audited(actor, 'unwrap', name, async (use) => {
        const row = await mustLoad(store, actor.tenant, name);
        if (!DATA_TYPES.includes(row.type))
          throw failedPrecondition(`key "${name}" is a ${row.type} key; unwrap needs a ${DATA_TYPES.join(' or ')} key`);
        return (await decryptWith(row, wrapped, checkAad(row, aad), use)).plaintext;
      }),

    sign: (actor, name, data, version) =>
      audited(actor, 'sign', name, async (use) => {
        const found = await forEncryption(actor.tenant, name, SIGN_TYPES, 'sign');
        const row = found.row;
        let latest = found.latest;
        if (version !== undefined && version !== latest.version) {
          const floor = Math.max(row.min_decryption_version, row.min_encryption_version);
          if (!Number.isInteger(version) || version < 1 || version > row.latest_version)
            throw invalidArgument(`key "${name}" has no version ${version}; its latest is ${row.latest_version}`);
          if (version < floor)
            throw failedPrecondition(
              `version ${version} of key "${name}" is below its min_encryption_version/min_decryption_version ${floor}`,
            );
          latest = (await loadVersion(store, actor.tenant, name, version))!;
        }
        use.version = latest.version;
        return { signature: signWith(row.type, material(row, latest), data), version: latest.version };
      }),

    verify: (actor, name, data, signature, version) =>
      audited(actor, 'verify', name, async (use) => {
        const row = await mustLoad(store, actor.tenant, name);
        if (!SIGN_TYPES.includes(row.type))
          throw failedPrecondition(`key "${name}" is a ${row.type} key; verify needs a ${SIGN_TYPES.join(' or ')} key`);
        if (version !== undefined) {
          if (!Number.isInteger(version) || version < 1 || version > row.latest_version)
            throw invalidArgument(`key "${name}" has no version ${version}; its latest is ${row.latest_version}`);
          use.version = version;
          if (version < row.min_decryption_version) throw belowMinDecryption(name, version, row.min_decryption_version);
        }
        const candidates =
          version !== undefined
            ? await loadVersionRange(store, actor.tenant, name, version, version)
            : await loadVersionRange(store, actor.tenant, name, row.min_decryption_version, row.latest_version);
        for (const v of candidates) {
          if (verifyWith(row.type, material(row, v), data, signature)) {
            use.version = v.version;
            return true;
          }
        }
        return false;
      }),

    encryptStream: (actor, name, aad) =>
      audited(actor, 'encrypt-stream', name, async (use) => {
        const { row, latest } = await forEncryption(actor.tenant, name, AEAD_TYPES, 'streaming encryption');
        use.version = latest.version;
        const transform: Transform = createEncryptStream(
          row.type as AeadAlgorithm,
          material(row, latest),
          latest.version,
          aad ?? EMPTY,
        );
        return { version: latest.version, transform };
      }),

    async decryptStream(actor, name, aad) {
      // Checked (and audited when wrong) now; the stream's own outcome is audited when it ends.
      const event = {
        tenant: actor.tenant,
        subject: actor.subject,
        keyName: name,
        operation: 'decrypt-stream',
        ...(actor.traceId ? { traceId: actor.traceId } : {}),
      };
      let row: KeyRow;
      let versions: VersionRow[];
      try {
        row = await mustLoad(store, actor.tenant, name);
        if (!AEAD_TYPES.includes(row.type))
          throw failedPrecondition(
            `key "${name}" is a ${row.type} key; streaming decryption needs a ${AEAD_TYPES.join(' or ')} key`,
          );
        versions = await loadVersionRange(store, actor.tenant, name, 1, row.latest_version);
      } catch (err: unknown) {
        await recordAudit(store, {
          ...event,
          version: 0,
          outcome: 'error',
          errorCode: isDomainError(err) ? err.code : 'INTERNAL',
          time: clock(),
        }).catch(() => undefined);
        throw err;
      }
      let seen = 0;
      return createDecryptStream({
        algorithm: row.type as AeadAlgorithm,
        aad: aad ?? EMPTY,
        keyFor(version) {
          seen = version;
          if (version < row.min_decryption_version) throw belowMinDecryption(name, version, row.min_decryption_version);
          const v = versions.find((x) => x.version === version);
          if (!v) throw invalidCiphertext();
          return material(row, v);
        },
        onFinish: (version) => recordAudit(store, { ...event, version, outcome: 'ok', time: clock() }),
        onError: (err) =>
          recordAudit(store, {
            ...event,
            version: seen,
            outcome: 'error',
            errorCode: isDomainError(err) ? err.code : 'INTERNAL',
            time: clock(),
          }).catch(() => undefined),
      });
    },

    listAudit: (actor, filter) => listAudit(store, filter.allTenants === true ? undefined : actor.tenant, filter),
  };
}
