import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import { crypto as cpb, registry as pb } from '@quanta/contracts';
import { buildMlp } from '@quanta/onnx';
import { openStore } from '@quanta/store';
import { createTestDatabase } from '@quanta/store/testing';
import type { TestDatabase } from '@quanta/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, call, startSharedCrypto } from '../testing/harness.js';
import type { SharedCrypto } from '../testing/harness.js';
import { pull, push } from '../testing/client.js';
import type { ServiceProcess } from '@quanta/service-kit/testing';
import { startServiceProcess } from '@quanta/service-kit/testing';
import { rpc } from '../testing/rpc.js';

/** A WatchDeployments stream whose messages are kept, each with the time it arrived. */
function watch(client: pb.RegistryServiceClient, token: string) {
  const stream = client.watchDeployments({ allTenants: false }, bearer(token));
  const received: { event: pb.WatchDeploymentsResponse['event']; at: number }[] = [];
  let ended: Error | undefined;
  let wake: (() => void) | undefined;
  stream.on('data', (message: pb.WatchDeploymentsResponse) => {
    received.push({ event: message.event, at: performance.now() });
    wake?.();
  });
  stream.on('error', (error: Error) => {
    ended = error;
    wake?.();
  });
  stream.on('end', () => {
    ended ??= new Error('the watch stream ended');
    wake?.();
  });
  return {
    async next(): Promise<{ event: pb.WatchDeploymentsResponse['event']; at: number }> {
      for (;;) {
        const first = received.shift();
        if (first !== undefined) return first;
        if (ended !== undefined) throw ended;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
    async snapshot(): Promise<pb.Deployment[]> {
      const { event } = await this.next();
      if (event?.$case !== 'snapshot') throw new Error(`expected a snapshot, got ${event?.$case}`);
      return event.value.deployments;
    },
    async change(): Promise<{ change: pb.DeploymentChange; at: number }> {
      const { event, at } = await this.next();
      if (event?.$case !== 'change') throw new Error(`expected a change, got ${event?.$case}`);
      return { change: event.value, at };
    },
    close: () => stream.cancel(),
  };
}

const spec = (modelRef: string): pb.DeploymentSpec =>
  pb.DeploymentSpec.fromPartial({ modelRef, maxBatchSize: 1, instanceCount: 1 });

describe('two registry processes on one PostgreSQL', () => {
  let crypto: SharedCrypto;
  let database: TestDatabase;
  let home: string;
  let replicas: ServiceProcess[] = [];
  let a: pb.RegistryServiceClient;
  let b: pb.RegistryServiceClient;
  let writer: string;
  let reader: string;

  beforeAll(async () => {
    [crypto, database, home] = await Promise.all([
      startSharedCrypto(),
      createTestDatabase('test_replicas'),
      mkdtemp(join(tmpdir(), 'quanta-replicas-')),
    ]);
    // One blob folder for both (as one bucket would be), one database; started together, so that
    // migrations race as they do when a Deployment rolls out.
    const env = {
      QUANTA_HOME: home,
      QUANTA_REGISTRY_PORT: '0',
      QUANTA_CRYPTO_ADDR: crypto.process.address,
      QUANTA_SERVICE_TOKEN: crypto.adminToken,
      QUANTA_DATABASE_URL: database.url,
    };
    replicas = await Promise.all([
      startServiceProcess('model-registry', env),
      startServiceProcess('model-registry', env),
    ]);
    a = new pb.RegistryServiceClient(replicas[0]!.address, grpc.credentials.createInsecure());
    b = new pb.RegistryServiceClient(replicas[1]!.address, grpc.credentials.createInsecure());
    const cryptoClient = new cpb.CryptoServiceClient(crypto.process.address, grpc.credentials.createInsecure());
    const issue = async (scopes: string[]): Promise<string> =>
      (
        await rpc(
          cryptoClient,
          cpb.CryptoServiceService,
          'issueToken',
          { tenant: 'acme', subject: 'acme-user', scopes, ttlSeconds: 3600n },
          bearer(crypto.adminToken),
        )
      ).token;
    writer = await issue(['models:read', 'models:write']);
    reader = await issue(['models:read']);
    cryptoClient.close();
  }, 240_000);

  afterAll(async () => {
    a?.close();
    b?.close();
    await Promise.all(replicas.map((r) => r.stop()));
    await crypto?.close();
    await database?.drop();
    if (home !== undefined) await rm(home, { recursive: true, force: true });
  }, 60_000);

  it('a deployment or alias written through one replica reaches a watch on the other within a second', async () => {
    const onB = watch(b, reader);
    expect(await onB.snapshot()).toEqual([]);
    for (const seed of [1, 2]) await push(a, writer, { model: 'fast' }, Buffer.from(buildMlp({ seed })));
    await call(a, 'setAlias', { model: 'fast', alias: 'production', version: 1 }, writer);

    const delays: number[] = [];
    let sent = performance.now();
    await call(a, 'createDeployment', { name: 'fast-prod', spec: spec('fast@production') }, writer);
    let { change, at } = await onB.change();
    delays.push(at - sent);
    expect(change).toMatchObject({
      type: pb.DeploymentChangeType.DEPLOYMENT_CHANGE_TYPE_UPSERTED,
      deployment: { name: 'fast-prod', resolvedVersion: { version: 1 } },
    });

    sent = performance.now();
    await call(a, 'setAlias', { model: 'fast', alias: 'production', version: 2 }, writer);
    ({ change, at } = await onB.change());
    delays.push(at - sent);
    expect(change).toMatchObject({
      deployment: { name: 'fast-prod', generation: 2n, resolvedVersion: { version: 2 } },
      reason: 'alias production moved from 1 to 2',
    });

    sent = performance.now();
    await call(a, 'deleteDeployment', { name: 'fast-prod' }, writer);
    ({ change, at } = await onB.change());
    delays.push(at - sent);
    expect(change).toMatchObject({
      type: pb.DeploymentChangeType.DEPLOYMENT_CHANGE_TYPE_DELETED,
      deployment: { name: 'fast-prod' },
    });
    onB.close();
    console.log(`replica A write -> replica B watch: ${delays.map((d) => `${d.toFixed(1)} ms`).join(', ')}`);
    for (const delay of delays) expect(delay).toBeLessThan(1000);
  });

  it('a watcher that reconnects misses nothing, and one whose replica lost its LISTEN connection neither', async () => {
    await push(a, writer, { model: 'away' }, Buffer.from(buildMlp({ seed: 3 })));
    await push(a, writer, { model: 'away' }, Buffer.from(buildMlp({ seed: 4 })));
    await call(a, 'setAlias', { model: 'away', alias: 'production', version: 1 }, writer);
    await call(a, 'createDeployment', { name: 'away-prod', spec: spec('away@production') }, writer);
    await call(a, 'createDeployment', { name: 'away-doomed', spec: spec('away') }, writer);
    const first = watch(b, reader);
    expect((await first.snapshot()).map((d) => [d.name, d.resolvedVersion?.version])).toEqual([
      ['away-doomed', 2],
      ['away-prod', 1],
    ]);
    first.close();

    // While no watch is open on B: a new deployment, an alias move, a deletion, all through A.
    await call(a, 'createDeployment', { name: 'away-new', spec: spec('away:1') }, writer);
    await call(a, 'setAlias', { model: 'away', alias: 'production', version: 2 }, writer);
    await call(a, 'deleteDeployment', { name: 'away-doomed' }, writer);
    const again = watch(b, reader);
    const listed = await call(a, 'listDeployments', { model: '', pageSize: 100, pageToken: '' }, reader);
    const snapshot = await again.snapshot();
    expect(snapshot).toEqual(listed.deployments);
    expect(snapshot.map((d) => [d.name, d.resolvedVersion?.version])).toEqual([
      ['away-new', 1],
      ['away-prod', 2],
    ]);

    // B's LISTEN connections are cut (A's too: they look alike); a change through A still
    // reaches the open watch on B, by B's reconnection reading what it missed.
    const admin = await openStore({ url: database.url });
    const killed = await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
       WHERE datname = $1 AND application_name = 'quanta-listen'`,
      [database.name],
    );
    await admin.close();
    expect(killed.length).toBe(2);
    await call(a, 'setAlias', { model: 'away', alias: 'production', version: 1 }, writer);
    const { change } = await again.change();
    expect(change).toMatchObject({
      deployment: { name: 'away-prod', resolvedVersion: { version: 1 } },
      reason: 'alias production moved from 2 to 1',
    });
    again.close();
  });

  it('concurrent uploads of one model through both replicas get distinct, consecutive versions', async () => {
    const files = Array.from({ length: 8 }, (_, i) => Buffer.from(buildMlp({ seed: 100 + (i % 6) })));
    // Seeds repeat: equal content through different replicas at once, stored once and shared.
    const versions = await Promise.all(
      files.map((bytes, i) => push(i % 2 === 0 ? a : b, writer, { model: 'busy', createModel: true }, bytes)),
    );
    expect(versions.map((v) => v.version).sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    for (const client of [a, b]) {
      const model = await call(client, 'getModel', { name: 'busy' }, reader);
      expect(model.model).toMatchObject({ latestVersion: 8, versionCount: 8 });
    }
    // Every version reads back through the replica that did not write it.
    for (const [i, version] of versions.entries()) {
      const { bytes } = await pull(i % 2 === 0 ? b : a, reader, `busy:${version.version}`);
      expect(bytes.equals(files[i]!)).toBe(true);
    }
  }, 120_000);

  it(
    'concurrent alias moves through both replicas end with one ' + 'winner that every reader and watcher agrees on',
    async () => {
      await call(a, 'setAlias', { model: 'busy', alias: 'production', version: 1 }, writer);
      await call(a, 'createDeployment', { name: 'busy-prod', spec: spec('busy@production') }, writer);
      const watchers = [watch(a, reader), watch(b, reader)];
      for (const w of watchers)
        expect((await w.snapshot()).find((d) => d.name === 'busy-prod')?.resolvedVersion?.version).toBe(1);

      // Distinct targets, none the starting version: every move changes the alias, and the chain
      // below has one way through.
      const targets = [2, 3, 4, 5, 6, 7, 8];
      const moves = await Promise.all(
        targets.map((version, i) =>
          call(i % 2 === 0 ? a : b, 'setAlias', { model: 'busy', alias: 'production', version }, writer),
        ),
      );
      // Moves applied one at a time: each one's previous version is the one before it moved the
      // alias, so the answers chain from 1 to the winner with none lost.
      const winner = await call(b, 'getModel', { name: 'busy' }, reader);
      const final = winner.model!.aliases['production']!;
      const pending = targets.map((to, i) => ({ from: moves[i]!.previousVersion, to }));
      const chain = [1];
      while (pending.length > 0) {
        const at = chain[chain.length - 1];
        const next = pending.findIndex((m) => m.from === at);
        expect(next, `no move continues the chain at version ${at}`).toBeGreaterThanOrEqual(0);
        chain.push(pending.splice(next, 1)[0]!.to);
      }
      expect(chain[chain.length - 1]).toBe(final);
      expect((await call(a, 'getModel', { name: 'busy' }, reader)).model!.aliases['production']).toBe(final);
      for (const client of [a, b]) {
        expect(
          (await call(client, 'getDeployment', { name: 'busy-prod' }, reader)).deployment?.resolvedVersion?.version,
        ).toBe(final);
      }
      // Both watchers see the deployment follow the chain, move by move.
      const expected = chain.slice(1);
      for (const w of watchers) {
        const versions: number[] = [];
        for (const _ of expected) versions.push((await w.change()).change.deployment!.resolvedVersion!.version);
        expect(versions).toEqual(expected);
        w.close();
      }
    },
    60_000,
  );

  it('a client of both replicas carries on through the survivor when one is killed', async () => {
    // grpc-js's static resolver with several addresses and its default pick_first policy: calls go
    // to the first replica that answers, and to the next one when it dies.
    const both = new pb.RegistryServiceClient(
      `ipv4:${replicas.map((r) => r.address).join(',')}`,
      grpc.credentials.createInsecure(),
    );
    const watching = watch(both, reader);
    const before = await watching.snapshot();
    await replicas[0]!.kill();
    // The open watch ends (its replica is gone); watching again lands on the survivor, whose
    // snapshot is the same set, and then it follows changes made through that survivor.
    await expect(watching.next()).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    const again = watch(both, reader);
    expect(await again.snapshot()).toEqual(before);
    await call(both, 'createDeployment', { name: 'after-the-kill', spec: spec('busy:1') }, writer);
    expect((await again.change()).change.deployment?.name).toBe('after-the-kill');
    const version = await push(both, writer, { model: 'busy' }, Buffer.from(buildMlp({ seed: 200 })));
    expect(version.version).toBe(9);
    again.close();
    both.close();
  }, 60_000);
});
