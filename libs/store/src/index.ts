export type { ChannelListener, Listening, Migration, Queryable, Store, StoreOptions } from './types.js';
export { notify } from './notify.js';
export { openStore } from './open-store.js';
export { AuditPageTokenError, auditTableSql, listAuditEvents, recordAuditEvent } from './audit.js';
export type { AuditFilter, AuditRecord, StoredAuditRecord } from './audit.js';
