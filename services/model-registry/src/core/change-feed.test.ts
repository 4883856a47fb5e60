import { randomBytes } from 'node:crypto';
import { registry as pb } from '@quanta/contracts';
import { openStore } from '@quanta/store';
import type { Store } from '@quanta/store';
import { TEST_DATABASE_URL, testBackends } from '@quanta/store/testing';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { feedPosition, pruneDeploymentChanges, recordDeploymentChanges, startDeploymentFeed } from './change-feed.js';
import type { DeploymentEvent, DeploymentFeed, SequencedEvent } from './change-feed.js';
import { REGISTRY_MIGRATIONS } from './migrations.js';

const logger = pino({ level: 'silent' });
// Long enough that only notifications (or an explicit poll) make a feed read.
const NO_POLL = { logger, pollMs: 3_600_000 };

function change(name: string, generation: bigint, type: DeploymentEvent['type'] = 'upserted'): DeploymentEvent {
  const deployment = pb.Deployment.fromPartial({
    name,
    tenant: 'acme',
    generation,
    spec: { modelRef: `${name}-model@production`, maxBatchSize: 8, preferredBatchSizes: [4] },
    createTime: new Date('2026-01-02T03:04:05.000Z'),
    updateTime: new Date('2026-01-02T03:04:06.000Z'),
  });
  return { type, deployment, reason: `${name} at ${generation}` };
}

/** A subscriber whose events (and loss) can be awaited in order. */
function recorder(): {
  subscriber: Parameters<DeploymentFeed['subscribe']>[0];
  next(): Promise<SequencedEvent>;
  lost(): Promise<void>;
  readonly queued: number;
} {
  const events: SequencedEvent[] = [];
  let lost = false;
  let wake: (() => void) | undefined;
  return {
    subscriber: {
      event(event) {
        events.push(event);
        wake?.();
      },
      lost() {
        lost = true;
        wake?.();
      },
    },
    async next() {
      while (events.length === 0) await new Promise<void>((resolve) => (wake = resolve));
      return events.shift()!;
    },
    async lost() {
      while (!lost) await new Promise<void>((resolve) => (wake = resolve));
    },
    get queued() {
      return events.length;
    },
  };
}

const feeds: DeploymentFeed[] = [];
afterEach(async () => {
  for (const feed of feeds.splice(0)) await feed.close();
});
async function startFeed(store: Store, options = NO_POLL): Promise<DeploymentFeed> {
  const feed = await startDeploymentFeed(store, options);
  feeds.push(feed);
  return feed;
}

describe.each(testBackends('test_feed'))('deployment change feed on $name', (backend) => {
  afterAll(() => backend.cleanup());

  it('passes on what commits, numbered in commit order, and nothing of a rollback', async () => {
    const store = await backend.open();
    await store.migrate('model-registry', REGISTRY_MIGRATIONS);
    const feed = await startFeed(store);
    const heard = recorder();
    feed.subscribe(heard.subscriber);
    expect(await feedPosition(store)).toBe(0n);

    await expect(
      store.transaction(async (tx) => {
        await recordDeploymentChanges(tx, [change('dropped', 1n)]);
        throw new Error('abandon');
      }),
    ).rejects.toThrow('abandon');
    const written = [change('a', 1n), change('b', 1n)];
    await store.transaction((tx) => recordDeploymentChanges(tx, written));
    await store.transaction((tx) => recordDeploymentChanges(tx, [change('a', 1n, 'deleted')]));

    const first = await heard.next();
    const second = await heard.next();
    const third = await heard.next();
    expect(first.deployment).toEqual(written[0]!.deployment);
    expect(first.reason).toBe('a at 1');
    expect([first.deployment.name, second.deployment.name, third.deployment.name]).toEqual(['a', 'b', 'a']);
    expect(third.type).toBe('deleted');
    expect(first.seq < second.seq && second.seq < third.seq).toBe(true);
    expect(await feedPosition(store)).toBe(third.seq);
  });

  it('tells subscribers when changes were pruned before it read them', async () => {
    const store = await backend.open();
    await store.migrate('model-registry', REGISTRY_MIGRATIONS);
    const feed = await startFeed(store);
    const heard = recorder();
    feed.subscribe(heard.subscriber);
    // Recorded and pruned in one transaction: no reader can have seen the change.
    await store.transaction(async (tx) => {
      await recordDeploymentChanges(tx, [change('gone', 1n)]);
      expect(await pruneDeploymentChanges(tx, 0)).toBe(1);
    });
    await heard.lost();
    expect(heard.queued).toBe(0);
    // The position does not go back with the rows: a snapshot read now is at or after the pruned change.
    const position = await feedPosition(store);
    expect(position).toBeGreaterThan(0n);

    // Past the loss, the feed goes on from where pruning left it.
    const later = recorder();
    feed.subscribe(later.subscriber);
    await store.transaction((tx) => recordDeploymentChanges(tx, [change('kept', 1n)]));
    const kept = await later.next();
    expect(kept.deployment.name).toBe('kept');
    expect(kept.seq).toBeGreaterThan(position);
    // Pruning what a caught-up feed has read costs it nothing.
    await feed.prune(0);
    await store.transaction((tx) => recordDeploymentChanges(tx, [change('after', 1n)]));
    expect((await later.next()).deployment.name).toBe('after');
  });
});

describe('deployment change feed across stores on one PostgreSQL schema', () => {
  const schema = `test_feed_${randomBytes(6).toString('hex')}`;
  const stores: Store[] = [];
  afterAll(async () => {
    await stores[0]?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    for (const store of stores) await store.close();
  });

  it('brings every replica every change of every other, once, in one order', async () => {
    const a = await openStore({ url: TEST_DATABASE_URL, schema });
    const b = await openStore({ url: TEST_DATABASE_URL, schema });
    stores.push(a, b);
    await Promise.all([
      a.migrate('model-registry', REGISTRY_MIGRATIONS),
      b.migrate('model-registry', REGISTRY_MIGRATIONS),
    ]);
    const feedA = await startFeed(a);
    const feedB = await startFeed(b);
    const onA = recorder();
    const onB = recorder();
    feedA.subscribe(onA.subscriber);
    feedB.subscribe(onB.subscriber);

    // Concurrent writers through both stores, each transaction doing some work before and after
    // taking its number: numbers must still follow commit order, or a reader could skip one.
    const writers = 24;
    await Promise.all(
      Array.from({ length: writers }, (_, i) =>
        (i % 2 === 0 ? a : b).transaction(async (tx) => {
          await tx.query('SELECT pg_sleep($1)', [(i % 3) * 0.005]);
          await recordDeploymentChanges(tx, [change(`d${i}`, 1n)]);
          await tx.query('SELECT pg_sleep($1)', [(i % 4) * 0.005]);
        }),
      ),
    );
    const seenA: SequencedEvent[] = [];
    const seenB: SequencedEvent[] = [];
    for (let i = 0; i < writers; i++) {
      seenA.push(await onA.next());
      seenB.push(await onB.next());
    }
    const names = (events: SequencedEvent[]): string[] => events.map((e) => e.deployment.name);
    expect(new Set(names(seenA)).size).toBe(writers);
    expect(names(seenB)).toEqual(names(seenA));
    expect(seenA.map((e) => e.seq)).toEqual([...seenA.map((e) => e.seq)].sort((x, y) => (x < y ? -1 : 1)));
    await feedA.poll();
    await feedB.poll();
    expect(onA.queued + onB.queued).toBe(0);
  });

  it('catches up after its listening connection is killed', async () => {
    const [a, b] = stores;
    const feedB = await startFeed(b!);
    const onB = recorder();
    feedB.subscribe(onB.subscriber);
    await a!.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'quanta-listen' AND query = $1",
      [`LISTEN "${schema}.registry_deployment_changes"`],
    );
    // Written while B may have no LISTEN in place: its reconnection reads it.
    await a!.transaction((tx) => recordDeploymentChanges(tx, [change('while-away', 1n)]));
    expect((await onB.next()).deployment.name).toBe('while-away');
  });
});
