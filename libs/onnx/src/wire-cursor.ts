import { OnnxError } from './errors.js';

// A protobuf wire-format cursor over a byte source it does not hold: it keeps one window of bytes
// and asks for more through a generator (`yield {offset, length}` -> the bytes), so one scanner
// serves both an in-memory buffer (synchronously, zero copy) and a file read in chunks (async).
// Skipping a field only moves `pos`: the payload of a large field is never read.

export interface ReadRequest {
  readonly offset: number;
  readonly length: number;
}

/** A scan step: yields read requests, receives the bytes [offset, offset + length), returns T. */
export type Scan<T> = Generator<ReadRequest, T, Uint8Array>;

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_I32 = 5;

/** A tag (at most 5 bytes) plus a varint value or length (at most 10): fill this before a header. */
export const HEADER_BYTES = 15;

const WIRE_NAMES = ['varint', 'fixed64', 'length-delimited', 'start-group', 'end-group', 'fixed32', '6', '7'];

const decoder = new TextDecoder('utf-8', { fatal: false });

export class WireCursor {
  private window: Uint8Array = new Uint8Array(0);
  private windowStart = 0;
  /** Absolute offset of the next byte to read. */
  pos = 0;

  constructor(
    /** Total size of the source in bytes. */
    readonly size: number,
    private readonly chunkSize: number,
  ) {}

  /** Whether the window misses some of the next `n` bytes (or of the rest of the source). */
  lacks(n: number): boolean {
    const want = Math.min(n, this.size - this.pos);
    return this.pos < this.windowStart || this.pos + want > this.windowStart + this.window.length;
  }

  /** Makes the next `n` bytes (at most up to the end) readable; reads at least one chunk. */
  *fill(n: number): Scan<void> {
    if (!this.lacks(n)) return;
    const length = Math.min(Math.max(n, this.chunkSize), this.size - this.pos);
    const bytes = yield { offset: this.pos, length };
    if (bytes.length < length) {
      throw new OnnxError(
        'truncated',
        `the source ended at offset ${this.pos + bytes.length}, before its declared size ${this.size}`,
        this.pos + bytes.length,
      );
    }
    this.window = bytes;
    this.windowStart = this.pos;
  }

  /** The reason for a read running past `end`: the end of the file, or of the enclosing message. */
  overrun(end: number, what: string, at: number = this.pos): OnnxError {
    return end >= this.size
      ? new OnnxError(
          'truncated',
          `${what} at offset ${at} runs past the end of the file (${this.size} bytes): the file is truncated`,
          at,
        )
      : new OnnxError(
          'malformed',
          `${what} at offset ${at} runs past the end of its enclosing message (offset ${end})`,
          at,
        );
  }

  private byte(end: number, what: string, start: number): number {
    if (this.pos >= end) throw this.overrun(end, what, start);
    const b = this.window[this.pos - this.windowStart];
    // Callers fill before reading; a miss here is a bug in the scanner, not in the data.
    if (b === undefined || this.pos < this.windowStart)
      throw new Error(`scanner read offset ${this.pos} outside its window`);
    this.pos += 1;
    return b;
  }

  /** A varint as a number (exact up to 2^53; 10-byte negatives decode as signed int64). */
  varint(end: number, what = 'varint'): number {
    const start = this.pos;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.byte(end, what, start);
      if (i === 9 && b > 1) break;
      value += (b & 0x7f) * scale;
      if (b < 0x80) return i === 9 ? this.signed(start) : value;
      scale *= 128;
    }
    throw new OnnxError('not-protobuf', `${what} at offset ${start} is longer than 10 bytes: not protobuf`, start);
  }

  // Negative int64 values take 10 bytes; decode them again exactly with BigInt.
  private signed(start: number): number {
    let v = 0n;
    for (let i = 0; i < 10; i++) {
      const b = this.window[start - this.windowStart + i] ?? 0;
      v |= BigInt(b & 0x7f) << BigInt(7 * i);
    }
    return Number(BigInt.asIntN(64, v));
  }

  /** A field header; `field` and `wire` as in the tag. */
  header(end: number): { field: number; wire: number; at: number } {
    const at = this.pos;
    const tag = this.varint(end, 'field tag');
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (field === 0 || field > 0x1fffffff) {
      throw new OnnxError('not-protobuf', `invalid protobuf field number ${field} at offset ${at}: not protobuf`, at);
    }
    if (wire !== WIRE_VARINT && wire !== WIRE_I64 && wire !== WIRE_LEN && wire !== WIRE_I32) {
      throw new OnnxError(
        'not-protobuf',
        `invalid protobuf wire type ${WIRE_NAMES[wire]} (field ${field}) at offset ${at}: not an ONNX protobuf`,
        at,
      );
    }
    return { field, wire, at };
  }

  private expectWire(wire: number, expected: number, what: string, at: number): void {
    if (wire !== expected) {
      throw new OnnxError(
        'malformed',
        `${what} at offset ${at} has wire type ${WIRE_NAMES[wire]}, expected ${WIRE_NAMES[expected]}`,
        at,
      );
    }
  }

  /** The value of a varint field. */
  uint(end: number, wire: number, what: string, at: number): number {
    this.expectWire(wire, WIRE_VARINT, what, at);
    return this.varint(end, what);
  }

  /** The length of a length-delimited field, checked against `end`; pos is left at the payload. */
  len(end: number, wire: number, what: string, at: number): number {
    this.expectWire(wire, WIRE_LEN, what, at);
    const n = this.varint(end, `${what} length`);
    if (this.pos + n > end) throw this.overrun(end, `${what} (${n} bytes)`, at);
    return n;
  }

  /** The end offset of a length-delimited field's payload; pos is left at its start. */
  sub(end: number, wire: number, what: string, at: number): number {
    const n = this.len(end, wire, what, at);
    return this.pos + n;
  }

  /** Skips a field's value without reading its payload. */
  skip(end: number, wire: number, field: number, at: number): void {
    const what = `field ${field}`;
    if (wire === WIRE_VARINT) this.varint(end, what);
    else if (wire === WIRE_LEN) this.pos = this.sub(end, wire, what, at);
    else {
      const n = wire === WIRE_I64 ? 8 : 4;
      if (this.pos + n > end) throw this.overrun(end, what, at);
      this.pos += n;
    }
  }

  /** Decodes the first `max` bytes of a `n`-byte string (already filled) and moves past all of it. */
  text(n: number, max = n): string {
    const take = Math.min(n, max);
    const i = this.pos - this.windowStart;
    const s = decoder.decode(this.window.subarray(i, i + take));
    this.pos += n;
    return s;
  }
}

/** Reads a string field of `n` bytes, keeping at most `max` bytes of it. */
export function* readText(c: WireCursor, n: number, max: number): Scan<string> {
  const take = Math.min(n, max);
  if (c.lacks(take)) yield* c.fill(take);
  return c.text(n, max);
}
