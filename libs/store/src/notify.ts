import type { Queryable } from './types.js';

const CHANNEL = /^[a-z_][a-z0-9_]*$/;

function checkChannel(channel: string): string {
  if (!CHANNEL.test(channel))
    throw new Error(`channel "${channel}" is not a plain lower-case identifier ([a-z_][a-z0-9_]*)`);
  return channel;
}

/**
 * The channel name on the server. NOTIFY channels belong to the database, not to a schema, so
 * stores on different schemas of one database (tests, several installations) are kept apart by
 * prefixing the schema: `<schema>.<channel>`, at most 63 bytes as every identifier.
 */
export function qualifiedChannel(schema: string, channel: string): string {
  const qualified = `${schema}.${checkChannel(channel)}`;
  if (qualified.length > 63)
    throw new Error(`channel "${qualified}" (schema.channel) is longer than PostgreSQL's 63 bytes`);
  return qualified;
}

/**
 * Notifies the listeners of `channel` (`Store.listen`) on this store's schema. Inside a
 * transaction the notification is sent when it commits, and not at all when it rolls back.
 * The payload is at most 8000 bytes (PostgreSQL's limit).
 */
export async function notify(q: Queryable, channel: string, payload = ''): Promise<void> {
  await q.query("SELECT pg_notify(current_schema() || '.' || $1, $2)", [checkChannel(channel), payload]);
}
