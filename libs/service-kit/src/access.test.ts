import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import type { AccessTable } from './access.js';
import { KIT_ACCESS, accessTableProblems } from './access.js';
import { clientStreaming, serverStreaming, unary } from './handlers.js';
import { createService } from './service.js';
import type { EchoReply, EchoRequest } from './testing/echo.js';
import { EchoClient, echoService } from './testing/echo.js';
import { bearer, callUnary, grpcError, testAuthenticator } from './testing/harness.js';

const S = '/quanta.kittest.v1.EchoService';
const TABLE: AccessTable = {
  [`${S}/Echo`]: { scope: 'models:read', tenant: 'own' },
  [`${S}/Expand`]: { scope: 'public', tenant: 'none' },
  [`${S}/Collect`]: { scope: 'models:write', tenant: 'own' },
  [`${S}/Chat`]: { scope: 'admin', tenant: 'none' },
};

const reply = (text: string, tenant = ''): EchoReply => ({ text, index: 0, payload: Buffer.alloc(0), tenant });
const handlers = {
  Echo: unary<EchoRequest, EchoReply>((req, ctx) => Promise.resolve(reply(req.text, ctx.principal?.tenant))),
  Expand: serverStreaming<EchoRequest, EchoReply>(async function* (req) {
    yield await Promise.resolve(reply(req.text));
  }),
  Collect: clientStreaming<EchoRequest, EchoReply>(() => Promise.resolve(reply('collected'))),
};

let stop: (() => Promise<void>) | undefined;
afterEach(async () => {
  await stop?.();
  stop = undefined;
});

describe('access tables', () => {
  it('enforces the table: the scope of each method, before its handler runs', async () => {
    const service = createService({ name: 'echo', port: 0, authenticator: testAuthenticator });
    let ran = 0;
    service.addService(
      echoService,
      {
        ...handlers,
        Echo: unary<EchoRequest, EchoReply>(
          (req, ctx) => (ran++, Promise.resolve(reply(req.text, ctx.principal?.tenant))),
        ),
      },
      TABLE,
    );
    const { port } = await service.start();
    const client = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    stop = async () => {
      client.close();
      await service.stop({ graceMs: 0 });
    };
    const denied = await grpcError(callUnary(client, 'Echo', { text: 'x' }, bearer('acme/alice/models:write')));
    expect([denied.code, denied.details]).toEqual([
      grpc.status.PERMISSION_DENIED,
      `${S}/Echo needs scope "models:read"; the token of "alice" does not grant it`,
    ]);
    expect((await grpcError(callUnary(client, 'Echo', { text: 'x' }))).code).toBe(grpc.status.UNAUTHENTICATED);
    expect(ran).toBe(0);
    await expect(callUnary(client, 'Echo', { text: 'x' }, bearer('acme/alice/models:read'))).resolves.toMatchObject({
      text: 'x',
      tenant: 'acme',
    });
    expect(ran).toBe(1);
  });

  it('refuses a service whose method has no rule, and a handler whose own scope disagrees with the table', () => {
    const service = createService({ name: 'echo', port: 0, authenticator: testAuthenticator });
    const { [`${S}/Collect`]: _dropped, ...partial } = TABLE;
    expect(() => service.addService(echoService, handlers, partial)).toThrow(
      `addService quanta.kittest.v1.EchoService: ${S}/Collect has no access rule: ` +
        "declare { scope, tenant } for it in the service's access table",
    );
    expect(() =>
      service.addService(
        echoService,
        { ...handlers, Echo: unary<EchoRequest, EchoReply>({ scope: 'admin' }, () => Promise.resolve(reply(''))) },
        TABLE,
      ),
    ).toThrow(
      'quanta.kittest.v1.EchoService/Echo: its handler declares scope "admin" ' +
        'but the access table says "models:read"; keep the scope in the table only',
    );
    expect(() => service.addService(echoService, handlers)).toThrow(
      "quanta.kittest.v1.EchoService/Echo: no scope declared; pass the service's access table to addService",
    );
  });

  it("checks that public methods touch no tenant, and lists the kit's own services as public", () => {
    expect(accessTableProblems(echoService, { ...TABLE, [`${S}/Expand`]: { scope: 'public', tenant: 'own' } })).toEqual(
      [`${S}/Expand is public, so its tenant rule must be 'none', not 'own'`],
    );
    expect(Object.values(KIT_ACCESS).every((rule) => rule.scope === 'public' && rule.tenant === 'none')).toBe(true);
  });
});
