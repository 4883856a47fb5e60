import { registry as pb } from '@quanta/contracts';
import { notify } from '@quanta/store';
import type { Listening, Queryable, Store } from '@quanta/store';
import type { Logger } from 'pino';

/** One deployment that changed, as WatchDeployments sends it. */
export interface DeploymentEvent {
  readonly type: 'upserted' | 'deleted';
  readonly deployment: pb.Deployment;
  readonly reason: string;
}

/** A change with its place in the feed: later commits have higher numbers. */
export interface SequencedEvent extends DeploymentEvent {
  readonly seq: bigint;
}

const CHANNEL = 'registry_deployment_changes';

/**
 * Appends the changes to the feed inside the transaction that makes them, so they commit (and
 * are notified) together or not at all. Call it last in the transaction: the table lock it takes
 * is held to commit, which makes the numbers follow commit order, so a reader that has seen
 * number n has seen every change numbered below n.
 */
export async function recordDeploymentChanges(tx: Queryable, events: readonly DeploymentEvent[]): Promise<void> {
  if (events.length === 0) return;
  // EXCLUSIVE lets readers (SELECT) through and holds back other writers and pruning.
  await tx.query('LOCK TABLE registry_deployment_changes IN EXCLUSIVE MODE');
  let last = 0n;
  for (const event of events) {
    const [row] = await tx.query<{ seq: bigint }>(
      `INSERT INTO registry_deployment_changes (tenant, name, type, deployment, reason)
       VALUES ($1, $2, $3, $4, $5) RETURNING seq`,
      [
        event.deployment.tenant,
        event.deployment.name,
        event.type,
        JSON.stringify(pb.Deployment.toJSON(event.deployment)),
        event.reason,
      ],
    );
    last = row!.seq;
  }
  await notify(tx, CHANNEL, String(last));
}

/**
 * The position of the feed as seen by `q`: every change up to it is reflected in what `q`
 * reads, none after it. Read it in the transaction that reads the state it goes with.
 */
export async function feedPosition(q: Queryable): Promise<bigint> {
  const [row] = await q.query<{ seq: bigint }>(
    `SELECT GREATEST((SELECT max(seq) FROM registry_deployment_changes),
                     (SELECT pruned_through FROM registry_change_feed)) AS seq`,
  );
  return row?.seq ?? 0n;
}

/**
 * Removes the changes recorded `olderThanMs` ago or earlier (a prefix of the feed, so the mark
 * says exactly what is gone) and raises the pruning mark; returns how many went.
 */
export async function pruneDeploymentChanges(q: Queryable, olderThanMs: number): Promise<number> {
  const [row] = await q.query<{ removed: bigint }>(
    `WITH horizon AS (
       SELECT max(seq) AS seq FROM registry_deployment_changes
       WHERE created_at <= now() - make_interval(secs => $1::double precision)
     ), gone AS (
       DELETE FROM registry_deployment_changes WHERE seq <= (SELECT seq FROM horizon) RETURNING seq
     )
     UPDATE registry_change_feed SET pruned_through = GREATEST(pruned_through, (SELECT COALESCE(max(seq), 0) FROM gone))
     RETURNING (SELECT count(*) FROM gone) AS removed`,
    [olderThanMs / 1000],
  );
  return Number(row?.removed ?? 0n);
}

/** Told of every change that commits after it subscribed, in commit order. */
export interface FeedSubscriber {
  event(event: SequencedEvent): void;
  /**
   * Changes were pruned before this process read them (it was cut off from the database for
   * longer than the feed keeps them): what the subscriber has seen may be stale for good.
   */
  lost(): void;
}

/**
 * This process's reader of the change feed: the changes of every replica on the database, each
 * read once and passed to every subscriber. It reads when notified, when its LISTEN connection
 * comes back (notifications sent meanwhile are lost), and every `pollMs` in case a connection
 * died without the process noticing. It also prunes changes older than `retentionMs`.
 */
export interface DeploymentFeed {
  /** Subscribers added before a state is read get every change committed after that read. */
  subscribe(subscriber: FeedSubscriber): () => void;
  readonly subscriberCount: number;
  /** Reads what is new; resolves after a read that started after this call. */
  poll(): Promise<void>;
  /** Removes changes older than `olderThanMs` (every replica does it on a timer); returns how many. */
  prune(olderThanMs: number): Promise<number>;
  close(): Promise<void>;
}

export interface DeploymentFeedOptions {
  readonly logger: Logger;
  /** Read even without a notification this often. Default 5 s. */
  readonly pollMs?: number;
  /** Keep changes this long. Default one hour. */
  readonly retentionMs?: number;
  /** Prune this often. Default one minute. */
  readonly pruneEveryMs?: number;
}

interface ChangeRow {
  pruned_through: bigint;
  seq: bigint | null;
  type: 'upserted' | 'deleted' | null;
  deployment: string | null;
  reason: string | null;
}

const BATCH = 500;

export async function startDeploymentFeed(store: Store, options: DeploymentFeedOptions): Promise<DeploymentFeed> {
  const { logger } = options;
  const subscribers = new Set<FeedSubscriber>();
  let position = await feedPosition(store);
  let closed = false;
  let reading: Promise<void> | undefined;
  let dirty = false;

  /** One batch after `position`; the pruning mark comes from the same statement, so the same snapshot. */
  async function readBatch(): Promise<void> {
    const rows = await store.query<ChangeRow>(
      `SELECT f.pruned_through, c.seq, c.type, c.deployment, c.reason
       FROM registry_change_feed f
       LEFT JOIN LATERAL (
         SELECT seq, type, deployment, reason FROM registry_deployment_changes WHERE seq > $1 ORDER BY seq LIMIT $2
       ) c ON true
       ORDER BY c.seq`,
      [position, BATCH],
    );
    const prunedThrough = rows[0]?.pruned_through ?? 0n;
    const changes = rows.filter((r) => r.seq !== null);
    if (changes.length === BATCH) dirty = true;
    if (prunedThrough > position) {
      const last = changes[changes.length - 1]?.seq ?? prunedThrough;
      logger.warn(
        { position: String(position), prunedThrough: String(prunedThrough) },
        'changes were pruned before this replica read them: ending every deployment watch',
      );
      position = last > prunedThrough ? last : prunedThrough;
      for (const subscriber of [...subscribers]) subscriber.lost();
      return;
    }
    for (const row of changes) {
      const event: SequencedEvent = {
        seq: row.seq!,
        type: row.type!,
        deployment: pb.Deployment.fromJSON(JSON.parse(row.deployment!)),
        reason: row.reason!,
      };
      position = event.seq;
      for (const subscriber of [...subscribers]) subscriber.event(event);
    }
  }

  function poll(): Promise<void> {
    if (closed) return Promise.resolve();
    dirty = true;
    reading ??= (async () => {
      try {
        while (dirty && !closed) {
          dirty = false;
          await readBatch();
        }
      } finally {
        reading = undefined;
      }
    })();
    return reading;
  }

  const pollQuietly = (): void => {
    poll().catch((error: unknown) => {
      if (!closed) logger.warn({ err: error }, 'reading the deployment change feed failed; retrying');
    });
  };

  const prune = (olderThanMs: number): Promise<number> => pruneDeploymentChanges(store, olderThanMs);

  const listening: Listening = await store.listen(CHANNEL, {
    notify(payload) {
      // The payload is the last number the notifying transaction wrote.
      if (/^\d+$/.test(payload) && BigInt(payload) <= position) return;
      pollQuietly();
    },
    connected: pollQuietly,
    disconnected(error) {
      logger.warn({ err: error }, 'lost the database connection that listens for deployment changes; reconnecting');
    },
  });
  const poller = setInterval(pollQuietly, options.pollMs ?? 5000);
  poller.unref();
  const retentionMs = options.retentionMs ?? 60 * 60 * 1000;
  const pruner = setInterval(() => {
    prune(retentionMs).catch((error: unknown) => {
      if (!closed) logger.warn({ err: error }, 'pruning the deployment change feed failed');
    });
  }, options.pruneEveryMs ?? 60_000);
  pruner.unref();

  return {
    subscribe(subscriber) {
      subscribers.add(subscriber);
      return () => void subscribers.delete(subscriber);
    },
    get subscriberCount() {
      return subscribers.size;
    },
    poll,
    prune,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(poller);
      clearInterval(pruner);
      await listening.close();
      await reading?.catch(() => undefined);
    },
  };
}
