import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { OnnxDataType } from './data-types.js';
import { inspectOnnxFile } from './inspect.js';
import { encodeModelChunks, floatTensor, type ModelSpec } from './model-spec.js';
import { tempDir } from './test-fixtures.js';

const tmp = tempDir();
afterAll(() => tmp.remove());

const MiB = 1024 * 1024;
const BIG_MIB = 200;

it(`inspects a model with a ${BIG_MIB} MiB initializer reading a few MiB, with bounded memory`, async () => {
  // One 1 MiB chunk referenced 200 times forms the raw_data: the test never holds 200 MiB either.
  const chunk = new Uint8Array(MiB).fill(0x3f);
  const spec: ModelSpec = {
    graph: {
      name: 'big',
      nodes: [{ opType: 'Add', inputs: ['x', 'small'], outputs: ['y'] }],
      // The big tensor comes first: inputs and outputs are written after it, so the scanner must
      // seek past the whole payload to reach them.
      initializers: [
        { name: 'big', dataType: OnnxDataType.FLOAT, dims: [(BIG_MIB * MiB) / 4], raw: Array<Uint8Array>(BIG_MIB).fill(chunk) },
        floatTensor('small', [4], [1, 2, 3, 4]),
      ],
      inputs: [{ name: 'x', dataType: OnnxDataType.FLOAT, shape: ['N', 4] }],
      outputs: [{ name: 'y', dataType: OnnxDataType.FLOAT, shape: ['N', 4] }],
    },
  };
  const path = join(tmp.dir, 'big.onnx');
  const file = await open(path, 'w');
  try {
    for (const part of encodeModelChunks(spec)) await file.write(part);
  } finally {
    await file.close();
  }
  const size = (await stat(path)).size;
  expect(size).toBeGreaterThan(BIG_MIB * MiB);

  const rssPeakBefore = process.resourceUsage().maxRSS * 1024;
  const heapBefore = process.memoryUsage().heapUsed;
  let bytesRead = 0;
  const started = performance.now();
  const info = await inspectOnnxFile(path, { onRead: (_offset, length) => (bytesRead += length) });
  const ms = performance.now() - started;
  const rssPeakGrowth = process.resourceUsage().maxRSS * 1024 - rssPeakBefore;
  const heapGrowth = process.memoryUsage().heapUsed - heapBefore;
  console.log(`inspected ${(size / MiB).toFixed(1)} MiB in ${ms.toFixed(1)} ms, read ${(bytesRead / MiB).toFixed(2)} MiB, peak RSS growth ${(rssPeakGrowth / MiB).toFixed(1)} MiB, heap growth ${(heapGrowth / MiB).toFixed(1)} MiB`);

  expect(info.inputs.map((v) => v.name)).toEqual(['x']);
  expect(info.outputs.map((v) => v.name)).toEqual(['y']);
  expect(info.initializers[0]).toMatchObject({ name: 'big', byteSize: BIG_MIB * MiB, elementCount: (BIG_MIB * MiB) / 4 });
  expect(info.parameterBytes).toBe(BIG_MIB * MiB + 16);
  // The payload is skipped: a chunk before it and one after it.
  expect(bytesRead).toBeLessThan(4 * MiB);
  expect(rssPeakGrowth).toBeLessThan(size / 8);
  expect(heapGrowth).toBeLessThan(size / 8);
});
