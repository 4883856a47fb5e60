import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tensorToOrt, type Tensor } from '@quanta/tensor';
import * as ort from 'onnxruntime-node';
import { tempDir } from './fixtures.js';

// Helpers for the compression tests: the ONNX checker (Debian's python3-onnx) and onnxruntime runs.

/** Debian's python3, which has python3-onnx; a pyenv or venv python3 first on PATH may not. */
export const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

const CHECK = `
import sys, onnx
for path in sys.argv[1:]:
    try:
        onnx.checker.check_model(onnx.load(path), full_check=True)
        print("ok")
    except Exception as e:
        print("error: " + str(e).replace("\\n", " "))
`;

/** onnx.checker.check_model(full_check=True) on each model: 'ok' or 'error: ...' for each. */
export function checkModels(models: readonly Uint8Array[]): string[] {
  const { dir, remove } = tempDir();
  try {
    const paths = models.map((m, i) => {
      const path = join(dir, `model-${i}.onnx`);
      writeFileSync(path, m);
      return path;
    });
    const run = spawnSync(PYTHON, ['-c', CHECK, ...paths], { encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`${PYTHON} failed (is python3-onnx installed?): ${run.stderr}`);
    return run.stdout.trim().split('\n');
  } finally {
    remove();
  }
}

export interface Signature {
  readonly inputs: readonly { name: string; type?: string; shape?: readonly (number | string)[] }[];
  readonly outputs: readonly { name: string; type?: string; shape?: readonly (number | string)[] }[];
}

function describe(meta: readonly ort.InferenceSession.ValueMetadata[]): Signature['inputs'] {
  return meta.map((m) => ({ name: m.name, ...(m.isTensor ? { type: m.type, shape: m.shape } : {}) }));
}

/** Runs every sample; returns the signature onnxruntime sees and each output's values, samples concatenated. */
export async function runSamples(
  model: Uint8Array,
  samples: readonly Record<string, Tensor>[],
): Promise<{ signature: Signature; outputs: Record<string, number[]> }> {
  const session = await ort.InferenceSession.create(model);
  try {
    const signature = {
      inputs: describe(session.inputMetadata),
      outputs: describe(session.outputMetadata),
    };
    const outputs: Record<string, number[]> = {};
    for (const sample of samples) {
      const feeds = Object.fromEntries(Object.entries(sample).map(([k, t]) => [k, tensorToOrt(t)]));
      const result = await session.run(feeds);
      for (const [name, value] of Object.entries(result)) {
        const list = (outputs[name] ??= []);
        for (const x of value.data as Float32Array) list.push(x);
      }
    }
    return { signature, outputs };
  } finally {
    await session.release();
  }
}

/** Cosine similarity of two vectors; 1 when both are zero. */
export function cosine(a: readonly number[], b: readonly number[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  if (na === 0 && nb === 0) return 1;
  return dot / Math.sqrt(na * nb);
}
