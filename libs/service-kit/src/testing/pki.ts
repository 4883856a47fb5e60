import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestPkiOptions {
  /** The temporary folder's name starts with this. */
  readonly prefix: string;
  /** The CA's common name. */
  readonly caName: string;
  /** For each certificate to issue, by file name: its subjectAltName line, e.g. `subjectAltName=DNS:localhost`. */
  readonly certs: Readonly<Record<string, string>>;
}

/**
 * A throwaway PKI made with openssl in a fresh temporary folder: a CA (`ca.pem`, `ca.key`) and, for
 * each entry of `certs`, `<name>.pem` and `<name>.key` (P-256, CN=<name>) signed by it, valid for a
 * day. Resolves with the folder; the caller removes it.
 */
export async function createTestPki(options: TestPkiOptions): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), options.prefix));
  const openssl = (...args: string[]) => run('openssl', args, { cwd: dir });
  const p256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(
    'req',
    '-x509',
    ...p256,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '1',
    '-subj',
    `/CN=${options.caName}`,
  );
  for (const [name, san] of Object.entries(options.certs)) {
    await openssl('req', ...p256, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    await writeFile(join(dir, `${name}.ext`), `${san}\n`);
    await openssl(
      ...['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial'],
      ...['-out', `${name}.pem`, '-days', '1', '-extfile', `${name}.ext`],
    );
  }
  return dir;
}
