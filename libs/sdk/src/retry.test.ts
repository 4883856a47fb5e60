import { status } from '@grpc/grpc-js';
import { crypto, health, inference, monitoring, registry } from '@quanta/contracts';
import { describe, expect, it } from 'vitest';
import { backoffMs, DEFAULT_RETRY, IDEMPOTENT_METHODS, isRetryable, RETRY_POLICY } from './retry.js';

const definitions = [
  inference.GRPCInferenceServiceService,
  registry.RegistryServiceService,
  crypto.CryptoServiceService,
  monitoring.MonitoringServiceService,
  health.HealthService,
];
const paths = new Set(definitions.flatMap((d) => Object.values(d).map((m: { path: string }) => m.path)));

describe('RETRY_POLICY', () => {
  it('has a rule and a reason for every gRPC status code', () => {
    const codes = Object.values(status).filter((v): v is number => typeof v === 'number');
    expect(codes).toHaveLength(17);
    for (const code of codes) {
      const entry = RETRY_POLICY[code as status];
      expect(entry, status[code]).toBeDefined();
      expect(entry.reason.length).toBeGreaterThan(10);
    }
  });

  it('names only methods that exist, and only reads', () => {
    for (const method of IDEMPOTENT_METHODS) expect(paths, method).toContain(method);
    for (const write of ['ModelInfer', 'SetAlias', 'CreateModel', 'Encrypt', 'Ingest', 'IssueToken']) {
      expect(
        [...IDEMPOTENT_METHODS].some((m) => m.endsWith(`/${write}`)),
        write,
      ).toBe(false);
    }
  });

  it('retries UNAVAILABLE for reads always, for ModelInfer only when it was never sent', () => {
    const infer = '/inference.GRPCInferenceService/ModelInfer';
    const read = '/quanta.registry.v1.RegistryService/GetModel';
    const fromServer = { code: status.UNAVAILABLE, details: 'server shutting down' };
    const unsent = {
      code: status.UNAVAILABLE,
      details: 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1',
    };
    expect(isRetryable(read, fromServer)).toBe(true);
    expect(isRetryable(infer, fromServer)).toBe(false);
    expect(isRetryable(infer, unsent)).toBe(true);
    expect(isRetryable(read, { code: status.ABORTED })).toBe(true);
    expect(isRetryable(infer, { code: status.ABORTED })).toBe(false);
    expect(isRetryable(read, { code: status.INTERNAL })).toBe(false);
    expect(isRetryable(read, { code: status.DEADLINE_EXCEEDED })).toBe(false);
  });

  it('backs off exponentially up to the cap, with jitter between half and all of it', () => {
    expect([1, 2, 3, 4, 5, 6].map((a) => backoffMs(a, DEFAULT_RETRY, () => 1))).toEqual([
      100, 200, 400, 800, 1600, 2000,
    ]);
    expect([1, 2, 3].map((a) => backoffMs(a, DEFAULT_RETRY, () => 0))).toEqual([50, 100, 200]);
  });
});
