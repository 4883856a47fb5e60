import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { notify, openStore } from './index.js';
import type { ChannelListener, Store } from './index.js';
import { TEST_DATABASE_URL, testBackends } from './testing/index.js';

/** A listener whose notifications (and reconnections) can be awaited in order. */
function recorder(): ChannelListener & {
  next(): Promise<string>;
  nextConnect(): Promise<void>;
  nextLoss(): Promise<Error>;
} {
  const payloads: string[] = [];
  let wakePayload: (() => void) | undefined;
  let connects = 0;
  let wakeConnect: (() => void) | undefined;
  const losses: Error[] = [];
  let wakeLoss: (() => void) | undefined;
  return {
    notify(payload) {
      payloads.push(payload);
      wakePayload?.();
    },
    connected() {
      connects += 1;
      wakeConnect?.();
    },
    disconnected(error) {
      losses.push(error);
      wakeLoss?.();
    },
    async next() {
      while (payloads.length === 0) await new Promise<void>((resolve) => (wakePayload = resolve));
      return payloads.shift()!;
    },
    async nextConnect() {
      while (connects === 0) await new Promise<void>((resolve) => (wakeConnect = resolve));
      connects -= 1;
    },
    async nextLoss() {
      while (losses.length === 0) await new Promise<void>((resolve) => (wakeLoss = resolve));
      return losses.shift()!;
    },
  };
}

describe.each(testBackends('test_listen'))('listen on $name', (backend) => {
  afterAll(() => backend.cleanup());

  it('delivers what committed transactions notify, in commit order, and nothing of a rolled-back one', async () => {
    const store = await backend.open();
    const heard = recorder();
    const listening = await store.listen('changes', heard);
    await heard.nextConnect();
    await expect(
      store.transaction(async (tx) => {
        await notify(tx, 'changes', 'rolled back');
        throw new Error('abandon');
      }),
    ).rejects.toThrow('abandon');
    await store.transaction(async (tx) => {
      await notify(tx, 'changes', 'first');
      await notify(tx, 'other_channel', 'not for us');
    });
    await notify(store, 'changes', 'second');
    expect(await heard.next()).toBe('first');
    expect(await heard.next()).toBe('second');

    await listening.close();
    await listening.close();
    // A fresh listener on the same store works after one was closed (UNLISTEN of the quoted name).
    const fresh = recorder();
    await store.listen('changes', fresh);
    await notify(store, 'changes', 'third');
    expect(await fresh.next()).toBe('third');
  });

  it('refuses channel names that are not identifiers', async () => {
    const store = await backend.open();
    await expect(store.listen('Bad-Name', recorder())).rejects.toThrow(/plain lower-case identifier/);
    await expect(notify(store, 'x"; drop', '')).rejects.toThrow(/plain lower-case identifier/);
  });
});

describe('listen on postgres, across connections', () => {
  const opened: { store: Store; schema: string }[] = [];
  async function open(schema: string): Promise<Store> {
    const store = await openStore({ url: TEST_DATABASE_URL, schema });
    opened.push({ store, schema });
    return store;
  }
  afterAll(async () => {
    for (const { store, schema } of opened.splice(0)) {
      await store.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await store.close();
    }
  });

  it('reaches another store on the same schema, and only that schema', async () => {
    const schema = `test_listen_${randomBytes(6).toString('hex')}`;
    const writer = await open(schema);
    const reader = await open(schema);
    const otherSchema = await open(`test_listen_${randomBytes(6).toString('hex')}`);
    const heard = recorder();
    await reader.listen('changes', heard);
    await notify(otherSchema, 'changes', 'another schema');
    await notify(writer, 'changes', 'same schema');
    expect(await heard.next()).toBe('same schema');
  });

  it('reconnects when its connection is killed, and says so', async () => {
    const schema = `test_listen_${randomBytes(6).toString('hex')}`;
    const store = await open(schema);
    const heard = recorder();
    await store.listen('changes', heard);
    await heard.nextConnect();
    const killed = await store.query<{ ok: boolean }>(
      `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
       WHERE application_name = 'quanta-listen' AND query = $1`,
      [`LISTEN "${schema}.changes"`],
    );
    expect(killed).toEqual([{ ok: true }]);
    await heard.nextLoss();
    await heard.nextConnect();
    await notify(store, 'changes', 'after the reconnection');
    expect(await heard.next()).toBe('after the reconnection');
  });
});
