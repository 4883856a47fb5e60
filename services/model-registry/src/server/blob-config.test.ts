import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '@quanta/service-kit/testing';
import { startTestS3 } from '../testing/s3.js';
import type { TestS3 } from '../testing/s3.js';

/** Runs the registry until it exits; its exit code and what it wrote to stderr. */
async function runRegistry(env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const merged: NodeJS.ProcessEnv = {
    ...process.env,
    QUANTA_LOG_LEVEL: 'info',
    OTEL_TRACES_EXPORTER: 'none',
    QUANTA_DATABASE_URL: undefined,
    ...env,
  };
  for (const [key, value] of Object.entries(merged)) if (value === undefined) delete merged[key];
  const child = spawn(
    process.execPath,
    ['--conditions=@quanta/source', '--import', 'tsx', join(REPO_ROOT, 'services', 'model-registry', 'src', 'main.ts')],
    {
      cwd: REPO_ROOT,
      env: merged,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  let stdout = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stderr, stdout };
}

/** A port that nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  return typeof address === 'object' && address !== null ? address.port : 0;
}

describe('a bad QUANTA_BLOB_URL stops the registry at start with one line saying why', () => {
  let s3: TestS3;
  let home: string;
  beforeAll(async () => {
    s3 = await startTestS3();
    home = await mkdtemp(join(tmpdir(), 'quanta-blob-config-'));
  });
  afterAll(async () => {
    await s3?.close();
    await rm(home, { recursive: true, force: true });
  });

  const expectOneProblem = (result: { code: number | null; stderr: string; stdout: string }, problem: RegExp): void => {
    expect(result.code, result.stderr + result.stdout).toBe(2);
    const lines = result.stderr.trimEnd().split('\n');
    // service-kit's configuration report: a heading and one line per problem, no stack trace.
    expect(lines, result.stderr).toHaveLength(2);
    expect(lines[0]).toBe('model-registry: invalid configuration:');
    expect(lines[1]).toMatch(/^ {2}- QUANTA_BLOB_URL: /);
    expect(lines[1]).toMatch(problem);
    expect(result.stdout).not.toMatch(/listening/);
  };
  const base = (): NodeJS.ProcessEnv => ({ QUANTA_HOME: home, QUANTA_REGISTRY_PORT: '0', ...s3.env });

  it('an unknown scheme or a malformed URL', async () => {
    expectOneProblem(
      await runRegistry({ ...base(), QUANTA_BLOB_URL: 'gs://models/quanta' }),
      /unknown scheme "gs"; use file:\/\/\/ABSOLUTE\/PATH or s3:\/\/BUCKET/,
    );
    expectOneProblem(
      await runRegistry({ ...base(), QUANTA_BLOB_URL: `${s3.blobUrl('p')}&forcePathStyle=true` }),
      /unknown parameter "forcePathStyle"/,
    );
  }, 60_000);

  it('a bucket that does not exist', async () => {
    const url = s3.blobUrl('p').replace(`s3://${s3.bucket}/`, 's3://no-such-bucket/');
    expectOneProblem(
      await runRegistry({ ...base(), QUANTA_BLOB_URL: url }),
      new RegExp(`bucket "no-such-bucket" does not exist at ${s3.endpoint}$`),
    );
  }, 60_000);

  it('credentials the store refuses', async () => {
    expectOneProblem(
      await runRegistry({
        ...base(),
        QUANTA_BLOB_URL: s3.blobUrl('p'),
        AWS_ACCESS_KEY_ID: 'S3RVER',
        AWS_SECRET_ACCESS_KEY: 'wrong',
      }),
      new RegExp(
        `${s3.endpoint} refused the credentials \\(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY\\) for bucket ` +
          `"quanta": SignatureDoesNotMatch`,
      ),
    );
    expectOneProblem(
      await runRegistry({
        ...base(),
        QUANTA_BLOB_URL: s3.blobUrl('p'),
        AWS_ACCESS_KEY_ID: 'nobody',
        AWS_SECRET_ACCESS_KEY: 'S3RVER',
      }),
      /refused the credentials .*: InvalidAccessKeyId/,
    );
  }, 60_000);

  it('an endpoint where nothing listens', async () => {
    const endpoint = `http://127.0.0.1:${await closedPort()}`;
    const url = `s3://quanta/p?endpoint=${endpoint}&region=us-east-1&force_path_style=true`;
    expectOneProblem(
      await runRegistry({ ...base(), QUANTA_BLOB_URL: url }),
      new RegExp(`cannot reach the object store at ${endpoint}: ECONNREFUSED`),
    );
  }, 60_000);
});
