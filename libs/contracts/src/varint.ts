// Protobuf base-128 varints for the hand-written codecs (infer-codec, registry-codec, and the
// registry's own server codecs), on non-negative safe integers.

/** The bytes of `n`'s varint. */
export function varintLength(n: number): number {
  let length = 1;
  for (let v = n; v >= 0x80; v = Math.floor(v / 128)) length += 1;
  return length;
}

/** Writes `n`'s varint at `offset` of `target`; returns the offset after it. */
export function writeVarint(target: Uint8Array, offset: number, n: number): number {
  let v = n;
  let at = offset;
  while (v >= 0x80) {
    target[at++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  target[at++] = v;
  return at;
}

/**
 * The varint at `offset` of `bytes`: [value, the offset after it], or undefined when it runs off the
 * end or does not end within `maxBytes` bytes (5 for a uint32, 8 keeps the value under 2^53).
 */
export function readVarint(bytes: Uint8Array, offset: number, maxBytes: number): [number, number] | undefined {
  let value = 0;
  let scale = 1;
  for (let at = offset; at < bytes.length && at < offset + maxBytes; at++) {
    const b = bytes[at]!;
    value += (b & 0x7f) * scale;
    if ((b & 0x80) === 0) return [value, at + 1];
    scale *= 128;
  }
  return undefined;
}
