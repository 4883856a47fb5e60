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

/** Whether a map field (a plain object, as ts-proto makes them) has entries. */
function hasEntries(map: object): boolean {
  for (const key in map) if (Object.hasOwn(map, key)) return true;
  return false;
}

/** Bytes of a string field (tag, length, UTF-8); none for '' (proto3 leaves it out). */
function stringFieldLength(value: string): number {
  if (value === '') return 0;
  const length = Buffer.byteLength(value, 'utf8');
  return 1 + varintLength(length) + length;
}

/** Writes a string field as stringFieldLength counts it; returns the offset after it. */
function writeStringField(out: Buffer, offset: number, tag: number, value: string): number {
  if (value === '') return offset;
  const length = Buffer.byteLength(value, 'utf8');
  out[offset] = tag;
  const at = writeVarint(out, offset + 1, length);
  out.write(value, at, length, 'utf8');
  return at + length;
}

type OutputTensor = ModelInferResponseMessage['outputs'][number];

/**
 * The bytes of an InferOutputTensor written directly (name, datatype, packed shape), or undefined
 * when it has parameters, contents or a dim outside [0, 2^53): the generated encoder writes those.
 */
function outputTensorLength(output: OutputTensor): number | undefined {
  if (output.contents !== undefined || hasEntries(output.parameters)) return undefined;
  let size = stringFieldLength(output.name) + stringFieldLength(output.datatype);
  if (output.shape.length > 0) {
    let packed = 0;
    for (const dim of output.shape) {
      if (!(dim >= 0n && dim <= MAX_SAFE)) return undefined;
      packed += varintLength(Number(dim));
    }
    size += 1 + varintLength(packed) + packed;
  }
  return size;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** Output tensor lengths of the message being written (one at a time: encoding is synchronous). */
const outputLengths: number[] = [];

/**
 * The bytes of a response's fields before raw_output_contents written directly, or undefined when a
 * field needs the generated encoder (parameters, contents, negative or huge dims). Fills outputLengths.
 */
function directHeadLength(message: ModelInferResponseMessage): number | undefined {
  if (hasEntries(message.parameters)) return undefined;
  let size = stringFieldLength(message.modelName) + stringFieldLength(message.modelVersion);
  size += stringFieldLength(message.id);
  outputLengths.length = 0;
  for (const output of message.outputs) {
    const length = outputTensorLength(output);
    if (length === undefined) return undefined;
    outputLengths.push(length);
    size += 1 + varintLength(length) + length;
  }
  return size;
}

/** Writes what directHeadLength measured; returns the offset after it. */
function writeDirectHead(out: Buffer, offset: number, message: ModelInferResponseMessage): number {
  let at = writeStringField(out, offset, 10, message.modelName);
  at = writeStringField(out, at, 18, message.modelVersion);
  at = writeStringField(out, at, 26, message.id);
  message.outputs.forEach((output, index) => {
    out[at++] = 42;
    at = writeVarint(out, at, outputLengths[index]!);
    at = writeStringField(out, at, 10, output.name);
    at = writeStringField(out, at, 18, output.datatype);
    if (output.shape.length > 0) {
      let packed = 0;
      for (const dim of output.shape) packed += varintLength(Number(dim));
      out[at++] = 26;
      at = writeVarint(out, at, packed);
      for (const dim of output.shape) at = writeVarint(out, at, Number(dim));
    }
  });
  return at;
}

/**
 * A ModelInferResponse with raw outputs, as the generated encoder writes it: the fields before
 * raw_output_contents written directly into the one buffer (or, where a field needs it, through the
 * generated encoder), then the raw outputs (the last field) copied once into that buffer of the exact
 * size. With `before` (not undefined), the response is written as field 2 (length-delimited) of an
 * enclosing message whose earlier fields' bytes are `before`.
 */
function encodeWithRawOutputs(message: ModelInferResponseMessage, before: Uint8Array | undefined): Buffer {
  const raw = message.rawOutputContents;
  const direct = directHeadLength(message);
  const head =
    direct === undefined ? ModelInferResponse.encode({ ...message, rawOutputContents: NO_RAW }).finish() : undefined;
  let size = head === undefined ? direct! : head.byteLength;
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
  if (head === undefined) offset = writeDirectHead(out, offset, message);
  else {
    out.set(head, offset);
    offset += head.byteLength;
  }
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
