export type { Migration, Queryable, Store, StoreOptions } from './types.js';
export { openStore } from './open-store.js';
