import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadMasterKey } from './index.js';

describe('loadMasterKey', () => {
  const dirs: string[] = [];
  const home = () => {
    const dir = mkdtempSync(join(tmpdir(), 'quanta-home-'));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('takes QUANTA_MASTER_KEY (base64 of 32 bytes) first', () => {
    const key = randomBytes(32);
    expect(loadMasterKey({ env: { QUANTA_MASTER_KEY: key.toString('base64') }, home: home() }).equals(key)).toBe(true);
    expect(() =>
      loadMasterKey({ env: { QUANTA_MASTER_KEY: randomBytes(16).toString('base64') }, home: home() }),
    ).toThrow(/QUANTA_MASTER_KEY must hold 32 bytes.*got 16 bytes/);
  });

  it('reads QUANTA_MASTER_KEY_FILE as base64 text or 32 raw bytes', () => {
    const dir = home();
    const key = randomBytes(32);
    writeFileSync(join(dir, 'k.txt'), key.toString('base64') + '\n');
    writeFileSync(join(dir, 'k.bin'), key);
    expect(loadMasterKey({ env: { QUANTA_MASTER_KEY_FILE: join(dir, 'k.txt') }, home: dir }).equals(key)).toBe(true);
    expect(loadMasterKey({ env: { QUANTA_MASTER_KEY_FILE: join(dir, 'k.bin') }, home: dir }).equals(key)).toBe(true);
  });

  it('generates a development key once, mode 0600, with a warning', () => {
    const dir = join(home(), 'nested');
    const warnings: string[] = [];
    const first = loadMasterKey({ env: {}, home: dir, logger: { warn: (m) => warnings.push(m) } });
    expect(first.length).toBe(32);
    expect(statSync(join(dir, 'master.key')).mode & 0o777).toBe(0o600);
    expect(Buffer.from(readFileSync(join(dir, 'master.key'), 'utf8').trim(), 'base64').equals(first)).toBe(true);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/generated a development master key in .*master\.key/);
    expect(loadMasterKey({ env: {}, home: dir, logger: { warn: (m) => warnings.push(m) } }).equals(first)).toBe(true);
    expect(warnings).toHaveLength(1);
  });

  it('refuses to invent a key in production', () => {
    expect(() => loadMasterKey({ env: { NODE_ENV: 'production' }, home: home() })).toThrow(
      /no master key: set QUANTA_MASTER_KEY/,
    );
  });
});
