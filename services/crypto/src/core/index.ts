export type { Actor, AuditEvent, KeyConfig, KeyInfo, KeyManager, KeyManagerOptions, KeyType, KeyVersionInfo, MasterKeyOptions, PageRequest } from './types.js';
export { KEY_TYPES } from './types.js';
export { createKeyManager } from './key-manager.js';
export { loadMasterKey } from './master-key.js';
