// Hand-written codecs for the hot path of inference.GRPCInferenceService/ModelInfer, next to the
// generated ones (src/gen, never edited by hand). They give the same messages and bytes as the
// generated codec (infer-codec.test.ts checks that on random messages) with fewer copies of the
// tensor bytes, which are most of a request:
// - decodeModelInferRequest: each raw_input_contents entry is a view of the received buffer, not a
//   copy (the generated decoder copies every entry with Buffer.from);
// - encodeModelInferResponse: one buffer of the exact size with the raw outputs copied into it once
//   (the generated encoder copies them into its writer's chunks, again to join those, and a third
//   time in Buffer.from);
// - encodeModelStreamInferResponse: ModelStreamInfer's answer, the same response nested in field 2,
//   written the same way into one buffer (the generated encoder forks and joins its writer for the
//   nested message and copies the raw outputs as above).
import { BinaryReader } from '@bufbuild/protobuf/wire';
import {
  ModelInferRequest_InferInputTensor,
  ModelInferRequest_InferRequestedOutputTensor,
  ModelInferRequest_ParametersEntry,
  ModelInferResponse,
  ModelStreamInferResponse,
  type ModelInferRequest,
  type ModelInferResponse as ModelInferResponseMessage,
  type ModelStreamInferResponse as ModelStreamInferResponseMessage,
} from './gen/inference/grpc_service.js';
import { varintLength, writeVarint } from './varint.js';

type DepthTracked = BinaryReader & { __tsProtoDecodeDepth?: number };

/**
 * A ModelInferRequest from its protobuf bytes, as the generated `ModelInferRequest.decode` reads it
 * (same fields, same errors) except that each `rawInputContents` entry is a Buffer over `bytes`'
 * memory: it stays valid as long as nobody writes into `bytes` (grpc-js hands every message over in
 * a buffer of its own).
 */
export function decodeModelInferRequest(bytes: Uint8Array): ModelInferRequest {
  const reader: DepthTracked = new BinaryReader(bytes);
  // The nested decoders count their depth on the reader, as under the generated decoder.
  reader.__tsProtoDecodeDepth = 1;
  const message: ModelInferRequest = {
    modelName: '',
    modelVersion: '',
    id: '',
    parameters: {},
    inputs: [],
    outputs: [],
    rawInputContents: [],
  };
  const end = reader.len;
  while (reader.pos < end) {
    const tag = reader.uint32();
    switch (tag) {
      case 10:
        message.modelName = reader.string();
        continue;
      case 18:
        message.modelVersion = reader.string();
        continue;
      case 26:
        message.id = reader.string();
        continue;
      case 34: {
        const entry = ModelInferRequest_ParametersEntry.decode(reader, reader.uint32());
        if (entry.value !== undefined) message.parameters[entry.key] = entry.value;
        continue;
      }
      case 42:
        message.inputs.push(ModelInferRequest_InferInputTensor.decode(reader, reader.uint32()));
        continue;
      case 50:
        message.outputs.push(ModelInferRequest_InferRequestedOutputTensor.decode(reader, reader.uint32()));
        continue;
      case 58: {
        const view = reader.bytes();
        message.rawInputContents.push(Buffer.from(view.buffer, view.byteOffset, view.byteLength));
        continue;
      }
    }
    if ((tag & 7) === 4 || tag === 0) break;
    reader.skip(tag & 7);
  }
  return message;
}

const NO_RAW: Buffer[] = [];
const NO_BYTES = new Uint8Array(0);

/**
 * A ModelInferResponse with raw outputs, as the generated encoder writes it: the fields before
 * raw_output_contents through the generated encoder (small), then the raw outputs (the last field)
 * copied once into a buffer of the exact size. With `before` (not undefined), the response is written
 * as field 2 (length-delimited) of an enclosing message whose earlier fields' bytes are `before`.
 */
function encodeWithRawOutputs(message: ModelInferResponseMessage, before: Uint8Array | undefined): Buffer {
  const raw = message.rawOutputContents;
  const head = ModelInferResponse.encode({ ...message, rawOutputContents: NO_RAW }).finish();
  let size = head.byteLength;
  // Field 6, length-delimited: tag byte 50, the length, the bytes.
  for (const bytes of raw) size += 1 + varintLength(bytes.byteLength) + bytes.byteLength;
  const out = Buffer.allocUnsafe(before === undefined ? size : before.byteLength + 1 + varintLength(size) + size);
  let offset = 0;
  if (before !== undefined) {
    out.set(before, 0);
    offset = before.byteLength;
    // Field 2, length-delimited: tag byte 18, the length.
    out[offset++] = 18;
    offset = writeVarint(out, offset, size);
  }
  out.set(head, offset);
  offset += head.byteLength;
  for (const bytes of raw) {
    out[offset++] = 50;
    offset = writeVarint(out, offset, bytes.byteLength);
    out.set(bytes, offset);
    offset += bytes.byteLength;
  }
  return out;
}

/**
 * The protobuf bytes of a ModelInferResponse, byte for byte what the generated encoder writes, with
 * the raw outputs copied once (encodeWithRawOutputs).
 */
export function encodeModelInferResponse(message: ModelInferResponseMessage): Buffer {
  if (message.rawOutputContents.length === 0) return Buffer.from(ModelInferResponse.encode(message).finish());
  return encodeWithRawOutputs(message, undefined);
}

/**
 * The protobuf bytes of a ModelStreamInferResponse, byte for byte what the generated encoder writes:
 * error_message (field 1) when not empty, then the infer_response (field 2) written as
 * encodeModelInferResponse writes it, into the same buffer.
 */
export function encodeModelStreamInferResponse(message: ModelStreamInferResponseMessage): Buffer {
  const response = message.inferResponse;
  if (response === undefined || response.rawOutputContents.length === 0)
    return Buffer.from(ModelStreamInferResponse.encode(message).finish());
  const before =
    message.errorMessage === ''
      ? NO_BYTES
      : ModelStreamInferResponse.encode({ errorMessage: message.errorMessage, inferResponse: undefined }).finish();
  return encodeWithRawOutputs(response, before);
}
