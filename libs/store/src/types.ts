/** Something that runs SQL: the store itself, or the connection of an open transaction. */
export interface Queryable {
  /** Runs one statement with `$1, $2 …` placeholders (Postgres dialect on both backends). */
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<R[]>;
}

export interface Migration {
  /** Positive integer, applied in ascending order, never renumbered once shipped. */
  readonly version: number;
  readonly name: string;
  /** One or more statements; run inside one transaction with its schema_migrations row. */
  readonly sql: string;
}

export interface Store extends Queryable {
  readonly kind: 'embedded' | 'postgres';
  /** Commits when `fn` resolves, rolls back (and rethrows) when it rejects. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Applies the migrations of `component` that are not applied yet; safe to call from several processes. */
  migrate(component: string, migrations: readonly Migration[]): Promise<void>;
  /**
   * Listens for `notify(tx, channel, payload)` of every process on this store's database and
   * schema. Resolves once LISTEN is in place. On PostgreSQL a connection of its own holds it and
   * is reopened (with backoff) when lost; notifications sent meanwhile are lost, which
   * `listener.connected` reports. `close()` of the store ends it too.
   */
  listen(channel: string, listener: ChannelListener): Promise<Listening>;
  close(): Promise<void>;
}

/** What a `Store.listen` caller is told. Callbacks must not throw. */
export interface ChannelListener {
  /** A notification of a committed transaction (a rolled-back one sends none). */
  notify(payload: string): void;
  /**
   * LISTEN is in place: first at start, then after each reconnection. Whatever was notified
   * while it was not in place is lost: read what may have changed since.
   */
  connected?(): void;
  /** The connection was lost; it is being reopened. */
  disconnected?(error: Error): void;
}

export interface Listening {
  /** Stops listening (and reconnecting). */
  close(): Promise<void>;
}

export interface StoreOptions {
  /** `postgres://…` or `postgresql://…` selects PostgreSQL; absent selects the embedded PGlite. */
  url?: string;
  /** Embedded data folder (e.g. `$QUANTA_HOME/db`); absent keeps the embedded database in memory. */
  dataDir?: string;
  /** Schema for every table (created when missing); tests use a fresh one. Default `public`. */
  schema?: string;
}
