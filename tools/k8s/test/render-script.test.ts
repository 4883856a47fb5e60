import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { describeObject, fileNameOf, parseManifests } from '../src/manifests.js';
import { RENDERED_HEADER } from '../src/render.js';
import { EXPECTED_OBJECTS } from '../src/testing/overlays.js';

const root = join(import.meta.dirname, '..', '..', '..');
const main = join(import.meta.dirname, '..', 'src', 'main.ts');
const run = promisify(execFile);

interface Result {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function exec(file: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<Result> {
  try {
    const { stdout, stderr } = await run(file, args, { cwd: options.cwd, env: options.env ?? process.env });
    return { code: 0, stdout, stderr };
  } catch (error: unknown) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** `npm run k8s:render -- ARGS`, typed in `cwd` (npm runs the script from the root, INIT_CWD = cwd). */
const render = (args: string[], cwd: string = root): Promise<Result> =>
  exec('npm', ['--prefix', root, 'run', '--silent', 'k8s:render', '--', ...args], { cwd });

/** main.ts run directly by node, with the environment given (e.g. a PATH without kubectl). */
const renderWith = (args: string[], env: NodeJS.ProcessEnv): Promise<Result> =>
  exec(process.execPath, ['--conditions=@quanta/source', '--import', 'tsx', main, ...args], { cwd: root, env });

const EXPECTED_FILES = EXPECTED_OBJECTS.map((o, i) => {
  const [kind = '', name = ''] = o.split(' ');
  return fileNameOf({ apiVersion: 'v1', kind, metadata: { name } }, i, EXPECTED_OBJECTS.length);
});

describe('npm run k8s:render', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'quanta-k8s-render-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('writes one file per object of the default overlay, in apply order', async () => {
    const out = join(scratch, 'default');
    const result = await render(['--out', out]);
    expect(result.stderr).not.toContain('k8s:render');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`wrote ${EXPECTED_OBJECTS.length} objects to ${out}\n`);
    expect(EXPECTED_FILES[0]).toBe('01-namespace-quanta.yaml');
    expect(readdirSync(out).sort()).toEqual([...EXPECTED_FILES].sort());
    for (const [i, file] of EXPECTED_FILES.entries()) {
      const text = readFileSync(join(out, file), 'utf8');
      expect(
        text.startsWith(
          `${RENDERED_HEADER} from deploy/kubernetes/overlays/default (${EXPECTED_OBJECTS[i]}); edit the sources`,
        ),
      ).toBe(true);
      const objects = parseManifests(text);
      expect(objects.map((r) => describeObject(r.object))).toEqual([EXPECTED_OBJECTS[i]]);
    }
    const deployment = parseManifests(readFileSync(join(out, '10-deployment-crypto.yaml'), 'utf8'))[0]!.object;
    expect(deployment.metadata.namespace).toBe('quanta');
    expect(JSON.stringify(deployment)).toContain('"image":"quanta:0.1.0"');
  });

  it('reads --out from where it was typed, and replaces what an earlier render wrote but nothing else', async () => {
    const out = join(scratch, 'rerender');
    expect((await render(['--out', 'rerender'], scratch)).code).toBe(0);
    writeFileSync(
      join(out, '99-deployment-gone.yaml'),
      `${RENDERED_HEADER} from somewhere (Deployment gone); edit the sources, not this file.\nkind: Deployment\n`,
    );
    writeFileSync(join(out, 'my-notes.yaml'), 'mine: true\n');
    const result = await render(['--out', out, '--overlay', 'production']);
    expect(result.code).toBe(0);
    expect(readdirSync(out).sort()).toEqual([...EXPECTED_FILES, 'my-notes.yaml'].sort());
    expect(readFileSync(join(out, '10-deployment-crypto.yaml'), 'utf8')).toContain(
      'image: registry.example.com/quanta:0.1.0',
    );
  });

  it('fails with one line when kubectl is missing', async () => {
    const empty = mkdtempSync(join(scratch, 'no-kubectl-'));
    const result = await renderWith(['--out', join(scratch, 'never')], { PATH: empty, HOME: process.env['HOME'] });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      'k8s:render: kubectl (1.27 or later, with its built-in kustomize) renders the manifests, ' +
        'and "kubectl" was not found; install kubectl or set KUBECTL to its path\n',
    );
    expect(readdirSync(scratch)).not.toContain('never');
  });

  it('says what is wrong with its arguments', async () => {
    const noOut = await renderWith([], process.env);
    expect(noOut.code).toBe(2);
    expect(noOut.stderr.split('\n')[0]).toBe('k8s:render: --out DIR is required');
    const badOverlay = await renderWith(['--out', join(scratch, 'x'), '--overlay', 'staging'], process.env);
    expect(badOverlay.code).toBe(1);
    expect(badOverlay.stderr).toBe(
      'k8s:render: overlay "staging": ' +
        'neither deploy/kubernetes/overlays/staging nor a folder with a kustomization.yaml\n',
    );
  });
});
