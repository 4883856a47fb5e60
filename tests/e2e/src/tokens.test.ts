// Revocation and signing-key rotation across the stack, through the `quanta` command: every
// service refuses a revoked token within 5 s without calling crypto per request, keeps refusing
// after crypto restarts, and accepts tokens of a rotated key while the old key's still work.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, connectClients, eventually, grpcCode, type Clients } from './clients.js';
import { runCli, startStack, type CliResult, type Stack } from './stack.js';

let stack: Stack;
let clients: Clients;

const quanta = (args: string[]): Promise<CliResult> => runCli(args, { ...stack.env, QUANTA_TOKEN: stack.adminToken });

async function issue(subject: string): Promise<string> {
  const out = await quanta([
    'tokens',
    'issue',
    '--tenant',
    'acme',
    '--subject',
    subject,
    '--scopes',
    'models:read,monitoring:read,keys:admin',
    '--ttl',
    '1h',
    '--json',
  ]);
  expect(out.code, out.stderr).toBe(0);
  return (JSON.parse(out.stdout) as { token: string }).token;
}

/** One read per service; the status code of each (0 for OK). */
async function codes(token: string): Promise<Record<string, grpc.status>> {
  const md = { metadata: bearer(token), deadline: Date.now() + 5000 };
  const code = (p: Promise<unknown>): Promise<grpc.status> =>
    p.then(
      () => grpc.status.OK,
      (e: unknown) => (grpcCode(e) ?? grpc.status.UNKNOWN) as grpc.status,
    );
  const [crypto, registry, monitoring, inference] = await Promise.all([
    code(clients.rpc.crypto('listKeys', { pageSize: 0, pageToken: '' }, md)),
    code(clients.rpc.registry('listModels', { pageSize: 0, pageToken: '', namePrefix: '', tags: {} }, md)),
    code(clients.rpc.monitoring('listAlertRules', { pageSize: 0, pageToken: '', model: '' }, md)),
    code(clients.rpc.inference('repositoryIndex', { repositoryName: '', ready: false }, md)),
  ]);
  return { crypto, registry, monitoring, inference };
}

/** How long after `since` each service first refuses `token`, polling every 50 ms for up to 10 s. */
async function refusedAfter(token: string, since: number): Promise<Record<string, number>> {
  const when: Record<string, number> = {};
  while (Object.keys(when).length < 4 && Date.now() - since < 10_000) {
    for (const [service, code] of Object.entries(await codes(token))) {
      if (code === grpc.status.UNAUTHENTICATED && when[service] === undefined) when[service] = Date.now() - since;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return when;
}

const ALL_OK = { crypto: 0, registry: 0, monitoring: 0, inference: 0 };
const ALL_REFUSED = {
  crypto: grpc.status.UNAUTHENTICATED,
  registry: grpc.status.UNAUTHENTICATED,
  monitoring: grpc.status.UNAUTHENTICATED,
  inference: grpc.status.UNAUTHENTICATED,
};

beforeAll(async () => {
  stack = await startStack();
  clients = connectClients(stack);
}, 180_000);

afterAll(async () => {
  clients?.close();
  await stack?.close();
});

describe('tokens across the stack', { timeout: 180_000 }, () => {
  it(
    'quanta tokens revoke: every service refuses the token, a jti and a subject within 5 s, ' +
      'and after crypto restarts',
    async () => {
      const leaked = await issue('alice');
      const byJti = await issue('bob');
      const carol = await issue('carol');
      const other = await issue('dave');
      for (const token of [leaked, byJti, carol, other]) expect(await codes(token)).toEqual(ALL_OK);

      let since = Date.now();
      let out = await quanta(['tokens', 'revoke', leaked]);
      expect(out.code, out.stderr).toBe(0);
      expect(out.stdout).toMatch(/^revoked token \S+ \(entry kept until /);
      let took = await refusedAfter(leaked, since);
      console.log(`revoked token refused after (ms): ${JSON.stringify(took)}`);
      for (const service of Object.keys(ALL_OK)) expect(took[service], service).toBeLessThan(5000);

      const jti = (JSON.parse(Buffer.from(byJti.split('.')[1] ?? '', 'base64url').toString()) as { jti: string }).jti;
      since = Date.now();
      out = await quanta(['tokens', 'revoke', '--jti', jti, '--json']);
      expect(out.code, out.stderr).toBe(0);
      expect(JSON.parse(out.stdout)).toMatchObject({ jti });
      took = await refusedAfter(byJti, since);
      for (const service of Object.keys(ALL_OK)) expect(took[service], service).toBeLessThan(5000);

      since = Date.now();
      out = await quanta(['tokens', 'revoke', '--subject', 'carol', '--tenant', 'acme']);
      expect(out.code, out.stderr).toBe(0);
      expect(out.stdout).toMatch(/every token of "carol" in tenant "acme" issued before/);
      took = await refusedAfter(carol, since);
      for (const service of Object.keys(ALL_OK)) expect(took[service], service).toBeLessThan(5000);
      expect(await codes(other)).toEqual(ALL_OK);

      // Crypto restarts: the others keep their list meanwhile and fetch the same one afterwards; a
      // service started afterwards gets it from crypto's store.
      await stack.processes.get('crypto')?.stop();
      expect(await codes(leaked)).toMatchObject({
        registry: grpc.status.UNAUTHENTICATED,
        monitoring: grpc.status.UNAUTHENTICATED,
        inference: grpc.status.UNAUTHENTICATED,
      });
      await stack.start('crypto');
      await eventually(
        'the client reconnecting to crypto',
        async () => (await clients.rpc.crypto('getJwks', {}, { deadline: Date.now() + 1000 })).keys.length > 0,
        10_000,
      );
      await stack.processes.get('monitoring')?.stop();
      await stack.start('monitoring');
      for (const token of [leaked, byJti, carol]) expect(await codes(token)).toEqual(ALL_REFUSED);
      expect(await codes(other)).toEqual(ALL_OK);

      const usage = await quanta(['tokens', 'revoke', '--jti', 'x', '--subject', 'y']);
      expect(usage.code).toBe(2);
      expect(usage.stderr).toMatch(/exactly one of TOKEN, --jti ID or --subject NAME/);
    },
  );

  it(
    'quanta tokens rotate-signing-key: new tokens carry the new kid and work everywhere, ' + 'old ones keep working',
    async () => {
      const before = await issue('erin');
      const oldKid = (JSON.parse(Buffer.from(before.split('.')[0] ?? '', 'base64url').toString()) as { kid: string })
        .kid;
      const out = await quanta(['tokens', 'rotate-signing-key', '--json']);
      expect(out.code, out.stderr).toBe(0);
      const rotated = JSON.parse(out.stdout) as { keyId: string; previousKeyId: string; previousKeyRetireTime: string };
      expect(rotated.previousKeyId).toBe(oldKid);
      expect(rotated.keyId).not.toBe(oldKid);
      const after = await issue('erin');
      expect((JSON.parse(Buffer.from(after.split('.')[0] ?? '', 'base64url').toString()) as { kid: string }).kid).toBe(
        rotated.keyId,
      );
      const jwks = await clients.rpc.crypto('getJwks', {});
      expect(jwks.keys.map((k) => k.kid)).toEqual(expect.arrayContaining([rotated.keyId, oldKid]));
      expect(await codes(before)).toEqual(ALL_OK);
      // Each service fetches the JWKS again on the unknown kid (at most every 5 s), and every 10 s anyway.
      const since = Date.now();
      while (JSON.stringify(await codes(after)) !== JSON.stringify(ALL_OK) && Date.now() - since < 20_000)
        await new Promise((r) => setTimeout(r, 100));
      expect(await codes(after)).toEqual(ALL_OK);
      console.log(`a token of the new signing key was accepted everywhere after ${Date.now() - since} ms`);
    },
  );
});
