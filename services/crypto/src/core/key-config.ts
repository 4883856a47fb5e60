import { invalidArgument } from '@quanta/service-kit';
import type { KeyConfig, KeyType } from './types.js';
import { KEY_TYPES } from './types.js';

export const DEFAULT_CONFIG: KeyConfig = {
  minDecryptionVersion: 1,
  minEncryptionVersion: 0,
  deletionAllowed: false,
  exportable: false,
  autoRotatePeriodSeconds: 0,
};

const MIN_AUTO_ROTATE = 3600;
const MAX_AUTO_ROTATE = 10 * 366 * 24 * 3600;
const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function checkKeyName(name: string): void {
  if (typeof name !== 'string' || !KEY_NAME.test(name)) {
    throw invalidArgument(
      `key name "${String(name)}" is invalid: 1 to 128 letters, digits, '.', '_' or '-', starting with a ` +
        `letter or digit`,
    );
  }
}

export function checkKeyType(type: string): KeyType {
  if (!(KEY_TYPES as readonly string[]).includes(type))
    throw invalidArgument(`key type "${type}" is unknown; use one of ${KEY_TYPES.join(', ')}`);
  return type as KeyType;
}

function integer(field: string, value: unknown, min: number, max: number, extra = ''): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalidArgument(`${field} must be an integer from ${min} to ${max}${extra}; got ${String(value)}`);
  }
  return value;
}

function bool(field: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw invalidArgument(`${field} must be true or false; got ${String(value)}`);
  return value;
}

/** Merges a patch onto the current config and checks the result against the key's latest version (Vault's rules). */
export function mergeConfig(current: KeyConfig, patch: Partial<KeyConfig>, latestVersion: number): KeyConfig {
  // Fields left undefined keep their current value (a patch, not a replacement).
  const merged: KeyConfig = {
    ...current,
    ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)),
  };
  // 0 means "no floor", as for min_encryption_version: every version decrypts.
  const minDecryptionVersion =
    merged.minDecryptionVersion === 0
      ? 1
      : integer(
          'min_decryption_version',
          merged.minDecryptionVersion,
          1,
          latestVersion,
          ` (the latest version is ${latestVersion})`,
        );
  const minEncryptionVersion = integer(
    'min_encryption_version',
    merged.minEncryptionVersion,
    0,
    latestVersion,
    ` (0 = no floor; the latest version is ${latestVersion})`,
  );
  if (minEncryptionVersion > 0 && minEncryptionVersion < minDecryptionVersion) {
    throw invalidArgument(
      `min_encryption_version (${minEncryptionVersion}) must be 0 or at least min_decryption_version ` +
        `(${minDecryptionVersion})`,
    );
  }
  const period = integer('auto_rotate_period_seconds', merged.autoRotatePeriodSeconds, 0, MAX_AUTO_ROTATE);
  if (period !== 0 && period < MIN_AUTO_ROTATE)
    throw invalidArgument(`auto_rotate_period_seconds must be 0 (never) or at least ${MIN_AUTO_ROTATE}; got ${period}`);
  const exportable = bool('exportable', merged.exportable);
  if (current.exportable && !exportable)
    throw invalidArgument(
      'exportable cannot be turned off once a key was exportable (its material may already be out)',
    );
  return {
    minDecryptionVersion,
    minEncryptionVersion,
    deletionAllowed: bool('deletion_allowed', merged.deletionAllowed),
    exportable,
    autoRotatePeriodSeconds: period,
  };
}
