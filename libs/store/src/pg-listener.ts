import pg from 'pg';
import type { ChannelListener, Listening } from './types.js';

const FIRST_RETRY_MS = 100;
const MAX_RETRY_MS = 5000;

/**
 * LISTEN on a client of its own (a pooled connection would be handed to other queries). The
 * first connection must succeed, so that a bad url fails at start; later losses are retried
 * with a doubling delay up to 5 s, each new connection reported through `listener.connected`.
 */
export async function openPgListener(
  config: pg.ClientConfig,
  qualified: string,
  listener: ChannelListener,
): Promise<Listening> {
  let closed = false;
  let current: pg.Client | undefined;
  let retry: NodeJS.Timeout | undefined;
  let attempt = 0;

  async function connect(): Promise<void> {
    const client = new pg.Client({ ...config, keepAlive: true, application_name: 'quanta-listen' });
    let lost = false;
    const onLost = (error: Error): void => {
      if (lost) return;
      lost = true;
      if (current === client) current = undefined;
      client.end().catch(() => undefined);
      if (closed) return;
      listener.disconnected?.(error);
      scheduleRetry();
    };
    client.on('error', onLost);
    client.on('end', () => onLost(new Error('the listening connection was closed')));
    client.on('notification', (message) => {
      if (message.channel === qualified && !closed) listener.notify(message.payload ?? '');
    });
    try {
      await client.connect();
      await client.query(`LISTEN "${qualified}"`);
    } catch (error: unknown) {
      lost = true;
      await client.end().catch(() => undefined);
      throw error;
    }
    if (closed) {
      lost = true;
      await client.end().catch(() => undefined);
      return;
    }
    current = client;
    attempt = 0;
    listener.connected?.();
  }

  function scheduleRetry(): void {
    const delay = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** attempt);
    attempt += 1;
    retry = setTimeout(() => {
      retry = undefined;
      if (closed) return;
      connect().catch((error: unknown) => {
        if (closed) return;
        listener.disconnected?.(error instanceof Error ? error : new Error(String(error)));
        scheduleRetry();
      });
    }, delay);
    retry.unref();
  }

  await connect();
  return {
    async close() {
      if (closed) return;
      closed = true;
      if (retry !== undefined) clearTimeout(retry);
      const client = current;
      current = undefined;
      await client?.end().catch(() => undefined);
    },
  };
}
