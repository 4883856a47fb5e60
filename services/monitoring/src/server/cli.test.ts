import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../testing/harness.js';
import { T0, ingest, record, startHarness } from '../testing/harness.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
const QUANTA = join(root, 'tools', 'cli', 'bin', 'quanta.mjs');

// Each CLI run starts node with tsx (seconds on a busy machine): generous timeouts.
describe('the quanta CLI against a real monitoring server', { timeout: 120_000 }, () => {
  let h: Harness;
  let home: string;
  let env: NodeJS.ProcessEnv;

  const quanta = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((done) => {
      execFile(process.execPath, [QUANTA, ...args], { env, cwd: root }, (error, stdout, stderr) =>
        done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr }),
      );
    });

  beforeAll(async () => {
    // No crypto service at 127.0.0.1:1: webhook bodies cannot be signed, so they are never sent.
    h = await startHarness({
      targets: [{ name: 'nothing', address: '127.0.0.1:1' }],
      config: { serviceToken: 'no-crypto-here' },
      webhooks: { retry: { firstDelayMs: 10, maxDelayMs: 10, maxAttempts: 2 } },
    });
    home = await mkdtemp(join(tmpdir(), 'quanta-cli-'));
    const reader = await h.token('acme', ['monitoring:read', 'alerts:write']);
    env = {
      ...process.env,
      QUANTA_HOME: home,
      QUANTA_TOKEN: reader,
      QUANTA_MONITORING_ADDR: `127.0.0.1:${h.server.port}`,
    };
    h.now.ms = T0 + 10_000;
    const admin = await h.token('platform', ['admin']);
    await ingest(h.client, admin, [
      Array.from({ length: 50 }, (_, i) =>
        record(T0 + (i % 10) * 1000, { totalUs: 30_000n, statusCode: i < 5 ? 4 : 0 }),
      ),
      Array.from({ length: 20 }, () => record(T0, { model: 'bert' })),
    ]);
  });
  afterAll(async () => {
    await h.close();
    await rm(home, { recursive: true, force: true });
  });

  it('quanta stats MODEL --window --json, and the busiest models without one', async () => {
    const one = await quanta('stats', 'cifar', '--window', '1m', '--json');
    expect(one.stderr).toBe('');
    const stats = JSON.parse(one.stdout) as { model: string; count: number; errorCount: number };
    expect(stats).toMatchObject({ model: 'cifar', count: 50, errorCount: 5 });
    const top = await quanta('stats', '--window', '5m');
    expect(top.code).toBe(0);
    const lines = top.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^MODEL\s+REQUESTS/);
    expect(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 2))).toEqual([
      ['cifar', '50'],
      ['bert', '20'],
    ]);
    const bad = await quanta('stats', 'cifar', '--window', 'soon');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/window "soon" is not a duration/);
  });

  it('quanta stats MODEL shows each version with its route and shadow agreement', async () => {
    const admin = await h.token('platform', ['admin']);
    const at = (i: number): number => T0 + (i % 10) * 1000;
    await ingest(h.client, admin, [
      [
        ...Array.from({ length: 30 }, (_, i) => record(at(i), { model: 'split', version: '1', route: 'primary' })),
        ...Array.from({ length: 10 }, (_, i) => record(at(i), { model: 'split', version: '2', route: 'canary' })),
        ...Array.from({ length: 30 }, (_, i) =>
          record(at(i), {
            model: 'split',
            version: '3',
            route: 'shadow',
            shadow: { primaryVersion: '1', maxAbsError: i % 2 === 0 ? 0.25 : 0.75, top1Rows: 2, top1AgreedRows: 1 },
          }),
        ),
      ],
    ]);
    const json = await quanta('stats', 'split', '--window', '1m', '--json');
    const parsed = JSON.parse(json.stdout) as {
      count: number;
      versions: { version: string; route: string; count: number; shadow?: { compared: number; maxAbsError: number } }[];
    };
    expect(parsed.count).toBe(70);
    expect(parsed.versions.map((v) => [v.version, v.route, v.count])).toEqual([
      ['1', 'primary', 30],
      ['2', 'canary', 10],
      ['3', 'shadow', 30],
    ]);
    const text = (await quanta('stats', 'split', '--window', '1m')).stdout;
    expect(text).toMatch(/^\s+VERSION\s+ROUTE\s+REQUESTS\s+P50 MS\s+P99 MS\s+ERRORS\s+SHADOW AGREEMENT$/m);
    expect(text).toMatch(/^\s+2\s+canary\s+10\s.*\s-$/m);
    expect(text).toMatch(/^\s+3\s+shadow\s+30\s.*30 compared, max err 0\.750, mean 0\.500, top-1 50\.0%$/m);
  });

  it('quanta alerts create|rules|list|watch', async () => {
    const created = await quanta(
      'alerts',
      'create',
      'cifar-slow',
      '--model',
      'cifar',
      '--metric',
      'p99',
      '--threshold',
      '20000',
      '--window',
      '1m',
      '--for',
      '0',
    );
    expect(created.stderr).toBe('');
    expect(created.stdout).toMatch(/created/);
    const rules = JSON.parse((await quanta('alerts', 'rules', '--json')).stdout) as {
      name: string;
      threshold: number;
    }[];
    expect(rules.map((r) => [r.name, r.threshold])).toEqual([['cifar-slow', 20000]]);

    // watch: the snapshot line first, then the changes as the rule is evaluated.
    const watch = spawn(process.execPath, [QUANTA, 'alerts', 'watch', '--json'], {
      env,
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines = createInterface({ input: watch.stdout })[Symbol.asyncIterator]();
    const snapshot = JSON.parse(((await lines.next()).value as string | undefined) ?? '') as { snapshot: unknown[] };
    expect(snapshot).toEqual({ snapshot: [] });
    h.server.alerts.evaluate();
    const pending = JSON.parse(((await lines.next()).value as string | undefined) ?? '') as {
      change: { state: string; ruleName: string };
    };
    const firing = JSON.parse(((await lines.next()).value as string | undefined) ?? '') as {
      change: { state: string };
    };
    expect(pending.change).toMatchObject({ ruleName: 'cifar-slow', state: 1 });
    expect(firing.change.state).toBe(2);
    const exited = new Promise<number | null>((done) => watch.once('exit', (code) => done(code)));
    watch.kill('SIGINT');
    expect(await exited).toBe(0);

    const listed = await quanta('alerts', 'list', '--state', 'firing');
    expect(listed.stdout).toMatch(/cifar-slow\s+cifar:1\s+FIRING/);
    const badState = await quanta('alerts', 'list', '--state', 'burning');
    expect(badState.stderr).toMatch(/--state "burning" is not one of pending, firing, resolved/);
  });

  it('quanta alerts create --webhook, and alerts list shows each delivery', async () => {
    const missingKey = await quanta(
      'alerts',
      'create',
      'bert-hooked',
      '--model',
      'bert',
      '--metric',
      'p99',
      '--threshold',
      '500',
      '--webhook',
      'http://127.0.0.1:9/hook',
    );
    expect(missingKey.code).toBe(2);
    expect(missingKey.stderr).toMatch(/--webhook needs --webhook-key/);
    const created = await quanta(
      'alerts',
      'create',
      'bert-hooked',
      '--model',
      'bert',
      '--metric',
      'p99',
      '--threshold',
      '500',
      '--webhook',
      'http://127.0.0.1:9/hook',
      '--webhook',
      'https://hooks.example.com/b',
      '--webhook-key',
      'hooks',
      '--webhook-skip-resolved',
      '--json',
    );
    expect(created.stderr).toBe('');
    const rule = JSON.parse(created.stdout) as { webhooks: { url: string; hmacKey: string; skipResolved: boolean }[] };
    expect(rule.webhooks).toEqual([
      { url: 'http://127.0.0.1:9/hook', hmacKey: 'hooks', skipResolved: true },
      { url: 'https://hooks.example.com/b', hmacKey: 'hooks', skipResolved: true },
    ]);
    const bad = await quanta(
      'alerts',
      'create',
      'bert-bad',
      '--model',
      'bert',
      '--metric',
      'p99',
      '--threshold',
      '500',
      '--webhook',
      'ftp://x.example/',
      '--webhook-key',
      'hooks',
    );
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/webhook 1: url "ftp:\/\/x.example\/" is not http or https/);

    // bert's 1 ms requests are over 500 µs: the rule fires; its bodies cannot be signed here.
    const watch = spawn(process.execPath, [QUANTA, 'alerts', 'watch', '--rule', 'bert-hooked'], {
      env,
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const watched = createInterface({ input: watch.stdout })[Symbol.asyncIterator]();
    expect((await watched.next()).value).toBe('no pending or firing alerts; watching…');
    h.now.ms = T0 + 10_000;
    h.server.alerts.evaluate();
    await h.server.notifier.idle();
    // watch prints each state once, then each webhook's delivery as it moves on.
    const seen: string[] = [];
    while (seen.filter((l) => / WEBHOOK .* firing FAILED attempt 2: /.test(l)).length < 2)
      seen.push(((await watched.next()).value as string | undefined) ?? '');
    const exited = new Promise<number | null>((done) => watch.once('exit', (code) => done(code)));
    watch.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(seen.filter((l) => /\s(PENDING|FIRING)\s+bert-hooked/.test(l)).map((l) => l.split(/\s+/)[2])).toEqual([
      'PENDING',
      'FIRING',
    ]);
    expect(
      seen.filter((l) =>
        /WEBHOOK\s+bert-hooked\s+bert:1\s+http:\/\/127\.0\.0\.1:9\/hook\s+firing RETRYING attempt 1: not sent/.test(l),
      ),
    ).toHaveLength(1);
    const listed = await quanta('alerts', 'list', '--rule', 'bert-hooked');
    expect(listed.stdout).toMatch(/bert-hooked\s+bert:1\s+FIRING/);
    expect(listed.stdout).toMatch(/WEBHOOK\s+NOTICE\s+DELIVERY\s+ATTEMPTS\s+HTTP/);
    expect(listed.stdout).toMatch(
      /http:\/\/127\.0\.0\.1:9\/hook\s+firing\s+FAILED\s+2\s+-\s+.*not sent, signing failed/,
    );
    const json = JSON.parse((await quanta('alerts', 'list', '--rule', 'bert-hooked', '--json')).stdout) as {
      deliveries: { url: string; state: number; attempts: number; lastError: string }[];
    }[];
    expect(json[0]?.deliveries.map((d) => [d.url, d.state, d.attempts])).toEqual([
      ['http://127.0.0.1:9/hook', 4, 2],
      ['https://hooks.example.com/b', 4, 2],
    ]);
  });

  it('quanta health shows the board and exits 1 when a service is not serving', async () => {
    h.now.ms = T0 + 20_000;
    await h.server.board.checkNow();
    const board = await quanta('health', '--json');
    expect(board.code).toBe(1);
    const services = JSON.parse(board.stdout) as { name: string; status: number; error: string }[];
    expect(services.map((s) => [s.name, s.status])).toEqual([['nothing', 4]]);
    const text = await quanta('health');
    expect(text.stdout).toMatch(/nothing\s+127\.0\.0\.1:1\s+UNREACHABLE/);
  });
});
