import { CompressError } from './compress-error.js';

// A protobuf message read as its list of fields, each with the byte span it occupies, so a
// rewriter changes the fields it understands and copies every other one (unknown fields included)
// byte for byte. Payloads are subarrays of the source: nothing is copied.

export interface WireField {
  readonly field: number;
  readonly wire: number;
  /** The whole field: tag, length and payload. */
  readonly span: Uint8Array;
  /** Varint value (wire 0), or the length of the payload (wire 2). */
  readonly value: number;
  /** Payload of a length-delimited field (wire 2); fixed32/fixed64 bytes for wires 5/1. */
  readonly payload: Uint8Array;
}

function fail(what: string, at: number): never {
  throw new CompressError('bad-model', `${what} at offset ${at}: not a well-formed ONNX protobuf`);
}

/** Reads a varint at `pos`; returns [value, next position]. 64-bit negatives decode as signed. */
export function readVarint(buf: Uint8Array, pos: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    const b = buf[pos + i];
    if (b === undefined) fail('a varint runs past the end', pos);
    value += (b & 0x7f) * scale;
    if (b < 0x80) {
      if (i === 9) {
        let v = 0n;
        for (let k = 0; k < 10; k++) v |= BigInt((buf[pos + k] ?? 0) & 0x7f) << BigInt(7 * k);
        return [Number(BigInt.asIntN(64, v)), pos + 10];
      }
      return [value, pos + i + 1];
    }
    scale *= 128;
  }
  return fail('a varint longer than 10 bytes', pos);
}

/** The fields of one message, in order. */
export function readFields(buf: Uint8Array): WireField[] {
  const out: WireField[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    const [tag, afterTag] = readVarint(buf, pos);
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (field === 0) fail('field number 0', start);
    pos = afterTag;
    let value = 0;
    let payload: Uint8Array;
    if (wire === 0) {
      [value, pos] = readVarint(buf, pos);
      payload = buf.subarray(afterTag, pos);
    } else if (wire === 2) {
      [value, pos] = readVarint(buf, pos);
      if (pos + value > buf.length) fail(`field ${field} (${value} bytes) runs past its message`, start);
      payload = buf.subarray(pos, pos + value);
      pos += value;
    } else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4;
      if (pos + n > buf.length) fail(`field ${field} runs past its message`, start);
      payload = buf.subarray(pos, pos + n);
      pos += n;
    } else {
      return fail(`wire type ${wire} (field ${field})`, start);
    }
    out.push({ field, wire, span: buf.subarray(start, pos), value, payload });
  }
  return out;
}

const decoder = new TextDecoder();

export function text(f: WireField): string {
  return decoder.decode(f.payload);
}

/** Values of a repeated varint field, packed or not. */
export function varints(fields: readonly WireField[], field: number): number[] {
  const out: number[] = [];
  for (const f of fields) {
    if (f.field !== field) continue;
    if (f.wire === 0) out.push(f.value);
    else if (f.wire === 2) {
      let pos = 0;
      while (pos < f.payload.length) {
        const [v, next] = readVarint(f.payload, pos);
        out.push(v);
        pos = next;
      }
    }
  }
  return out;
}
