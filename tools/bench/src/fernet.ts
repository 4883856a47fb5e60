/**
 * Fernet and streaming AES-256-GCM throughput: Quanta's implementation against python `cryptography`
 * (spawned in the same run, same machine) and against raw node:crypto.
 *   npm run bench -w @quanta/bench            (or: npx tsx --conditions=@quanta/source tools/bench/src/fernet.ts)
 * BENCH_SECONDS (default 1) sets the time per measurement, BENCH_ROUNDS (default 3) how many alternating rounds
 * (best kept), BENCH_ONLY=fernet|streaming runs one part.
 */
import { execFileSync } from 'node:child_process';
import { createCipheriv, randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import {
  createDecryptStream,
  createEncryptStream,
  FernetKey,
  fernetDecrypt,
  parseFernetKey,
} from '@quanta/crypto/core';
import { cpuSeconds, formatRate, markdownTable, opsPerSecond } from './measure.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? '1');
const SIZES = [64, 1024, 64 * 1024];
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? '3');
const STREAM_ROUNDS = 2 * ROUNDS;
const here = dirname(fileURLToPath(import.meta.url));

interface PythonResult {
  results: { size: number; encrypt: number; decrypt: number }[];
}

function label(size: number): string {
  return size >= 1024 ? `${size / 1024} KiB` : `${size} B`;
}

function pythonRates(key: string, size: number): { encrypt: number; decrypt: number } {
  const out = execFileSync('python3', [join(here, '../python/fernet_bench.py'), String(SECONDS), key, String(size)], {
    encoding: 'utf8',
  });
  return (JSON.parse(out) as PythonResult).results[0]!;
}

function fernetTable(): string {
  const keyText = execFileSync(
    'python3',
    ['-c', 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'],
    { encoding: 'utf8' },
  ).trim();
  // The same key on both sides.
  const key = new FernetKey(parseFernetKey(keyText));
  const now = () => Math.floor(Date.now() / 1000);
  const best = new Map<number, { enc: number; dec: number; pyEnc: number; pyDec: number }>();
  // Rounds alternate python and node cell by cell, best of each kept: the machine is shared, so
  // a busy moment should not land on one side only.
  for (let round = 0; round < ROUNDS; round++) {
    for (const size of SIZES) {
      const msg = randomBytes(size);
      const token = key.encrypt(msg, now());
      if (!fernetDecrypt([key], token, now()).plaintext.equals(msg)) throw new Error('round trip failed');
      const p = pythonRates(keyText, size);
      const enc = opsPerSecond(() => key.encrypt(msg, now()), SECONDS);
      const dec = opsPerSecond(() => fernetDecrypt([key], token, now()), SECONDS);
      const prev = best.get(size) ?? { enc: 0, dec: 0, pyEnc: 0, pyDec: 0 };
      best.set(size, {
        enc: Math.max(prev.enc, enc),
        dec: Math.max(prev.dec, dec),
        pyEnc: Math.max(prev.pyEnc, p.encrypt),
        pyDec: Math.max(prev.pyDec, p.decrypt),
      });
    }
  }
  const rows = SIZES.map((size) => {
    const b = best.get(size)!;
    return [
      label(size),
      formatRate(b.enc),
      formatRate(b.pyEnc),
      `${(b.enc / b.pyEnc).toFixed(2)}×`,
      formatRate(b.dec),
      formatRate(b.pyDec),
      `${(b.dec / b.pyDec).toFixed(2)}×`,
    ];
  });
  return markdownTable(
    [
      'payload',
      'Quanta encrypt ops/CPU-s',
      'Python encrypt ops/CPU-s',
      'ratio',
      'Quanta decrypt ops/CPU-s',
      'Python decrypt ops/CPU-s',
      'ratio',
    ],
    rows,
  );
}

/**
 * CPU seconds `fn` takes, with no GC forced around it: each run pays whatever collection falls into
 * it, and the best of several interleaved rounds is kept. A forced GC frees hundreds of MiB of buffers
 * and makes the figures swing between runs on a shared machine (see tools/bench/README.md).
 */
async function timed(fn: () => Promise<void> | void): Promise<number> {
  const start = cpuSeconds();
  await fn();
  return cpuSeconds() - start;
}

async function timeStream(
  make: () => NodeJS.ReadWriteStream,
  chunks: Buffer[],
): Promise<{ seconds: number; out: number }> {
  let out = 0;
  const seconds = await timed(() =>
    pipeline(
      Readable.from(chunks),
      make(),
      new Writable({
        write(c: Buffer, _e, cb) {
          out += c.length;
          cb();
        },
      }),
    ),
  );
  return { seconds, out };
}

async function streamingTable(): Promise<string> {
  const TOTAL = 64 * 1024 * 1024;
  const CHUNK = 1024 * 1024;
  const source = randomBytes(CHUNK);
  const chunks = Array.from({ length: TOTAL / CHUNK }, () => source);
  const key = randomBytes(32);
  const aad = Buffer.from('bench');
  const mbps = (s: number) => TOTAL / 1048576 / s;

  // Raw node:crypto: one cipher over the same data, nothing else (no framing, no streams), fed
  // 1 MiB at a time, and 64 KiB at a time (the stream's segment size: same allocation pattern).
  const rawRun = (piece: number) =>
    timed(() => {
      const cipher = createCipheriv('aes-256-gcm', key, randomBytes(12));
      for (const c of chunks) for (let o = 0; o < c.length; o += piece) cipher.update(c.subarray(o, o + piece));
      cipher.final();
    });
  const sealedChunks: Buffer[] = [];
  await pipeline(
    Readable.from(chunks),
    createEncryptStream('aes256-gcm', key, 1, aad),
    new Writable({
      write(c: Buffer, _e, cb) {
        sealedChunks.push(c);
        cb();
      },
    }),
  );
  const encRun = async () => (await timeStream(() => createEncryptStream('aes256-gcm', key, 1, aad), chunks)).seconds;
  const decRun = async () => {
    const r = await timeStream(
      () => createDecryptStream({ algorithm: 'aes256-gcm', aad, keyFor: () => key }),
      sealedChunks,
    );
    if (r.out !== TOTAL) throw new Error('stream round trip lost bytes');
    return r.seconds;
  };
  let raw1m = Infinity;
  let raw64k = Infinity;
  let enc = Infinity;
  let dec = Infinity;
  for (let round = 0; round < STREAM_ROUNDS; round++) {
    raw1m = Math.min(raw1m, await rawRun(CHUNK));
    raw64k = Math.min(raw64k, await rawRun(64 * 1024));
    enc = Math.min(enc, await encRun());
    dec = Math.min(dec, await decRun());
  }
  const raw = Math.min(raw1m, raw64k);
  const pct = (s: number) => `${((raw / s) * 100).toFixed(0)}%`;
  return markdownTable(
    ['64 MiB in 1 MiB chunks', 'MiB per CPU-second', 'vs the faster raw'],
    [
      ['raw node:crypto aes-256-gcm, one cipher, update() per 1 MiB', mbps(raw1m).toFixed(0), pct(raw1m)],
      ['raw node:crypto aes-256-gcm, one cipher, update() per 64 KiB', mbps(raw64k).toFixed(0), pct(raw64k)],
      ['Quanta streaming encrypt (Transform, 64 KiB segments)', mbps(enc).toFixed(0), pct(enc)],
      ['Quanta streaming decrypt (Transform, 64 KiB segments)', mbps(dec).toFixed(0), pct(dec)],
    ],
  );
}

const only = process.env.BENCH_ONLY; // 'fernet' or 'streaming' to run one part
if (only !== 'streaming') {
  console.log(
    `## Fernet (best of ${ROUNDS} alternating rounds of ${SECONDS} s, node ${process.version}, ` +
      'python cryptography in the same run)\n',
  );
  console.log(fernetTable());
}
if (only !== 'fernet') {
  console.log(`\n## Streaming AES-256-GCM (best of ${STREAM_ROUNDS} interleaved rounds, CPU time)\n`);
  console.log(await streamingTable());
}
