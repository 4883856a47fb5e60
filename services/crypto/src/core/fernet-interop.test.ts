import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeFernetKey, FernetKey, fernetDecrypt, parseFernetKey } from './fernet.js';

/** Runs a snippet in the real python3 `cryptography` package; JSON in on stdin, JSON out on stdout. */
function python(script: string, input: unknown): unknown {
  const out = execFileSync(
    'python3',
    [
      '-c',
      [
        'import sys, json, time, base64',
        'from cryptography.fernet import Fernet, MultiFernet, InvalidToken',
        'args = json.load(sys.stdin)',
        script,
      ].join('\n'),
    ],
    {
      input: JSON.stringify(input),
      encoding: 'utf8',
    },
  );
  return JSON.parse(out);
}

describe('fernet interoperability with python cryptography', () => {
  it('decrypts tokens that Python made, with a key that Python made', () => {
    const made = python(
      [
        'k = Fernet.generate_key()',
        'f = Fernet(k)',
        'msgs = [base64.b64decode(m) for m in args]',
        'print(json.dumps({"key": k.decode(), "tokens": [f.encrypt(m).decode() for m in msgs]}))',
      ].join('\n'),
      ['', 'aGVsbG8=', randomBytes(1000).toString('base64'), randomBytes(70_000).toString('base64')],
    ) as { key: string; tokens: string[] };
    const key = new FernetKey(parseFernetKey(made.key));
    const expected = ['', 'aGVsbG8='];
    const now = Math.floor(Date.now() / 1000);
    expect(fernetDecrypt([key], made.tokens[0]!, now, 60).plaintext.toString('base64')).toBe(expected[0]);
    expect(fernetDecrypt([key], made.tokens[1]!, now, 60).plaintext.toString('base64')).toBe(expected[1]);
    expect(fernetDecrypt([key], made.tokens[2]!, now).plaintext.length).toBe(1000);
    expect(fernetDecrypt([key], made.tokens[3]!, now).plaintext.length).toBe(70_000);
  });

  it('makes tokens that Python decrypts, and Python rotates them keeping the timestamp as we do', () => {
    const raw = randomBytes(32);
    const next = randomBytes(32);
    const messages = [Buffer.alloc(0), Buffer.from('interop ✓'), randomBytes(4097)];
    const now = Math.floor(Date.now() / 1000);
    const tokens = messages.map((m, i) => new FernetKey(raw).encrypt(m, now - 100 * i));
    const back = python(
      [
        'f = Fernet(args["key"].encode())',
        'out = [base64.b64encode(f.decrypt(t.encode(), ttl=3600)).decode() for t in args["tokens"]]',
        'ts = [f.extract_timestamp(t.encode()) for t in args["tokens"]]',
        'rot = MultiFernet([Fernet(args["next"].encode()), f]).rotate(args["tokens"][1].encode()).decode()',
        'print(json.dumps({"plain": out, "ts": ts, "rotated": rot}))',
      ].join('\n'),
      { key: encodeFernetKey(raw), next: encodeFernetKey(next), tokens },
    ) as { plain: string[]; ts: number[]; rotated: string };
    expect(back.plain).toEqual(messages.map((m) => m.toString('base64')));
    expect(back.ts).toEqual([now, now - 100, now - 200]);
    // Python's rotation decrypts here with the new key, and keeps the original timestamp.
    const rotated = fernetDecrypt([new FernetKey(next)], back.rotated, now);
    expect(rotated.plaintext.equals(messages[1]!)).toBe(true);
    expect(rotated.timestamp).toBe(now - 100);
  });

  it('agrees with Python on which tampered tokens are invalid', () => {
    const raw = randomBytes(32);
    const token = new FernetKey(raw).encrypt(Buffer.from('secret message'), 1_000_000);
    const variants = [
      token,
      token.replace(/=+$/, ''),
      token.slice(0, -4),
      token.slice(0, 20),
      ' ' + token,
      'x' + token.slice(1),
      token.slice(0, 30) + (token[30] === 'A' ? 'B' : 'A') + token.slice(31),
    ];
    const pyOk = python(
      [
        'f = Fernet(args["key"].encode())',
        'res = []',
        'for t in args["tokens"]:',
        '    try:',
        '        f.decrypt_at_time(t.encode(), 10**9, 1000000)',
        '        res.append(True)',
        '    except InvalidToken:',
        '        res.append(False)',
        'print(json.dumps(res))',
      ].join('\n'),
      { key: encodeFernetKey(raw), tokens: variants },
    ) as boolean[];
    const ours = variants.map((t) => {
      try {
        fernetDecrypt([new FernetKey(raw)], t, 1_000_000, 10 ** 9);
        return true;
      } catch {
        return false;
      }
    });
    // Python's decoder skips stray characters (the leading space); ours is strict, so that one may differ.
    expect(ours[0]).toBe(true);
    expect(pyOk[0]).toBe(true);
    expect(ours.slice(1).filter((_, i) => i !== 3)).toEqual(pyOk.slice(1).filter((_, i) => i !== 3));
  });
});
