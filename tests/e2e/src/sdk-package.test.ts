// @quanta/sdk as a partner gets it: packed with `npm pack` (its prepack builds dist/), installed
// with `npm install <tarball>` into a new project outside the repository (so nothing but the
// tarball and public npm packages can be resolved), type-checked there by TypeScript with the
// package's declarations checked too, and run with plain node against a live stack: push, deploy,
// infer, encrypt, decrypt, stats. Inference answers are checked against onnxruntime run here.
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative } from 'node:path';
import { buildMlp } from '@quanta/onnx';
import { createQuantaClient } from '@quanta/sdk';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reference } from './clients.js';
import { REPO_ROOT, startStack, type Stack } from './stack.js';

const SDK_DIR = join(REPO_ROOT, 'libs', 'sdk');
const TSC = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const PARTNER = join(REPO_ROOT, 'tests', 'e2e', 'fixtures', 'sdk-partner', 'partner.ts');
const EXAMPLE = join(REPO_ROOT, 'examples', 'partner-client', 'main.ts');
const SCOPES = ['models:read', 'models:write', 'infer', 'keys:use', 'keys:admin', 'monitoring:read'];
const INPUT_SIZE = 8;
const ROWS = Array.from({ length: 4 }, (_, r) =>
  Array.from({ length: INPUT_SIZE }, (_, i) => Math.sin(r * INPUT_SIZE + i)),
);
const model = buildMlp({ inputSize: INPUT_SIZE, hiddenSizes: [16], outputSize: 4, seed: 16 });

interface Run {
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program to its end; rejects with its output when it exits non-zero. */
function run(
  file: string,
  args: readonly string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
  timeoutMs = 120_000,
): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd, env, timeout: timeoutMs, maxBuffer: 32 << 20 }, (error, stdout, stderr) => {
      if (error)
        reject(new Error(`${[file, ...args].join(' ')} in ${cwd} failed: ${error.message}\n${stdout}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

/**
 * The environment of npm and node in the partner project: none of the npm_* variables that an
 * `npm test` run sets for the repository (they would point npm at the workspace), nor NODE_PATH or
 * NODE_OPTIONS (module paths and the @quanta/source condition); only where npm's cache and registry are.
 */
function partnerEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const keep = new Set([
    'npm_config_cache',
    'npm_config_registry',
    'npm_config_userconfig',
    'npm_config_proxy',
    'npm_config_https_proxy',
    'npm_config_noproxy',
    'npm_config_cafile',
  ]);
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(key) && !keep.has(key.toLowerCase())) continue;
    if (key === 'NODE_PATH' || key === 'NODE_OPTIONS' || key.startsWith('VITEST') || key.startsWith('QUANTA_'))
      continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

const seconds = (since: number): string => `${((performance.now() - since) / 1000).toFixed(1)} s`;

let stack: Stack;
let project: string;
let tarballFiles: string[];
let token: string;
let expected: Float32Array[];

beforeAll(async () => {
  project = await mkdtemp(join(tmpdir(), 'quanta-partner-'));
  const inside = relative(REPO_ROOT, project);
  if (!inside.startsWith('..') && !isAbsolute(inside))
    throw new Error(`the partner project ${project} must be outside the repository ${REPO_ROOT}`);

  const install = async (): Promise<void> => {
    let started = performance.now();
    const packed = await run('npm', ['pack', '--json', '--pack-destination', project], SDK_DIR, partnerEnv(), 180_000);
    const [info] = JSON.parse(packed.stdout) as {
      filename: string;
      size: number;
      unpackedSize: number;
      files: { path: string }[];
    }[];
    if (info === undefined) throw new Error(`npm pack printed no package:\n${packed.stdout}`);
    tarballFiles = info.files.map((f) => f.path);
    console.log(
      `npm pack (with the prepack build): ${info.filename}, ${info.size} B packed, ` +
        `${info.unpackedSize} B unpacked, ${info.files.length} files, ${seconds(started)}`,
    );

    started = performance.now();
    await writeFile(
      join(project, 'package.json'),
      JSON.stringify({ name: 'quanta-partner', private: true, type: 'module' }, null, 2),
    );
    // @types/node as a TypeScript partner has it; --prefer-offline takes what npm's cache holds.
    await run(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', join(project, info.filename), '@types/node@20'],
      project,
      partnerEnv(),
      180_000,
    );
    console.log(`npm install of the tarball into ${project}: ${seconds(started)}`);
  };

  const references = async (): Promise<Float32Array[]> => {
    const out: Float32Array[] = [];
    for (const row of ROWS) {
      const result = await reference(model, {
        input: new ort.Tensor('float32', Float32Array.from(row), [1, INPUT_SIZE]),
      });
      out.push(result['output'] ?? new Float32Array());
    }
    return out;
  };

  const [started, installed, computed] = await Promise.allSettled([startStack(), install(), references()]);
  if (started.status === 'fulfilled') stack = started.value;
  for (const result of [started, installed, computed]) if (result.status === 'rejected') throw result.reason;
  if (computed.status === 'fulfilled') expected = computed.value;

  const admin = createQuantaClient({ address: stack.addr.crypto, token: stack.adminToken });
  try {
    ({ token } = await admin.crypto.issueToken({
      tenant: 'partner',
      subject: 'partner-sdk',
      scopes: SCOPES,
      ttlSeconds: 3600n,
    }));
  } finally {
    admin.close();
  }
}, 420_000);

afterAll(async () => {
  await stack?.close();
  if (project !== undefined) await rm(project, { recursive: true, force: true });
});

describe('@quanta/sdk installed from its tarball', () => {
  it('packs compiled JavaScript and declarations, and installs with only public packages', async () => {
    expect(tarballFiles).toContain('dist/sdk/src/index.js');
    expect(tarballFiles).toContain('dist/sdk/src/index.d.ts');
    expect(tarballFiles).toContain('README.md');
    expect(tarballFiles.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    expect(tarballFiles.filter((f) => f.endsWith('.map') || f.includes('.test.'))).toEqual([]);

    const installed = JSON.parse(
      await readFile(join(project, 'node_modules', '@quanta', 'sdk', 'package.json'), 'utf8'),
    ) as { dependencies?: Record<string, string> };
    expect(Object.keys(installed.dependencies ?? {}).sort()).toEqual([
      '@bufbuild/protobuf',
      '@grpc/grpc-js',
      'hyparquet',
    ]);
    // The only @quanta package is the SDK itself, and no native onnxruntime came with it.
    expect(await readdir(join(project, 'node_modules', '@quanta'))).toEqual(['sdk']);
    await expect(readdir(join(project, 'node_modules', 'onnxruntime-node'))).rejects.toThrow(/ENOENT/);
  });

  it('type-checks a partner program and the partner-client example against the declarations', async () => {
    await writeFile(join(project, 'partner.ts'), await readFile(PARTNER, 'utf8'));
    await writeFile(join(project, 'main.ts'), await readFile(EXAMPLE, 'utf8'));
    // The settings a strict partner project uses; skipLibCheck off, so the SDK's .d.ts files are checked as well.
    const tsconfig = {
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        noUncheckedIndexedAccess: true,
        skipLibCheck: false,
        types: ['node'],
      },
      files: ['partner.ts', 'main.ts'],
    };
    await writeFile(join(project, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
    const started = performance.now();
    await run(process.execPath, [TSC, '-p', 'tsconfig.json'], project, partnerEnv());
    console.log(`tsc on the partner project (declarations checked): ${seconds(started)}`);
  }, 120_000);

  it('runs a partner program with node: push, deploy, infer, encrypt, decrypt, stats', async () => {
    await writeFile(join(project, 'model.onnx'), model);
    await writeFile(join(project, 'inputs.json'), JSON.stringify(ROWS));
    const env = partnerEnv({
      QUANTA_TOKEN: token,
      QUANTA_INFERENCE_ADDR: stack.addr.inference,
      QUANTA_REGISTRY_ADDR: stack.addr.registry,
      QUANTA_CRYPTO_ADDR: stack.addr.crypto,
      QUANTA_MONITORING_ADDR: stack.addr.monitoring,
    });
    const started = performance.now();
    const { stdout, stderr } = await run(process.execPath, ['partner.js', 'model.onnx', 'inputs.json'], project, env);
    console.log(`partner program: ${seconds(started)}`);
    expect(stderr).toBe('');
    const got = JSON.parse(stdout) as {
      version: number;
      sha256: string;
      outputs: number[][];
      ciphertextHex: string;
      decrypted: string;
      stats: { count: number; errorCount: number };
    };
    expect(got.version).toBe(1);
    expect(got.outputs).toHaveLength(ROWS.length);
    got.outputs.forEach((output, r) => {
      const want = expected[r] ?? new Float32Array();
      expect(output).toHaveLength(want.length);
      output.forEach((value, i) => expect(Math.abs(value - (want[i] ?? NaN))).toBeLessThan(1e-5));
    });
    expect(got.decrypted).toBe('a partner secret');
    expect(got.ciphertextHex).not.toContain(Buffer.from('a partner secret').toString('hex'));
    expect(got.stats).toEqual({ count: ROWS.length, errorCount: 0 });
  }, 120_000);

  it('runs the partner-client example from the installed package', async () => {
    const env = partnerEnv({ QUANTA_TOKEN: token, QUANTA_ADDR: stack.addr.inference, QUANTA_MODEL: 'partner-mlp' });
    const { stdout, stderr } = await run(process.execPath, ['main.js'], project, env);
    expect(stderr).toBe('');
    expect(stdout).toMatch(
      new RegExp(
        String.raw`^partner-mlp \(versions 1\): input FP32 \[1,8\] -> output\n` +
          String.raw`top class [0-3], score -?\d+\.\d{4}, version 1, [\d.]+ ms\n$`,
      ),
    );
  }, 60_000);
});
