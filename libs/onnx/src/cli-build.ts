// Writes the demo models and prints each one's signature:
//   npx tsx --conditions=@quanta/source libs/onnx/src/cli-build.ts [--out DIR]   (default ./models)
import { parseArgs } from 'node:util';
import { writeDemoModels } from './demo-models.js';
import { inspectOnnxFile } from './inspect.js';
import type { OnnxValueInfo } from './model-info.js';

const { values } = parseArgs({ options: { out: { type: 'string', default: 'models' } } });
const signature = (vs: readonly OnnxValueInfo[]): string =>
  vs
    .map((v) => `${v.name}:${v.datatype ?? v.kind}[${(v.shape ?? []).map((d, i) => v.dimParams?.[i] ?? d).join(',')}]`)
    .join(' ');

for (const path of await writeDemoModels(values.out)) {
  const info = await inspectOnnxFile(path);
  console.log(
    `${path}  ${info.fileSize} bytes, ${info.parameterCount} parameters  ` +
      `${signature(info.inputs)} -> ${signature(info.outputs)}`,
  );
}
