// A small protobuf wire-format writer. Large byte fields are kept by reference (never copied) and
// `chunks()` hands them out in order, so a model with a huge tensor can be streamed to a file.

const encoder = new TextEncoder();

export class ProtoWriter {
  private readonly parts: Uint8Array[] = [];
  private pending: number[] = [];
  private size = 0;

  /** Encoded length in bytes. */
  get length(): number {
    return this.size + this.pending.length;
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    this.parts.push(Uint8Array.from(this.pending));
    this.size += this.pending.length;
    this.pending = [];
  }

  private pushPart(part: Uint8Array): void {
    this.flush();
    if (part.length === 0) return;
    this.parts.push(part);
    this.size += part.length;
  }

  private rawVarint(value: number | bigint): void {
    if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) {
      let v = value;
      while (v > 0x7f) {
        this.pending.push((v % 128) | 0x80);
        v = Math.floor(v / 128);
      }
      this.pending.push(v);
      return;
    }
    // Negative int64 values are written as 10-byte two's complement varints.
    let v = BigInt.asUintN(64, BigInt(value));
    while (v > 0x7fn) {
      this.pending.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.pending.push(Number(v));
  }

  private tag(field: number, wire: number): void {
    this.rawVarint(field * 8 + wire);
  }

  varint(field: number, value: number | bigint): this {
    this.tag(field, 0);
    this.rawVarint(value);
    return this;
  }

  float(field: number, value: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.pending.push(...b);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, encoder.encode(value));
  }

  /** A bytes field; several chunks make one field (their concatenation), none of them copied. */
  bytes(field: number, value: Uint8Array | readonly Uint8Array[]): this {
    const chunks = value instanceof Uint8Array ? [value] : value;
    this.tag(field, 2);
    this.rawVarint(chunks.reduce((n, c) => n + c.length, 0));
    for (const c of chunks) {
      if (c.length <= 64) this.pending.push(...c);
      else this.pushPart(c);
    }
    return this;
  }

  /** Bytes that are already encoded fields (copied from another message), appended as they are. */
  raw(encoded: Uint8Array): this {
    if (encoded.length <= 64) this.pending.push(...encoded);
    else this.pushPart(encoded);
    return this;
  }

  message(field: number, body: ProtoWriter): this {
    this.tag(field, 2);
    this.rawVarint(body.length);
    body.flush();
    for (const part of body.parts) this.pushPart(part);
    return this;
  }

  packedVarints(field: number, values: readonly (number | bigint)[]): this {
    const body = new ProtoWriter();
    for (const v of values) body.rawVarint(v);
    return this.message(field, body);
  }

  /** The encoding as its parts, in order (large byte fields are the caller's own arrays). */
  chunks(): Uint8Array[] {
    this.flush();
    return [...this.parts];
  }

  finish(): Uint8Array {
    this.flush();
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const part of this.parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }
}
