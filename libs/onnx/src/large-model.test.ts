import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { OnnxDataType } from './data-types.js';
import { inspectOnnxFile } from './inspect.js';
import { encodeModelChunks, floatTensor, type ModelSpec } from './model-spec.js';
import { ProtoWriter } from './proto-writer.js';
import { tempDir } from './testing/fixtures.js';

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
        {
          name: 'big',
          dataType: OnnxDataType.FLOAT,
          dims: [(BIG_MIB * MiB) / 4],
          raw: Array<Uint8Array>(BIG_MIB).fill(chunk),
        },
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
  console.log(
    `inspected ${(size / MiB).toFixed(1)} MiB in ${ms.toFixed(1)} ms, read ${(bytesRead / MiB).toFixed(2)} MiB, ` +
      `peak RSS growth ${(rssPeakGrowth / MiB).toFixed(1)} MiB, heap growth ${(heapGrowth / MiB).toFixed(1)} MiB`,
  );

  expect(info.inputs.map((v) => v.name)).toEqual(['x']);
  expect(info.outputs.map((v) => v.name)).toEqual(['y']);
  expect(info.initializers[0]).toMatchObject({
    name: 'big',
    byteSize: BIG_MIB * MiB,
    elementCount: (BIG_MIB * MiB) / 4,
  });
  expect(info.parameterBytes).toBe(BIG_MIB * MiB + 16);
  // The payload is skipped: a chunk before it and one after it.
  expect(bytesRead).toBeLessThan(4 * MiB);
  expect(rssPeakGrowth).toBeLessThan(size / 8);
  expect(heapGrowth).toBeLessThan(size / 8);
});

it('inspects a 5 GiB model (a sparse file: offsets and lengths past 2^32)', async () => {
  // Hand-assembled so the 5 GiB raw_data is a hole in the file: only the head and tail are written.
  const size = 5 * 1024 * MiB;
  const varint = (v: number): number[] => {
    const out: number[] = [];
    for (; v > 127; v = Math.floor(v / 128)) out.push((v % 128) | 128);
    return [...out, v];
  };
  const dimN = new ProtoWriter().message(1, new ProtoWriter().string(2, 'N'));
  const valueInfo = (name: string): ProtoWriter =>
    new ProtoWriter()
      .string(1, name)
      .message(2, new ProtoWriter().message(1, new ProtoWriter().varint(1, 1).message(2, dimN)));
  const tensorHead = new ProtoWriter().packedVarints(1, [size]).varint(2, OnnxDataType.UINT8).string(8, 'w').finish();
  const tensorLen = tensorHead.length + 1 + varint(size).length + size;
  const node = new ProtoWriter().string(1, 'x').string(2, 'y').string(4, 'Identity');
  const graphHead = new ProtoWriter().message(1, node).string(2, 'huge').finish();
  const graphTail = new ProtoWriter().message(11, valueInfo('x')).message(12, valueInfo('y')).finish();
  const graphLen = graphHead.length + 1 + varint(tensorLen).length + tensorLen + graphTail.length;
  // ModelProto: ir_version (1) = 8, graph (7) { ..., initializer (5) { ..., raw_data (9) <hole> } ... },
  // opset_import (8).
  const head = Uint8Array.from([
    0x08,
    8,
    0x3a,
    ...varint(graphLen),
    ...graphHead,
    0x2a,
    ...varint(tensorLen),
    ...tensorHead,
    0x4a,
    ...varint(size),
  ]);
  const tail = Uint8Array.from([
    ...graphTail,
    ...new ProtoWriter().message(8, new ProtoWriter().varint(2, 17)).finish(),
  ]);
  const path = join(tmp.dir, 'huge.onnx');
  const file = await open(path, 'w');
  try {
    await file.write(head, 0, head.length, 0);
    await file.write(tail, 0, tail.length, head.length + size);
  } finally {
    await file.close();
  }
  expect((await stat(path)).size).toBe(head.length + size + tail.length);
  let bytesRead = 0;
  const info = await inspectOnnxFile(path, { onRead: (_offset, length) => (bytesRead += length) });
  expect(info.graphName).toBe('huge');
  expect(info.inputs[0]).toMatchObject({ name: 'x', datatype: 'FP32', shape: [-1], dimParams: ['N'] });
  expect(info.outputs.map((v) => v.name)).toEqual(['y']);
  expect(info.opsetImports).toEqual([{ domain: '', version: 17 }]);
  expect(info.parameterCount).toBe(size);
  expect(info.parameterBytes).toBe(size);
  expect(bytesRead).toBeLessThan(2 * MiB);
});
