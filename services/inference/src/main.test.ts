// The process as the dev stack runs it: logs `listening` with its address, serves gRPC, REST and
// Triton's metrics, exits 0 on SIGTERM, and exits 2 with a clear message on bad settings.
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { inference as pb } from '@quanta/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, failure, inferRequest } from './testing/harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const packageDir = resolve(here, '..');
const ARGS = ['--conditions=@quanta/source', '--import', 'tsx', join(here, 'main.ts')];

// Each run starts node with tsx (seconds on a busy machine): generous timeouts.
describe('inference main', { timeout: 120_000 }, () => {
  let home: string;
  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), 'quanta-inference-'));
  });
  afterAll(() => rm(home, { recursive: true, force: true }));

  it('listens on gRPC, REST and metrics, answers, and stops on SIGTERM with exit code 0', async () => {
    const child = spawn(process.execPath, ARGS, {
      cwd: packageDir,
      env: {
        ...process.env,
        QUANTA_HOME: home,
        QUANTA_INFERENCE_PORT: '0',
        QUANTA_INFERENCE_HTTP_PORT: '0',
        QUANTA_INFERENCE_METRICS_PORT: '0',
        QUANTA_INFERENCE_METRICS_PUBLIC: 'true',
        QUANTA_CRYPTO_ADDR: '127.0.0.1:1',
        QUANTA_LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    let address: string | undefined;
    let url: string | undefined;
    let metricsUrl: string | undefined;
    for await (const line of createInterface({ input: child.stdout })) {
      let entry: { msg?: string; address?: string; url?: string };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        continue; // not a log line
      }
      if (entry.msg?.includes('listening') === true) address = entry.address;
      if (entry.msg?.startsWith('KServe v2 REST') === true) url = entry.url;
      if (entry.msg?.startsWith('Triton metrics') === true) metricsUrl = entry.url;
      if (address !== undefined && url !== undefined && metricsUrl !== undefined) break;
    }
    const client = new pb.GRPCInferenceServiceClient(address!, grpc.credentials.createInsecure());
    try {
      expect(await call(client, 'serverLive', {})).toEqual({ live: true });
      // No crypto service to check tokens against: a token-less call is refused, not let through.
      expect((await failure(call(client, 'modelInfer', inferRequest({ modelName: 'mlp' })))).code).toBe(
        grpc.status.UNAUTHENTICATED,
      );
      const live = await fetch(`${url!}/v2/health/live`);
      expect(live.status).toBe(200);
      expect(await live.json()).toEqual({ live: true });
      // No model loaded yet: Triton's families with no series.
      const metrics = await fetch(metricsUrl!);
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toContain('# TYPE nv_inference_request_success counter');
    } finally {
      client.close();
    }
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('exits 2 naming a bad setting', async () => {
    const result = await new Promise<{ code: number; stderr: string }>((done) =>
      execFile(
        process.execPath,
        ARGS,
        { cwd: packageDir, env: { ...process.env, QUANTA_HOME: home, QUANTA_INFERENCE_HTTP_PORT: 'eighty' } },
        (error, _stdout, stderr) =>
          done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stderr }),
      ),
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/QUANTA_INFERENCE_HTTP_PORT|http-port/);
  });
});
