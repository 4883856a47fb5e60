import { crypto as pb } from '@quanta/contracts';
import { invalidArgument } from '@quanta/service-kit';
import type { AuditEvent, KeyConfig, KeyInfo, KeyType } from '../core/index.js';

const TO_ENGINE: ReadonlyMap<pb.KeyType, KeyType> = new Map([
  [pb.KeyType.KEY_TYPE_AES256_GCM, 'aes256-gcm'],
  [pb.KeyType.KEY_TYPE_CHACHA20_POLY1305, 'chacha20-poly1305'],
  [pb.KeyType.KEY_TYPE_FERNET, 'fernet'],
  [pb.KeyType.KEY_TYPE_HMAC_SHA256, 'hmac-sha256'],
  [pb.KeyType.KEY_TYPE_ED25519, 'ed25519'],
]);
const TO_WIRE = new Map([...TO_ENGINE].map(([wire, engine]) => [engine, wire]));

export function keyTypeFromWire(type: pb.KeyType): KeyType {
  const engine = TO_ENGINE.get(type);
  if (engine === undefined) {
    throw invalidArgument(
      `key type ${pb.keyTypeToJSON(type)} is not supported; use one of ` +
        `${[...TO_ENGINE.keys()].map((t) => pb.keyTypeToJSON(t)).join(', ')}`,
    );
  }
  return engine;
}

export function keyTypeToWire(type: KeyType): pb.KeyType {
  return TO_WIRE.get(type) ?? pb.KeyType.UNRECOGNIZED;
}

/** A bigint from the wire as a safe integer, or INVALID_ARGUMENT naming the field. */
export function safeNumber(value: bigint, field: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < 0n)
    throw invalidArgument(`${field} is out of range: ${value}`);
  return Number(value);
}

/** Only the fields present in the update change (proto3 `optional`). */
export function configPatchFromWire(update: pb.KeyConfigUpdate | undefined): Partial<KeyConfig> {
  if (update === undefined) return {};
  const patch: Partial<KeyConfig> = {};
  if (update.minDecryptionVersion !== undefined) patch.minDecryptionVersion = update.minDecryptionVersion;
  if (update.minEncryptionVersion !== undefined) patch.minEncryptionVersion = update.minEncryptionVersion;
  if (update.deletionAllowed !== undefined) patch.deletionAllowed = update.deletionAllowed;
  if (update.exportable !== undefined) patch.exportable = update.exportable;
  if (update.autoRotatePeriodSeconds !== undefined) {
    patch.autoRotatePeriodSeconds = safeNumber(update.autoRotatePeriodSeconds, 'config.auto_rotate_period_seconds');
  }
  return patch;
}

export function keyToWire(info: KeyInfo): pb.Key {
  return {
    name: info.name,
    tenant: info.tenant,
    type: keyTypeToWire(info.type),
    latestVersion: info.latestVersion,
    versions: info.versions.map((v) => ({
      version: v.version,
      createTime: v.createdAt,
      publicKey: v.publicKey ?? Buffer.alloc(0),
    })),
    config: {
      minDecryptionVersion: info.minDecryptionVersion,
      minEncryptionVersion: info.minEncryptionVersion,
      deletionAllowed: info.deletionAllowed,
      exportable: info.exportable,
      autoRotatePeriodSeconds: BigInt(info.autoRotatePeriodSeconds),
    },
    createTime: info.createdAt,
    updateTime: info.updatedAt,
  };
}

export function auditEventToWire(event: AuditEvent): pb.AuditEvent {
  return {
    id: event.id,
    tenant: event.tenant,
    subject: event.subject,
    keyName: event.keyName,
    keyVersion: event.version,
    operation: event.operation,
    outcome: event.outcome === 'ok' ? pb.AuditOutcome.AUDIT_OUTCOME_OK : pb.AuditOutcome.AUDIT_OUTCOME_ERROR,
    errorCode: event.errorCode ?? '',
    traceId: event.traceId ?? '',
    time: event.time,
  };
}

/** Empty bytes on the wire mean "no associated data". */
export function optionalBytes(value: Buffer): Buffer | undefined {
  return value.length === 0 ? undefined : value;
}
