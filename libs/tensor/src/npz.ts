// NumPy's .npz format: a zip archive with one .npy file per array, named `<array>.npy`, stored
// (np.savez) or deflated (np.savez_compressed). Only what numpy writes is taken: no encryption,
// no multi-disk archives; ZIP64 sizes are read from the extra field numpy writes for big arrays.
import { inflateRawSync } from 'node:zlib';
import { NpyError, readNpy } from './npy.js';
import type { Tensor } from './tensor.js';

const END_OF_CENTRAL_DIRECTORY = 0x06054b50;
const CENTRAL_HEADER = 0x02014b50;
const LOCAL_HEADER = 0x04034b50;

/** Sizes and offset from a ZIP64 extended-information extra field, where the 32-bit ones are full. */
function zip64(extra: Buffer, sizes: { compressed: number; plain: number; offset: number }): void {
  let at = 0;
  while (at + 4 <= extra.length) {
    const id = extra.readUInt16LE(at);
    const length = extra.readUInt16LE(at + 2);
    if (id === 0x0001) {
      let field = at + 4;
      const next = (): number => {
        const value = Number(extra.readBigUInt64LE(field));
        field += 8;
        return value;
      };
      if (sizes.plain === 0xffffffff) sizes.plain = next();
      if (sizes.compressed === 0xffffffff) sizes.compressed = next();
      if (sizes.offset === 0xffffffff) sizes.offset = next();
      return;
    }
    at += 4 + length;
  }
}

/** Reads a .npz archive into its arrays, keyed by name (the member's name without `.npy`). */
export function readNpz(bytes: Uint8Array, what = 'the .npz file'): Map<string, Tensor> {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // The end-of-central-directory record is in the last 22 + 65535 bytes (its comment is at most 64 KiB).
  let end = -1;
  for (let at = buffer.length - 22; at >= Math.max(0, buffer.length - 22 - 0xffff); at -= 1) {
    if (buffer.readUInt32LE(at) === END_OF_CENTRAL_DIRECTORY) {
      end = at;
      break;
    }
  }
  if (end < 0) throw new NpyError(`${what} is not a .npz file (no zip end-of-central-directory record)`);
  const count = buffer.readUInt16LE(end + 10);
  let at = buffer.readUInt32LE(end + 16);
  const arrays = new Map<string, Tensor>();
  for (let i = 0; i < count; i += 1) {
    if (at + 46 > buffer.length || buffer.readUInt32LE(at) !== CENTRAL_HEADER)
      throw new NpyError(`${what}: damaged zip central directory`);
    const flags = buffer.readUInt16LE(at + 8);
    const method = buffer.readUInt16LE(at + 10);
    const sizes = {
      compressed: buffer.readUInt32LE(at + 20),
      plain: buffer.readUInt32LE(at + 24),
      offset: buffer.readUInt32LE(at + 42),
    };
    const nameLength = buffer.readUInt16LE(at + 28);
    const extraLength = buffer.readUInt16LE(at + 30);
    const commentLength = buffer.readUInt16LE(at + 32);
    const member = buffer.subarray(at + 46, at + 46 + nameLength).toString('utf8');
    zip64(buffer.subarray(at + 46 + nameLength, at + 46 + nameLength + extraLength), sizes);
    at += 46 + nameLength + extraLength + commentLength;
    if ((flags & 1) !== 0) throw new NpyError(`${what}: member "${member}" is encrypted`);
    if (!member.endsWith('.npy')) throw new NpyError(`${what}: member "${member}" is not a .npy array`);
    const local = sizes.offset;
    if (local + 30 > buffer.length || buffer.readUInt32LE(local) !== LOCAL_HEADER)
      throw new NpyError(`${what}: damaged zip entry "${member}"`);
    const dataStart = local + 30 + buffer.readUInt16LE(local + 26) + buffer.readUInt16LE(local + 28);
    const stored = buffer.subarray(dataStart, dataStart + sizes.compressed);
    if (stored.length !== sizes.compressed) throw new NpyError(`${what}: member "${member}" is truncated`);
    let plain: Buffer;
    if (method === 0) plain = stored;
    else if (method === 8) plain = inflateRawSync(stored);
    else
      throw new NpyError(
        `${what}: member "${member}" uses zip method ${method}; numpy writes stored (0) or deflated (8)`,
      );
    const name = member.slice(0, -'.npy'.length);
    // readNpy views the bytes: copy a stored member so that its data is aligned for its typed array.
    arrays.set(name, readNpy(method === 0 ? Buffer.from(plain) : plain, `${what}: ${member}`));
  }
  return arrays;
}
