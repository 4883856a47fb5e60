// `quanta keys config --min-decryption-version` refuses while stored models need the old key
// version, `quanta models rewrap` moves them, and `quanta audit` shows who did all of it, against
// real crypto, registry and monitoring processes.
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCnn, buildMlp } from '@quanta/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditLine } from './audit.js';
import { ServiceProcesses, type Run } from '../testing/services.js';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let home: string;
let services: ServiceProcesses;
const quanta = (args: string[]): Promise<Run> => services.quanta(args);

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'quanta-cli-audit-'));
  services = new ServiceProcesses(home);
  const { env } = services;
  env['QUANTA_CRYPTO_ADDR'] = await services.start('crypto', { QUANTA_CRYPTO_PORT: '0' });
  const [registry, monitoring] = await Promise.all([
    services.start('model-registry', { QUANTA_REGISTRY_PORT: '0', QUANTA_CRYPTO_ADDR: env['QUANTA_CRYPTO_ADDR'] }),
    services.start('monitoring', {
      QUANTA_MONITORING_PORT: '0',
      QUANTA_MONITORING_HTTP_PORT: '0',
      QUANTA_CRYPTO_ADDR: env['QUANTA_CRYPTO_ADDR'],
    }),
  ]);
  env['QUANTA_REGISTRY_ADDR'] = registry;
  env['QUANTA_MONITORING_ADDR'] = monitoring;
}, 240_000);

afterAll(async () => {
  await services.stop();
  await rm(home, { recursive: true, force: true });
});

describe('rotate, rewrap, raise min_decryption_version, and the audit of it all', () => {
  it('refuses to strand stored models, rewraps them, then every version still downloads', async () => {
    const models = { mlp: Buffer.from(buildMlp({ seed: 11 })), cnn: Buffer.from(buildCnn({ seed: 12 })) };
    for (const [name, bytes] of Object.entries(models)) {
      const file = join(home, `${name}.onnx`);
      await writeFile(file, bytes);
      expect((await quanta(['models', 'push', file, '--name', name])).code).toBe(0);
    }
    expect((await quanta(['keys', 'rotate', 'model-registry'])).stdout).toContain('version 2 is now primary');

    const refused = await quanta(['keys', 'config', 'model-registry', '--min-decryption-version', '2']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(
      'refused: 2 model version(s) (2 stored file(s)) still need key "model-registry" below version 2; ' +
        'run `quanta models rewrap` first',
    );
    expect(JSON.parse((await quanta(['keys', 'show', 'model-registry', '--json'])).stdout)).toMatchObject({
      config: { minDecryptionVersion: 1 },
    });

    const rewrap = await quanta(['models', 'rewrap', '--json']);
    expect(rewrap.code).toBe(0);
    expect(JSON.parse(rewrap.stdout)).toMatchObject({
      done: 2,
      total: 2,
      rewrapped: 2,
      keyName: 'model-registry',
      keyVersion: 2,
    });
    expect((await quanta(['models', 'rewrap'])).stdout).toBe(
      'rewrapped 0 of 2 stored files under "model-registry" v2 (2 were already current)\n',
    );

    const raised = await quanta(['keys', 'config', 'model-registry', '--min-decryption-version', '2']);
    expect(raised.stderr).toBe('');
    expect(raised.code).toBe(0);
    for (const [name, bytes] of Object.entries(models)) {
      const out = join(home, `${name}.pulled`);
      expect((await quanta(['models', 'pull', `${name}:1`, '--out', out])).code).toBe(0);
      expect(sha256(await readFile(out))).toBe(sha256(bytes));
    }
  }, 120_000);

  it('quanta audit merges the registry, monitoring and crypto trails by time, with filters', async () => {
    expect(
      (await quanta(['alerts', 'create', 'slow', '--model', 'mlp', '--metric', 'p99', '--threshold', '20000'])).code,
    ).toBe(0);
    const all = await quanta(['audit', '--json']);
    expect(all.stderr).toBe('');
    const lines = JSON.parse(all.stdout) as AuditLine[];
    const seen = lines.map((l) => `${l.service} ${l.action} ${l.resource} ${l.outcome}`);
    expect(seen).toEqual(
      expect.arrayContaining([
        'registry UploadVersion mlp:1 ok',
        'registry UploadVersion cnn:1 ok',
        'registry RewrapDataKeys data-keys/model-registry ok',
        'monitoring CreateAlertRule alert-rule/slow ok',
        'crypto rotate key/model-registry v2 ok',
      ]),
    );
    expect([...lines].sort((a, b) => b.time.localeCompare(a.time))).toEqual(lines);
    expect(lines.every((l) => l.subject === 'admin')).toBe(true);

    const text = await quanta(['audit', '--service', 'registry', '--since', '1h', '--action', 'RewrapDataKeys']);
    expect(text.stdout).toMatch(/^TIME\s+SERVICE\s+TENANT\s+SUBJECT\s+ACTION\s+RESOURCE\s+OUTCOME\s+TRACE\n/);
    expect(text.stdout.trim().split('\n')).toHaveLength(3);
    expect((await quanta(['audit', '--subject', 'nobody'])).stdout).toBe('no audit events\n');
    const bad = await quanta(['audit', '--since', 'yesterday-ish']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--since "yesterday-ish" is neither a duration');
  }, 60_000);
});
