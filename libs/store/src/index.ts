export type { ChannelListener, Listening, Migration, Queryable, Store, StoreOptions } from './types.js';
export { notify } from './notify.js';
export { openStore } from './open-store.js';
