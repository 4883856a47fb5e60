import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const cli = join(root, 'tools/cli/bin/quanta.mjs');

let home: string;
let server: ChildProcess;
let address: string;

/** The real crypto service as its own process (as `npx nx serve crypto` runs it), on a free port. */
beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'quanta-cli-crypto-'));
  server = spawn(process.execPath, ['--conditions=@quanta/source', '--import', 'tsx', 'src/main.ts'], {
    cwd: join(root, 'services/crypto'),
    env: {
      ...process.env,
      QUANTA_HOME: home,
      QUANTA_CRYPTO_PORT: '0',
      QUANTA_DATABASE_URL: '',
      QUANTA_MASTER_KEY: randomBytes(32).toString('base64'),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  address = await new Promise<string>((resolvePort, reject) => {
    server.once('exit', (code) => reject(new Error(`crypto service exited with ${code} before listening`)));
    createInterface({ input: server.stdout! }).on('line', (line) => {
      const match = /listening on (127\.0\.0\.1:\d+)/.exec(line);
      if (match?.[1] !== undefined) resolvePort(match[1]);
    });
  });
}, 120_000);

afterAll(async () => {
  if (server.exitCode === null) {
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    await exited;
  }
  await rm(home, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** Runs the real `quanta` command; stdin from a file path or a buffer. */
function quanta(
  args: string[],
  options: { stdinFile?: string; stdin?: Buffer | string; token?: string } = {},
): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, QUANTA_HOME: home, QUANTA_CRYPTO_ADDR: address };
  delete env['QUANTA_TOKEN'];
  if (options.token !== undefined) env['QUANTA_TOKEN'] = options.token;
  const child = spawn(process.execPath, [cli, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.on('error', () => undefined); // a command that does not read stdin may exit before we finish writing it
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => err.push(c));
  if (options.stdinFile !== undefined) createReadStream(options.stdinFile).pipe(child.stdin);
  else child.stdin.end(options.stdin ?? '');
  return new Promise((resolveRun) =>
    child.on('close', (code) =>
      resolveRun({ code: code ?? -1, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }),
    ),
  );
}

// Every step starts the real `quanta` command (a node process or two): slow on a busy machine.
describe('quanta keys / encrypt / decrypt / tokens against a real crypto service', { timeout: 300_000 }, () => {
  it('round-trips a binary file through encrypt and decrypt (streaming, with associated data)', async () => {
    const created = await quanta(['keys', 'create', 'files', '--json']);
    expect(created.stderr).toBe('');
    expect(JSON.parse(created.stdout.toString())).toMatchObject({
      name: 'files',
      tenant: 'default',
      type: 'KEY_TYPE_AES256_GCM',
      latestVersion: 1,
    });

    const plain = randomBytes(3 * 1024 * 1024 + 123);
    plain.write('\0\r\n\x1a binary-safe', 1000, 'latin1');
    await writeFile(join(home, 'in.bin'), plain);
    const enc = await quanta(['encrypt', '--key', 'files', '--aad', 'file=in.bin'], {
      stdinFile: join(home, 'in.bin'),
    });
    expect([enc.code, enc.stderr]).toEqual([0, '']);
    expect(enc.stdout[0]).toBe(0x02); // the streaming format: the CLI never held the file whole
    expect(enc.stdout.includes(plain.subarray(0, 64))).toBe(false);
    await writeFile(join(home, 'ct.bin'), enc.stdout);

    const dec = await quanta(['decrypt', '--key', 'files', '--aad', 'file=in.bin'], {
      stdinFile: join(home, 'ct.bin'),
    });
    expect([dec.code, dec.stderr]).toEqual([0, '']);
    expect(dec.stdout.equals(plain)).toBe(true);

    const wrongAad = await quanta(['decrypt', '--key', 'files', '--aad', 'other'], { stdinFile: join(home, 'ct.bin') });
    expect(wrongAad.code).toBe(1);
    expect(wrongAad.stderr).toBe('quanta: INVALID_ARGUMENT: ciphertext is invalid or was not made with this key\n');
  });

  it('reads and writes Fernet tokens as text, interoperable with Python', async () => {
    const pyKey = execFileSync(
      'python3',
      ['-c', 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'],
      { encoding: 'utf8' },
    );
    const imported = await quanta(['keys', 'import', 'legacy', '--type', 'fernet'], { stdin: pyKey });
    expect([imported.code, imported.stdout.toString()]).toEqual([
      0,
      'created key "legacy" (fernet, version 1)\n'.replace('created', 'imported'),
    ]);

    const enc = await quanta(['encrypt', '--key', 'legacy'], { stdin: 'seed-era secret\n' });
    expect(enc.code).toBe(0);
    const token = enc.stdout.toString();
    expect(token).toMatch(/^gAAAAA[A-Za-z0-9_-]+=*\n$/);
    const fromPython = execFileSync(
      'python3',
      [
        '-c',
        [
          'import sys',
          'from cryptography.fernet import Fernet',
          'sys.stdout.write(Fernet(sys.argv[1].encode()).decrypt(sys.stdin.read().strip().encode()).decode())',
        ].join('\n'),
        pyKey.trim(),
      ],
      {
        input: token,
        encoding: 'utf8',
      },
    );
    expect(fromPython).toBe('seed-era secret\n');

    const dec = await quanta(['decrypt', '--key', 'legacy'], { stdin: token });
    expect([dec.code, dec.stdout.toString()]).toEqual([0, 'seed-era secret\n']);
  });

  it('rotates, shows, configures and deletes keys, and issues scoped tokens', async () => {
    await quanta(['keys', 'create', 'temp', '--type', 'chacha20-poly1305']);
    const oldCt = (await quanta(['encrypt', '--key', 'temp'], { stdin: 'v1 data' })).stdout;
    const rotated = await quanta(['keys', 'rotate', 'temp', '--json']);
    expect(JSON.parse(rotated.stdout.toString())).toMatchObject({ latestVersion: 2 });
    await writeFile(join(home, 'old.bin'), oldCt);
    expect((await quanta(['decrypt', '--key', 'temp'], { stdinFile: join(home, 'old.bin') })).stdout.toString()).toBe(
      'v1 data',
    );

    const shown = (await quanta(['keys', 'show', 'temp'])).stdout.toString();
    expect(shown).toMatch(/type\s+chacha20-poly1305/);
    expect(shown).toMatch(/v1 .*\n\s+v2 /);
    const listed = JSON.parse((await quanta(['keys', 'list', '--json'])).stdout.toString()) as { name: string }[];
    expect(listed.map((k) => k.name)).toEqual(expect.arrayContaining(['files', 'legacy', 'temp']));

    const refused = await quanta(['keys', 'delete', 'temp']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^quanta: FAILED_PRECONDITION: .*deletion/);
    await quanta(['keys', 'config', 'temp', '--deletion-allowed', 'true']);
    expect((await quanta(['keys', 'delete', 'temp'])).code).toBe(0);
    const gone = await quanta(['keys', 'show', 'temp']);
    expect([gone.code, gone.stderr]).toEqual([1, expect.stringMatching(/^quanta: NOT_FOUND: /)]);

    const issued = await quanta([
      'tokens',
      'issue',
      '--tenant',
      'acme',
      '--scopes',
      'keys:use',
      '--ttl',
      '1h',
      '--json',
    ]);
    const body = JSON.parse(issued.stdout.toString()) as { token: string; expireTime: string; scopes: string[] };
    expect(body.scopes).toEqual(['keys:use']);
    expect(Date.parse(body.expireTime) - Date.now()).toBeGreaterThan(3500_000);
    // The token works for data but not for key management, and lives in its own tenant.
    const denied = await quanta(['keys', 'list'], { token: body.token });
    expect([denied.code, denied.stderr]).toEqual([
      1,
      expect.stringMatching(/^quanta: PERMISSION_DENIED: .*keys:admin/),
    ]);
    const foreign = await quanta(['encrypt', '--key', 'files'], { token: body.token, stdin: 'x' });
    expect([foreign.code, foreign.stderr]).toEqual([1, expect.stringMatching(/^quanta: NOT_FOUND: /)]);
    expect((await readFile(join(home, 'admin.token'), 'utf8')).split('.')).toHaveLength(3);
  });
});
