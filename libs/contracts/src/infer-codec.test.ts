// The hand-written ModelInfer and ModelStreamInfer codecs against the generated ones, on random messages and bytes.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeModelInferRequest,
  encodeModelInferResponse,
  encodeModelStreamInferResponse,
  inference,
} from './index.js';

const name = fc.string({ unit: 'binary', maxLength: 12 });
const shape = fc.array(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { maxLength: 4 });
const bytes = fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b));
const parameter: fc.Arbitrary<inference.InferParameter> = fc.oneof(
  fc.constant({ parameterChoice: undefined }),
  fc.boolean().map((value) => ({ parameterChoice: { $case: 'boolParam' as const, value } })),
  fc
    .bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })
    .map((value) => ({ parameterChoice: { $case: 'int64Param' as const, value } })),
  name.map((value) => ({ parameterChoice: { $case: 'stringParam' as const, value } })),
  fc.double({ noNaN: true }).map((value) => ({ parameterChoice: { $case: 'doubleParam' as const, value } })),
);
const parameters = fc.dictionary(name, parameter, { maxKeys: 3 });
const contents: fc.Arbitrary<inference.InferTensorContents | undefined> = fc.option(
  fc.record({
    boolContents: fc.array(fc.boolean(), { maxLength: 4 }),
    intContents: fc.array(fc.integer(), { maxLength: 4 }),
    int64Contents: fc.array(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { maxLength: 4 }),
    uintContents: fc.array(fc.integer({ min: 0, max: 2 ** 32 - 1 }), { maxLength: 4 }),
    uint64Contents: fc.array(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { maxLength: 4 }),
    fp32Contents: fc.array(fc.float({ noNaN: true }), { maxLength: 4 }),
    fp64Contents: fc.array(fc.double({ noNaN: true }), { maxLength: 4 }),
    bytesContents: fc.array(bytes, { maxLength: 3 }),
  }),
  { nil: undefined },
);

const request: fc.Arbitrary<inference.ModelInferRequest> = fc.record({
  modelName: name,
  modelVersion: name,
  id: name,
  parameters,
  inputs: fc.array(fc.record({ name, datatype: name, shape, parameters, contents }), { maxLength: 3 }),
  outputs: fc.array(fc.record({ name, parameters }), { maxLength: 3 }),
  rawInputContents: fc.array(bytes, { maxLength: 3 }),
});

const response: fc.Arbitrary<inference.ModelInferResponse> = fc.record({
  modelName: name,
  modelVersion: name,
  id: name,
  parameters,
  outputs: fc.array(fc.record({ name, datatype: name, shape, parameters, contents }), { maxLength: 3 }),
  // Sizes across the one- and two-byte length varints.
  rawOutputContents: fc.array(
    fc.uint8Array({ maxLength: 20_000 }).map((b) => Buffer.from(b)),
    { maxLength: 3 },
  ),
});

/**
 * Responses as the inference service answers (no parameters, no contents, non-negative dims): the
 * hand-written encoder writes their fields itself; dims beyond 2^53 still go to the generated one.
 */
const plainResponse: fc.Arbitrary<inference.ModelInferResponse> = fc.record({
  modelName: name,
  modelVersion: name,
  id: name,
  parameters: fc.constant({}),
  outputs: fc.array(
    fc.record({
      name,
      datatype: name,
      shape: fc.array(fc.oneof(fc.bigInt({ min: 0n, max: 300n }), fc.bigInt({ min: 0n, max: 2n ** 63n - 1n })), {
        maxLength: 4,
      }),
      parameters: fc.constant({}),
      contents: fc.constant(undefined),
    }),
    { maxLength: 3 },
  ),
  rawOutputContents: fc.array(
    fc.uint8Array({ maxLength: 20_000 }).map((b) => Buffer.from(b)),
    { minLength: 1, maxLength: 3 },
  ),
});
const anyResponse = fc.oneof(response, plainResponse);

const encodeRequest = (m: inference.ModelInferRequest): Buffer =>
  Buffer.from(inference.ModelInferRequest.encode(m).finish());

/** What a decoder gives for `input`: the message, or the error's message. */
function outcome<T>(decode: () => T): { value: T } | { error: string } {
  try {
    return { value: decode() };
  } catch (error: unknown) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
}

describe('decodeModelInferRequest', () => {
  it('reads what the generated encoder wrote exactly as the generated decoder does', () => {
    fc.assert(
      fc.property(request, (message) => {
        const wire = encodeRequest(message);
        expect(decodeModelInferRequest(wire)).toStrictEqual(inference.ModelInferRequest.decode(wire));
      }),
      { numRuns: 300 },
    );
  });

  it('gives raw_input_contents as views of the received buffer, not copies', () => {
    const raw = Buffer.from(Float32Array.from([1, 2, 3, 4]).buffer);
    const wire = encodeRequest({
      modelName: 'm',
      modelVersion: '',
      id: '',
      parameters: {},
      inputs: [],
      outputs: [],
      rawInputContents: [raw],
    });
    const decoded = decodeModelInferRequest(wire).rawInputContents[0]!;
    expect(decoded).toStrictEqual(raw);
    expect(decoded.buffer).toBe(wire.buffer);
    wire[wire.length - 1] = 0xff;
    expect(decoded[decoded.length - 1]).toBe(0xff);
  });

  it('agrees with the generated decoder on corrupted and arbitrary bytes (same message or same error)', () => {
    const mutated = fc
      .tuple(
        request,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.nat(),
      )
      .map(([message, flips, cut]) => {
        const wire = encodeRequest(message);
        for (const [at, value] of flips) if (wire.length > 0) wire[at % wire.length] = value;
        return wire.subarray(0, wire.length === 0 ? 0 : wire.length - (cut % Math.min(8, wire.length)));
      });
    fc.assert(
      fc.property(
        fc.oneof(
          mutated,
          fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
        ),
        (wire) => {
          expect(outcome(() => decodeModelInferRequest(wire))).toStrictEqual(
            outcome(() => inference.ModelInferRequest.decode(wire)),
          );
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('encodeModelInferResponse', () => {
  it('writes the same bytes as the generated encoder', () => {
    fc.assert(
      fc.property(anyResponse, (message) => {
        expect(encodeModelInferResponse(message)).toStrictEqual(
          Buffer.from(inference.ModelInferResponse.encode(message).finish()),
        );
      }),
      { numRuns: 200 },
    );
  });

  it('round-trips through the generated decoder', () => {
    fc.assert(
      fc.property(anyResponse, (message) => {
        expect(inference.ModelInferResponse.decode(encodeModelInferResponse(message))).toStrictEqual(
          inference.ModelInferResponse.decode(Buffer.from(inference.ModelInferResponse.encode(message).finish())),
        );
      }),
      { numRuns: 100 },
    );
  });
});

describe('encodeModelStreamInferResponse', () => {
  const streamResponse: fc.Arbitrary<inference.ModelStreamInferResponse> = fc.record({
    errorMessage: fc.oneof(fc.constant(''), name),
    inferResponse: fc.option(anyResponse, { nil: undefined }),
  });
  const generated = (m: inference.ModelStreamInferResponse): Buffer =>
    Buffer.from(inference.ModelStreamInferResponse.encode(m).finish());

  it('writes the same bytes as the generated encoder', () => {
    fc.assert(
      fc.property(streamResponse, (message) => {
        expect(encodeModelStreamInferResponse(message)).toStrictEqual(generated(message));
      }),
      { numRuns: 200 },
    );
  });

  it('nests responses of every length-varint size as the generated decoder reads them', () => {
    for (const size of [0, 1, 100, 127, 128, 16_383, 16_384, 200_000]) {
      const inferResponse: inference.ModelInferResponse = {
        modelName: 'm',
        modelVersion: '1',
        id: String(size),
        parameters: {},
        outputs: [{ name: 'y', datatype: 'FP32', shape: [1n, BigInt(size)], parameters: {}, contents: undefined }],
        rawOutputContents: [Buffer.alloc(size, 7)],
      };
      for (const errorMessage of ['', 'partly failed']) {
        const wire = encodeModelStreamInferResponse({ errorMessage, inferResponse });
        expect(wire).toStrictEqual(generated({ errorMessage, inferResponse }));
        expect(inference.ModelStreamInferResponse.decode(wire)).toStrictEqual({ errorMessage, inferResponse });
      }
    }
  });
});
