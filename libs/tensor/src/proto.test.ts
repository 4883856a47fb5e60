// Through the real generated KServe messages: encode a ModelInferRequest / ModelInferResponse with
// ts-proto, decode it (raw buffers then sit at whatever offset the message put them), and read
// the tensors back. Also pins that the generated types fit WireTensor and TensorContents.
import { inference } from '@quanta/contracts';
import { describe, expect, it } from 'vitest';
import { tensorToRaw } from './raw.js';
import { createTensor } from './tensor.js';
import { tensorFromWire, tensorToWire } from './wire.js';

describe('KServe protobuf messages', () => {
  it('a ModelInferRequest with raw and typed inputs survives encode/decode', () => {
    const fp32 = createTensor('FP32', [2, 3], new Float32Array([1, 2, 3, 4, 5, -0]), { name: 'x' });
    const words = createTensor('BYTES', [2], [Buffer.from('héllo'), Buffer.from([0, 255])], { name: 'w' });
    const ids = createTensor('INT64', [2], new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n]), { name: 'ids' });
    const raw = tensorToWire(fp32, { raw: true });
    const rawWords = tensorToWire(words, { raw: true });
    const typed = tensorToWire(ids, { raw: false });
    const request = inference.ModelInferRequest.fromPartial({
      modelName: 'm',
      inputs: [raw.wire, rawWords.wire, typed.wire],
      rawInputContents: [raw.raw!, rawWords.raw!],
    });
    const decoded = inference.ModelInferRequest.decode(inference.ModelInferRequest.encode(request).finish());

    const [x, w, i] = decoded.inputs;
    const xs = tensorFromWire(x!, decoded.rawInputContents[0]);
    expect(xs).toMatchObject({ name: 'x', datatype: 'FP32', shape: [2, 3] });
    expect(tensorToRaw(xs).equals(tensorToRaw(fp32))).toBe(true);
    const ws = tensorFromWire(w!, decoded.rawInputContents[1]);
    expect((ws.data as Uint8Array[]).map((e) => Buffer.from(e).toString('hex'))).toEqual([
      Buffer.from('héllo').toString('hex'),
      '00ff',
    ]);
    const is = tensorFromWire(i!);
    expect(is.data).toEqual(ids.data);
  });

  it('a ModelInferResponse output reads back with the output role in errors', () => {
    const y = createTensor('FP16', [2], new Uint16Array([0x3c00, 0x7bff]), { name: 'y' });
    const { wire, raw } = tensorToWire(y, { raw: false }); // FP16 always goes raw
    const response = inference.ModelInferResponse.fromPartial({
      modelName: 'm',
      outputs: [wire],
      rawOutputContents: [raw!],
    });
    const decoded = inference.ModelInferResponse.decode(inference.ModelInferResponse.encode(response).finish());
    const out = tensorFromWire(decoded.outputs[0]!, decoded.rawOutputContents[0], 'output');
    expect(Array.from(out.data as Uint16Array)).toEqual([0x3c00, 0x7bff]);
    const short = decoded.rawOutputContents[0]!.subarray(1);
    expect(() => tensorFromWire(decoded.outputs[0]!, short, 'output')).toThrow(
      'output "y": shape [2] needs 4 bytes of FP16, got 3',
    );
  });
});
