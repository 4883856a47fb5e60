// The access matrix, enforced and tested: every method of every service, from the generated
// service definitions, called with no token, a malformed one, an expired one, one signed by an
// unknown key, a revoked one, one lacking the method's scope, and another tenant's. Each service's
// declared table (services/*/src/server/access.ts) says what the method needs; a method without a
// rule, or an `own` method without a fixture below, fails here.
import { generateKeyPairSync, sign } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { crypto, health, inference, monitoring, registry } from '@quanta/contracts';
import { CRYPTO_ACCESS } from '@quanta/crypto';
import { INFERENCE_ACCESS } from '@quanta/inference';
import { REGISTRY_ACCESS } from '@quanta/model-registry';
import { MONITORING_ACCESS } from '@quanta/monitoring';
import { buildMlp } from '@quanta/onnx';
import { KIT_ACCESS, SCOPES } from '@quanta/service-kit';
import type { AccessRule, AccessTable } from '@quanta/service-kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, connectClients, deploymentSpec, eventually, pushModel, waitServed, type Clients } from './clients.js';
import { REPO_ROOT, startStack, type Stack } from './stack.js';

const { status } = grpc;
/** Every name of tenant acme's resources has this in it: another tenant's answer must never show it. */
const SECRET = 'acmesecret';
const MODEL = `${SECRET}-model`;
const KEY = `${SECRET}-key`;
const RULE = `${SECRET}-rule`;
const ALL_TENANT_SCOPES = SCOPES.filter((s) => s !== 'admin');

interface Service {
  readonly name: string;
  readonly definition: grpc.ServiceDefinition;
  readonly table: AccessTable;
  readonly addr: (stack: Stack) => string;
}

const SERVICES: readonly Service[] = [
  { name: 'crypto', definition: crypto.CryptoServiceService, table: CRYPTO_ACCESS, addr: (s) => s.addr.crypto },
  {
    name: 'model-registry',
    definition: registry.RegistryServiceService,
    table: REGISTRY_ACCESS,
    addr: (s) => s.addr.registry,
  },
  {
    name: 'monitoring',
    definition: monitoring.MonitoringServiceService,
    table: MONITORING_ACCESS,
    addr: (s) => s.addr.monitoring,
  },
  {
    name: 'inference',
    definition: inference.GRPCInferenceServiceService,
    table: INFERENCE_ACCESS,
    addr: (s) => s.addr.inference,
  },
  ...(['crypto', 'registry', 'monitoring', 'inference'] as const).map((name): Service => ({
    name: `${name} health`,
    definition: health.HealthService,
    table: KIT_ACCESS,
    addr: (s) => s.addr[name],
  })),
];

interface Method {
  readonly service: Service;
  readonly key: string;
  readonly def: grpc.MethodDefinition<unknown, unknown>;
  readonly rule: AccessRule | undefined;
}

const METHODS: readonly Method[] = SERVICES.flatMap((service) =>
  Object.entries(service.definition).map(([key, def]) => ({ service, key, def, rule: service.table[def.path] })),
);

interface Outcome {
  readonly code: grpc.status;
  readonly details: string;
  /** The reply, or the first message of a stream, as JSON. */
  readonly reply: string;
}

const raw = (b: Buffer): Buffer => b;

/**
 * One call of any kind: the request (already encoded) sent as the one message of a stream; a
 * streamed reply ends the call at its first message.
 */
function invoke(
  client: grpc.Client,
  def: grpc.MethodDefinition<unknown, unknown>,
  request: Buffer,
  metadata: grpc.Metadata,
): Promise<Outcome> {
  const options = { deadline: Date.now() + 15_000 };
  const decode = (b: Buffer): string => {
    try {
      return JSON.stringify(def.responseDeserialize(b), (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v));
    } catch {
      return b.toString('latin1');
    }
  };
  return new Promise((resolve) => {
    const done = (error: grpc.ServiceError | null, reply?: Buffer): void =>
      resolve(
        error === null
          ? { code: status.OK, details: '', reply: reply === undefined ? '' : decode(reply) }
          : { code: error.code, details: error.details, reply: '' },
      );
    if (!def.responseStream) {
      if (!def.requestStream) {
        client.makeUnaryRequest(def.path, raw, raw, request, metadata, options, (e, r) => done(e, r));
      } else {
        const call = client.makeClientStreamRequest(def.path, raw, raw, metadata, options, (e, r) => done(e, r));
        call.write(request);
        call.end();
      }
      return;
    }
    const call = def.requestStream
      ? client.makeBidiStreamRequest(def.path, raw, raw, metadata, options)
      : client.makeServerStreamRequest(def.path, raw, raw, request, metadata, options);
    let settled = false;
    call.on('data', (message: Buffer) => {
      if (settled) return;
      settled = true;
      resolve({ code: status.OK, details: '', reply: decode(message) });
      call.cancel();
    });
    call.on('error', (error: grpc.ServiceError) => {
      if (!settled) {
        settled = true;
        done(error);
      }
    });
    call.on('end', () => {
      if (!settled) {
        settled = true;
        resolve({ code: status.OK, details: '', reply: '' });
      }
    });
    if (def.requestStream) {
      const duplex = call as grpc.ClientDuplexStream<Buffer, Buffer>;
      duplex.write(request);
      duplex.end();
    }
  });
}

const enc = <T>(type: { encode(m: T): { finish(): Uint8Array }; fromPartial(p: object): T }, partial: object): Buffer =>
  Buffer.from(type.encode(type.fromPartial(partial)).finish());

/** A request for the other-tenant column, and how to tell an OK reply that shows nothing of acme's. */
interface Fixture {
  readonly request: Buffer;
  /**
   * For a reply that repeats the request's names: true when it holds none of acme's data. Default:
   * acme's names appear nowhere.
   */
  readonly clean?: (reply: string) => boolean;
}

const everyItemNotFound = (reply: string): boolean => {
  const { results } = JSON.parse(reply) as { results: { error?: { code: number } }[] };
  return results.length > 0 && results.every((r) => r.error?.code === status.NOT_FOUND);
};
const noCounts = (reply: string): boolean => !/"count":"[1-9]/.test(reply);

/**
 * For every `own` method: a request that names tenant acme's resources. Called with another
 * tenant's token holding every tenant scope, it must answer NOT_FOUND (or PERMISSION_DENIED), or
 * succeed without a trace of acme's data. A new `own` RPC needs an entry here.
 */
function otherTenantRequests(ciphertext: Buffer, wrappedKey: Buffer, signature: Buffer): Record<string, Fixture> {
  const c = '/quanta.crypto.v1.CryptoService';
  const r = '/quanta.registry.v1.RegistryService';
  const m = '/quanta.monitoring.v1.MonitoringService';
  const i = '/inference.GRPCInferenceService';
  const ref = `${MODEL}:1`;
  const requests: Record<string, Buffer> = {
    [`${c}/CreateKey`]: enc(crypto.CreateKeyRequest, { name: 'b-only-key', type: crypto.KeyType.KEY_TYPE_AES256_GCM }),
    [`${c}/ImportKey`]: enc(crypto.ImportKeyRequest, {
      name: 'b-only-imported',
      type: crypto.KeyType.KEY_TYPE_AES256_GCM,
      material: Buffer.alloc(32, 7),
    }),
    [`${c}/GetKey`]: enc(crypto.GetKeyRequest, { name: KEY }),
    [`${c}/ListKeys`]: enc(crypto.ListKeysRequest, {}),
    [`${c}/RotateKey`]: enc(crypto.RotateKeyRequest, { name: KEY }),
    [`${c}/UpdateKeyConfig`]: enc(crypto.UpdateKeyConfigRequest, { name: KEY, config: { deletionAllowed: true } }),
    [`${c}/DeleteKey`]: enc(crypto.DeleteKeyRequest, { name: KEY }),
    [`${c}/ExportKey`]: enc(crypto.ExportKeyRequest, { name: KEY, version: 1 }),
    // Its own audit of the calls below would name acme's key: ask for its own key's events.
    [`${c}/ListAuditEvents`]: enc(crypto.ListAuditEventsRequest, { keyName: 'b-only-key' }),
    [`${c}/Encrypt`]: enc(crypto.EncryptRequest, { keyName: KEY, plaintext: Buffer.from('x') }),
    [`${c}/Decrypt`]: enc(crypto.DecryptRequest, { keyName: KEY, ciphertext }),
    [`${c}/Rewrap`]: enc(crypto.RewrapRequest, { keyName: KEY, ciphertext }),
    [`${c}/BatchEncrypt`]: enc(crypto.BatchEncryptRequest, { keyName: KEY, items: [{ plaintext: Buffer.from('x') }] }),
    [`${c}/BatchDecrypt`]: enc(crypto.BatchDecryptRequest, { keyName: KEY, items: [{ ciphertext }] }),
    [`${c}/BatchRewrap`]: enc(crypto.BatchRewrapRequest, { keyName: KEY, items: [{ ciphertext }] }),
    [`${c}/EncryptStream`]: enc(crypto.EncryptStreamRequest, { part: { $case: 'header', value: { keyName: KEY } } }),
    [`${c}/DecryptStream`]: enc(crypto.DecryptStreamRequest, { part: { $case: 'header', value: { keyName: KEY } } }),
    [`${c}/GenerateDataKey`]: enc(crypto.GenerateDataKeyRequest, { keyName: KEY, bits: 256 }),
    [`${c}/UnwrapDataKey`]: enc(crypto.UnwrapDataKeyRequest, { keyName: KEY, wrappedKey }),
    [`${c}/Sign`]: enc(crypto.SignRequest, { keyName: KEY, data: Buffer.from('x') }),
    [`${c}/Verify`]: enc(crypto.VerifyRequest, { keyName: KEY, data: Buffer.from('x'), signature }),

    [`${r}/CreateModel`]: enc(registry.CreateModelRequest, { name: 'b-only-model' }),
    [`${r}/GetModel`]: enc(registry.GetModelRequest, { name: MODEL }),
    [`${r}/ListModels`]: enc(registry.ListModelsRequest, {}),
    [`${r}/UpdateModel`]: enc(registry.UpdateModelRequest, { name: MODEL, description: 'taken over' }),
    [`${r}/DeleteModel`]: enc(registry.DeleteModelRequest, { name: MODEL }),
    [`${r}/UploadVersion`]: enc(registry.UploadVersionRequest, {
      part: { $case: 'header', value: { model: MODEL, createModel: false } },
    }),
    [`${r}/GetVersion`]: enc(registry.GetVersionRequest, { ref }),
    [`${r}/ListVersions`]: enc(registry.ListVersionsRequest, { model: MODEL }),
    [`${r}/UpdateVersion`]: enc(registry.UpdateVersionRequest, { ref, description: 'taken over' }),
    [`${r}/DownloadVersion`]: enc(registry.DownloadVersionRequest, { ref }),
    [`${r}/CompressVersion`]: enc(registry.CompressVersionRequest, {
      ref,
      targetModel: 'b-only-compressed',
      method: registry.CompressionMethod.COMPRESSION_METHOD_INT8_WEIGHTS,
    }),
    // acme's owner asking about its own events: the other tenant sees none of them.
    [`${r}/ListAuditEvents`]: enc(registry.ListAuditEventsRequest, { subject: 'acme-matrix' }),
    [`${r}/SetAlias`]: enc(registry.SetAliasRequest, { model: MODEL, alias: 'prod', version: 1 }),
    [`${r}/DeleteAlias`]: enc(registry.DeleteAliasRequest, { model: MODEL, alias: 'prod' }),
    [`${r}/CreateDeployment`]: enc(registry.CreateDeploymentRequest, {
      name: 'b-only-deployment',
      spec: deploymentSpec('b-only-model'),
    }),
    [`${r}/UpdateDeployment`]: enc(registry.UpdateDeploymentRequest, { name: MODEL, spec: deploymentSpec(MODEL) }),
    [`${r}/DeleteDeployment`]: enc(registry.DeleteDeploymentRequest, { name: MODEL }),
    [`${r}/GetDeployment`]: enc(registry.GetDeploymentRequest, { name: MODEL }),
    [`${r}/ListDeployments`]: enc(registry.ListDeploymentsRequest, {}),
    [`${r}/WatchDeployments`]: enc(registry.WatchDeploymentsRequest, {}),

    [`${m}/GetModelStats`]: enc(monitoring.GetModelStatsRequest, { model: MODEL }),
    [`${m}/GetTimeSeries`]: enc(monitoring.GetTimeSeriesRequest, { model: MODEL }),
    [`${m}/TopModels`]: enc(monitoring.TopModelsRequest, {}),
    [`${m}/GetAlertRule`]: enc(monitoring.GetAlertRuleRequest, { name: RULE }),
    [`${m}/ListAlertRules`]: enc(monitoring.ListAlertRulesRequest, {}),
    [`${m}/ListAlerts`]: enc(monitoring.ListAlertsRequest, {}),
    [`${m}/WatchAlerts`]: enc(monitoring.WatchAlertsRequest, {}),
    [`${m}/CreateAlertRule`]: enc(monitoring.CreateAlertRuleRequest, {
      rule: alertRule('b-only-rule', 'b-only-model'),
    }),
    [`${m}/UpdateAlertRule`]: enc(monitoring.UpdateAlertRuleRequest, { rule: alertRule(RULE) }),
    [`${m}/DeleteAlertRule`]: enc(monitoring.DeleteAlertRuleRequest, { name: RULE }),
    [`${m}/ListAuditEvents`]: enc(monitoring.ListAuditEventsRequest, { subject: 'acme-matrix' }),
    // A baseline of the caller's own (a model of its own name): it creates nothing acme can see.
    [`${m}/SetDriftBaseline`]: enc(monitoring.SetDriftBaselineRequest, {
      model: 'b-only-model',
      source: {
        $case: 'inputs',
        value: {
          summaries: [
            { input: 'input', count: 2n, sum: 1, sumSquares: 1, min: 0, max: 1, bins: [{ index: 0, count: 2n }] },
          ],
        },
      },
    }),
    [`${m}/GetDriftBaseline`]: enc(monitoring.GetDriftBaselineRequest, { model: MODEL }),
    [`${m}/DeleteDriftBaseline`]: enc(monitoring.DeleteDriftBaselineRequest, { model: MODEL }),
    [`${m}/GetDrift`]: enc(monitoring.GetDriftRequest, { model: MODEL }),

    [`${i}/ModelReady`]: enc(inference.ModelReadyRequest, { name: MODEL }),
    [`${i}/ModelMetadata`]: enc(inference.ModelMetadataRequest, { name: MODEL }),
    // ModelConfigRequest has the same fields (name, version).
    [`${i}/ModelConfig`]: enc(inference.ModelMetadataRequest, { name: MODEL }),
    [`${i}/ModelStatistics`]: enc(inference.ModelStatisticsRequest, { name: MODEL }),
    [`${i}/RepositoryIndex`]: enc(inference.RepositoryIndexRequest, {}),
    [`${i}/ModelInfer`]: enc(inference.ModelInferRequest, {
      modelName: MODEL,
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1n, 4n] }],
      rawInputContents: [Buffer.alloc(16)],
    }),
    [`${i}/ModelStreamInfer`]: enc(inference.ModelInferRequest, {
      modelName: MODEL,
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1n, 4n] }],
      rawInputContents: [Buffer.alloc(16)],
    }),
    [`${i}/RepositoryModelLoad`]: enc(inference.RepositoryModelLoadRequest, { modelName: MODEL }),
    [`${i}/RepositoryModelUnload`]: enc(inference.RepositoryModelUnloadRequest, { modelName: MODEL }),
  };
  // Replies that repeat the names asked for, and show what the other tenant has: none of acme's.
  const clean: Record<string, (reply: string) => boolean> = {
    [`${c}/BatchEncrypt`]: everyItemNotFound,
    [`${c}/BatchDecrypt`]: everyItemNotFound,
    [`${c}/BatchRewrap`]: everyItemNotFound,
    [`${m}/GetModelStats`]: noCounts,
    [`${m}/GetTimeSeries`]: noCounts,
    // KServe's stream answers each request with a message: an error for a model it does not serve.
    [`${i}/ModelStreamInfer`]: (reply) =>
      reply.includes('is not loaded for this tenant') && !reply.includes('outputs":[{'),
  };
  return Object.fromEntries(
    Object.entries(requests).map(([path, request]) => [
      path,
      { request, ...(clean[path] === undefined ? {} : { clean: clean[path] }) },
    ]),
  );
}

function alertRule(name: string, model = MODEL): monitoring.AlertRule {
  return monitoring.AlertRule.fromPartial({
    name,
    model,
    metric: monitoring.AlertMetric.ALERT_METRIC_P99_LATENCY_US,
    threshold: 5000,
    window: { seconds: 10n, nanos: 0 },
    forDuration: { seconds: 0n, nanos: 0 },
  });
}

let stack: Stack;
let clients: Clients;
const channels = new Map<string, grpc.Client>();
let tokens: {
  expired: string;
  unknownKey: string;
  revoked: string;
  lacking: Map<string, string>;
  otherTenant: string;
  owner: string;
};
let fixtures: Record<string, Fixture>;

function channel(service: Service): grpc.Client {
  const addr = service.addr(stack);
  let client = channels.get(addr);
  if (client === undefined) {
    client = new grpc.Client(addr, grpc.credentials.createInsecure());
    channels.set(addr, client);
  }
  return client;
}

function callAs(method: Method, token: string | undefined, request: Buffer = Buffer.alloc(0)): Promise<Outcome> {
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set('authorization', token.startsWith('Bearer') ? token : `Bearer ${token}`);
  return invoke(channel(method.service), method.def, request, metadata);
}

async function issue(
  tenant: string,
  scopes: string[],
  ttlSeconds = 3600,
  subject = `${tenant}-matrix`,
): Promise<crypto.IssueTokenResponse> {
  return clients.rpc.crypto(
    'issueToken',
    { tenant, subject, scopes, ttlSeconds: BigInt(ttlSeconds) },
    { metadata: bearer(stack.adminToken) },
  );
}

/** What acme holds, read with the admin token: equal before and after the matrix, or a call changed something. */
async function acmeState(): Promise<string> {
  const owner = { metadata: bearer(tokens.owner) };
  const key = await clients.rpc.crypto('getKey', { name: KEY }, owner);
  const versions = await clients.rpc.registry(
    'listVersions',
    { model: MODEL, pageSize: 0, pageToken: '', status: 0, tags: {} },
    owner,
  );
  const model = await clients.rpc.registry('getModel', { name: MODEL }, owner);
  const deployments = await clients.rpc.registry('listDeployments', { pageSize: 0, pageToken: '', model: '' }, owner);
  const rules = await clients.rpc.monitoring('listAlertRules', { pageSize: 0, pageToken: '', model: '' }, owner);
  return JSON.stringify({ key, versions, model, deployments, rules }, (_k, v: unknown) =>
    typeof v === 'bigint' ? String(v) : v,
  );
}

beforeAll(() => setUp(), 240_000);

async function setUp(): Promise<void> {
  stack = await startStack();
  clients = connectClients(stack);
  const owner = (await issue('acme', [...ALL_TENANT_SCOPES])).token;
  const as = { metadata: bearer(owner) };
  // acme's resources, which the other tenant must never see or touch.
  await clients.rpc.crypto('createKey', { name: KEY, type: crypto.KeyType.KEY_TYPE_AES256_GCM, config: undefined }, as);
  const { ciphertext } = await clients.rpc.crypto(
    'encrypt',
    { keyName: KEY, plaintext: Buffer.from('acme data'), associatedData: Buffer.alloc(0) },
    as,
  );
  const { wrappedKey } = await clients.rpc.crypto(
    'generateDataKey',
    { keyName: KEY, bits: 256, wrappedOnly: true, associatedData: Buffer.alloc(0) },
    as,
  );
  await pushModel(clients, owner, MODEL, buildMlp({ inputSize: 4, hiddenSizes: [4], outputSize: 2, seed: 3 }));
  await clients.rpc.registry('setAlias', { model: MODEL, alias: 'prod', version: 1 }, as);
  await clients.rpc.registry('createDeployment', { name: MODEL, spec: deploymentSpec(MODEL) }, as);
  await clients.rpc.monitoring('createAlertRule', { rule: alertRule(RULE) }, as);
  await waitServed(clients, owner, MODEL);
  await clients.rpc.inference(
    'modelInfer',
    inference.ModelInferRequest.fromPartial({
      modelName: MODEL,
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1n, 4n] }],
      rawInputContents: [Buffer.alloc(16)],
    }),
    as,
  );
  await eventually("monitoring counting acme's request", async () => {
    const { stats } = await clients.rpc.monitoring(
      'getModelStats',
      monitoring.GetModelStatsRequest.fromPartial({ model: MODEL }),
      as,
    );
    return (stats?.count ?? 0n) > 0n;
  });
  fixtures = otherTenantRequests(ciphertext, wrappedKey, Buffer.alloc(32));

  const expired = await issue('acme', [...SCOPES], 1);
  // A key of our own under a kid no JWKS lists, with claims that are otherwise right.
  const stranger = generateKeyPairSync('ed25519');
  const part = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  const iat = Math.floor(Date.now() / 1000);
  const header = part({ alg: 'EdDSA', kid: 'not-a-quanta-key', typ: 'JWT' });
  const claims = part({
    tenant: 'acme',
    scope: SCOPES.join(' '),
    iss: 'quanta-crypto',
    aud: 'quanta',
    sub: 'mallory',
    iat,
    exp: iat + 3600,
    jti: 'forged',
  });
  const signed = `${header}.${claims}`;
  const unknownKey = `${signed}.${sign(null, Buffer.from(signed), stranger.privateKey).toString('base64url')}`;
  const lacking = new Map<string, string>();
  for (const scope of SCOPES)
    lacking.set(
      scope,
      (
        await issue(
          'acme',
          SCOPES.filter((s) => s !== scope && s !== 'admin'),
        )
      ).token,
    );
  tokens = {
    expired: expired.token,
    unknownKey,
    revoked: (await issue('acme', [...SCOPES], 3600, 'acme-leaked')).token,
    lacking,
    otherTenant: (await issue('globex', [...ALL_TENANT_SCOPES])).token,
    owner,
  };
  await clients.rpc.crypto(
    'revokeToken',
    { target: { $case: 'token', value: tokens.revoked }, tenant: '', issuedBefore: undefined },
    { metadata: bearer(stack.adminToken) },
  );
  // Wait for the short-lived token to pass its expiry (the clock is the event here).
  const expiresAt = expired.expireTime?.getTime() ?? 0;
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt - Date.now() + 1100)));
  // Every service refuses the revoked token within 5 s of the revocation.
  for (const service of SERVICES.slice(0, 4)) {
    const method = METHODS.find((m) => m.service === service && m.rule !== undefined && m.rule.scope !== 'public');
    if (method === undefined) throw new Error(`${service.name} has no scoped method`);
    await eventually(
      `${service.name} refusing the revoked token`,
      async () => (await callAs(method, tokens.revoked)).code === status.UNAUTHENTICATED,
      5000,
    );
  }
}

afterAll(async () => {
  for (const client of channels.values()) client.close();
  clients?.close();
  await stack?.close();
});

describe('the access matrix', { timeout: 300_000 }, () => {
  it('declares a rule for every method of every service, and a fixture for every tenant-owned one', () => {
    const undeclared = METHODS.filter((m) => m.rule === undefined).map((m) => m.def.path);
    expect(undeclared, "methods without an access rule: add them to the service's access.ts").toEqual([]);
    const unfixtured = METHODS.filter((m) => m.rule?.tenant === 'own' && fixtures[m.def.path] === undefined).map(
      (m) => m.def.path,
    );
    expect(unfixtured, 'tenant-owned methods without a request in otherTenantRequests').toEqual([]);
  });

  it('is written down in docs/security.md as declared', async () => {
    const doc = await readFile(join(REPO_ROOT, 'docs', 'security.md'), 'utf8');
    const missing = METHODS.flatMap(({ def, rule }) => {
      if (rule === undefined) return [];
      const scope = rule.scope === 'public' ? 'none (public)' : `\`${rule.scope}\``;
      const line = `| \`${def.path.slice(1)}\` | ${scope} | ${rule.tenant} |`;
      return doc.includes(line) ? [] : [line];
    });
    expect(missing, 'rows to add to (or correct in) the access matrix of docs/security.md').toEqual([]);
  });

  it('refuses every scoped method without a good token: UNAUTHENTICATED', async () => {
    const wrong: string[] = [];
    for (const method of METHODS) {
      if (method.rule === undefined || method.rule.scope === 'public') continue;
      for (const [what, token] of [
        ['no token', undefined],
        ['a malformed token', 'not-a-jwt'],
        ['a non-bearer header', 'Basic dXNlcjpwYXNz'],
        ['an expired token', tokens.expired],
        ['a token signed by an unknown key', tokens.unknownKey],
        ['a revoked token', tokens.revoked],
      ] as const) {
        const outcome = await callAs(method, token);
        if (outcome.code !== status.UNAUTHENTICATED)
          wrong.push(`${method.def.path} with ${what}: ${status[outcome.code]} ${outcome.details}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('refuses every scoped method to a token lacking its scope: PERMISSION_DENIED naming the scope', async () => {
    const wrong: string[] = [];
    for (const method of METHODS) {
      const rule = method.rule;
      if (rule === undefined || rule.scope === 'public') continue;
      const outcome = await callAs(method, tokens.lacking.get(rule.scope));
      if (outcome.code !== status.PERMISSION_DENIED || !outcome.details.includes(`"${rule.scope}"`)) {
        wrong.push(`${method.def.path} without ${rule.scope}: ${status[outcome.code]} ${outcome.details}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('answers public methods without a token', async () => {
    const wrong: string[] = [];
    for (const method of METHODS) {
      if (method.rule?.scope !== 'public') continue;
      const outcome = await callAs(method, undefined);
      if (outcome.code === status.UNAUTHENTICATED || outcome.code === status.PERMISSION_DENIED)
        wrong.push(`${method.def.path}: ${status[outcome.code]}`);
    }
    expect(wrong).toEqual([]);
  });

  it("never shows or changes one tenant's data to another: NOT_FOUND, or only its own", async () => {
    const before = await acmeState();
    const wrong: string[] = [];
    for (const method of METHODS) {
      const fixture = fixtures[method.def.path];
      if (method.rule?.tenant !== 'own' || fixture === undefined) continue;
      const outcome = await callAs(method, tokens.otherTenant, fixture.request);
      const hidden = outcome.code === status.NOT_FOUND || outcome.code === status.PERMISSION_DENIED;
      const ownOnly = outcome.code === status.OK && (fixture.clean?.(outcome.reply) ?? !outcome.reply.includes(SECRET));
      if (!hidden && !ownOnly)
        wrong.push(`${method.def.path}: ${status[outcome.code]} ${outcome.details} ${outcome.reply.slice(0, 200)}`);
    }
    expect(wrong).toEqual([]);
    expect(await acmeState()).toBe(before);
    // The owner still sees what the other tenant could not.
    expect(before).toContain(SECRET);
  });

  it("guards the HTTP routes the same way: 401, 403, and 404 for another tenant's model", async () => {
    const model = `/v2/models/${MODEL}`;
    // Each REST route of inference (http/rest-routes.ts) and its Triton metrics, with the scope it needs.
    // `owned`: names acme's model, so another tenant gets 404, as for a model that does not exist;
    // /ready answers 503 and unload (idempotent, in the caller's own namespace) 200 for those too.
    const routes: { method: 'GET' | 'POST'; url: string; scope: string; owned: boolean | number }[] = [
      { method: 'GET', url: `${stack.http.inference}/v2/models/stats`, scope: 'models:read', owned: false },
      { method: 'GET', url: `${stack.http.inference}${model}`, scope: 'models:read', owned: true },
      { method: 'GET', url: `${stack.http.inference}${model}/versions/1`, scope: 'models:read', owned: true },
      { method: 'GET', url: `${stack.http.inference}${model}/config`, scope: 'models:read', owned: true },
      { method: 'GET', url: `${stack.http.inference}${model}/ready`, scope: 'models:read', owned: 503 },
      { method: 'GET', url: `${stack.http.inference}${model}/stats`, scope: 'models:read', owned: true },
      { method: 'POST', url: `${stack.http.inference}${model}/infer`, scope: 'infer', owned: true },
      { method: 'POST', url: `${stack.http.inference}/v2/repository/index`, scope: 'models:read', owned: false },
      {
        method: 'POST',
        url: `${stack.http.inference}/v2/repository/models/${MODEL}/load`,
        scope: 'models:write',
        owned: true,
      },
      {
        method: 'POST',
        url: `${stack.http.inference}/v2/repository/models/${MODEL}/unload`,
        scope: 'models:write',
        owned: 200,
      },
      { method: 'GET', url: stack.http.inferenceMetrics, scope: 'monitoring:read', owned: false },
    ];
    const body = JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [0, 0, 0, 0] }] });
    const fetchAs = async (
      route: (typeof routes)[number],
      token: string | undefined,
    ): Promise<{ status: number; text: string }> => {
      const response = await fetch(route.url, {
        method: route.method,
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
        ...(route.method === 'POST' ? { body: route.url.endsWith('/infer') ? body : '{}' } : {}),
      });
      return { status: response.status, text: await response.text() };
    };
    const wrong: string[] = [];
    for (const route of routes) {
      for (const [what, token, expected] of [
        ['no token', undefined, 401],
        ['a malformed token', 'not-a-jwt', 401],
        ['an expired token', tokens.expired, 401],
        ['a token signed by an unknown key', tokens.unknownKey, 401],
        ['a revoked token', tokens.revoked, 401],
        ['a token lacking the scope', tokens.lacking.get(route.scope), 403],
      ] as const) {
        const reply = await fetchAs(route, token);
        if (reply.status !== expected)
          wrong.push(`${route.method} ${route.url} with ${what}: ${reply.status} ${reply.text.slice(0, 120)}`);
      }
      const other = await fetchAs(route, tokens.otherTenant);
      const nowhere = await fetchAs({ ...route, url: route.url.replace(MODEL, 'no-such-model') }, tokens.otherTenant);
      const hidden =
        route.owned === false
          ? other.status === 200 && !other.text.includes(SECRET)
          : other.status === (route.owned === true ? 404 : route.owned) &&
            other.text === nowhere.text.replaceAll('no-such-model', MODEL);
      if (!hidden)
        wrong.push(`${route.method} ${route.url} as another tenant: ${other.status} ${other.text.slice(0, 120)}`);
    }
    expect(wrong).toEqual([]);
    // Nothing another tenant did reached acme's model.
    expect(
      await clients.rpc.inference('modelReady', { name: MODEL, version: '' }, { metadata: bearer(tokens.owner) }),
    ).toEqual({ ready: true });
  });

  it('lets a read-only token change nothing anywhere', async () => {
    const readOnly = (await issue('acme', ['models:read', 'monitoring:read'])).token;
    const before = await acmeState();
    const changed: string[] = [];
    for (const method of METHODS) {
      const rule = method.rule;
      if (
        rule === undefined ||
        rule.scope === 'public' ||
        rule.scope === 'models:read' ||
        rule.scope === 'monitoring:read'
      )
        continue;
      const outcome = await callAs(method, readOnly, fixtures[method.def.path]?.request);
      if (outcome.code !== status.PERMISSION_DENIED)
        changed.push(`${method.def.path}: ${status[outcome.code]} ${outcome.details}`);
    }
    expect(changed).toEqual([]);
    expect(await acmeState()).toBe(before);
  });
});
