export type {
  Actor,
  AuditEvent,
  KeyConfig,
  KeyInfo,
  KeyManager,
  KeyManagerOptions,
  KeyType,
  KeyVersionInfo,
  MasterKeyOptions,
  PageRequest,
} from './types.js';
export { KEY_TYPES } from './types.js';
export { createKeyManager } from './key-manager.js';
export { loadMasterKey } from './master-key.js';
// Building blocks, for benchmarks and for tools that must speak the formats without a KeyManager.
export { FernetKey, InvalidFernetToken, encodeFernetKey, fernetDecrypt, parseFernetKey } from './fernet.js';
export { createDecryptStream, createEncryptStream, DEFAULT_SEGMENT_SIZE, STREAM_HEADER } from './streaming.js';
export { INVALID_CIPHERTEXT } from './errors.js';
