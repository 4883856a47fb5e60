import { open } from 'node:fs/promises';
import type { OnnxModelInfo } from './model-info.js';
import { scanModel } from './scan-model.js';
import { WireCursor, type Scan } from './wire-cursor.js';

// The two drivers of the one scanner: an in-memory buffer (synchronous, zero copy) and a file read
// through a FileHandle in chunks, so memory stays bounded by the chunk size whatever the model size.

/** Bytes read from a file per request (large fields are skipped, never read). */
export const READ_CHUNK_BYTES = 1024 * 1024;

function runOnBuffer<T>(scan: Scan<T>, bytes: Uint8Array): T {
  let step = scan.next();
  while (step.done !== true) {
    const { offset, length } = step.value;
    step = scan.next(bytes.subarray(offset, offset + length));
  }
  return step.value;
}

/**
 * Inspects an ONNX model held in memory. Throws OnnxError (with `problem` and a message naming what
 * is wrong) when the bytes are not a valid ONNX model.
 */
export function inspectOnnx(bytes: Uint8Array): OnnxModelInfo {
  return runOnBuffer(scanModel(new WireCursor(bytes.length, READ_CHUNK_BYTES)), bytes);
}

export interface InspectFileOptions {
  /** Bytes per read; default READ_CHUNK_BYTES. */
  readonly chunkBytes?: number;
  /** Called after each read (for benchmarks and tests: how much of the file was actually read). */
  readonly onRead?: (offset: number, length: number) => void;
}

/** Reads `length` bytes at `offset` of a source (a decrypting reader, object storage, ...). */
export type ReadAt = (offset: number, length: number) => Promise<Uint8Array>;

/**
 * Inspects an ONNX model of `size` bytes read through `read`, about 1 MiB at a time, seeking past
 * tensor payloads (as inspectOnnxFile, for sources that are not plaintext files). A read that returns
 * fewer bytes than asked means the source ended there (reported as truncated).
 */
export async function inspectOnnxSource(
  size: number,
  read: ReadAt,
  options: Pick<InspectFileOptions, 'chunkBytes'> = {},
): Promise<OnnxModelInfo> {
  const scan = scanModel(new WireCursor(size, options.chunkBytes ?? READ_CHUNK_BYTES));
  let step = scan.next();
  while (step.done !== true) {
    const { offset, length } = step.value;
    step = scan.next(await read(offset, length));
  }
  return step.value;
}

/**
 * Inspects an ONNX model file without loading it: reads about 1 MiB at a time and seeks past tensor
 * payloads. Throws OnnxError when the file is not a valid ONNX model; I/O errors (missing file,
 * permissions) are thrown as they come from node:fs.
 */
export async function inspectOnnxFile(path: string, options: InspectFileOptions = {}): Promise<OnnxModelInfo> {
  const chunk = options.chunkBytes ?? READ_CHUNK_BYTES;
  const file = await open(path, 'r');
  try {
    const { size } = await file.stat();
    const scan = scanModel(new WireCursor(size, chunk));
    // One reusable buffer: the cursor drops its window before asking for the next one.
    let buffer = new Uint8Array(chunk);
    let step = scan.next();
    while (step.done !== true) {
      const { offset, length } = step.value;
      if (buffer.length < length) buffer = new Uint8Array(length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await file.read(buffer, got, length - got, offset + got);
        if (bytesRead === 0) break; // shrank under us: the cursor reports it as truncated
        got += bytesRead;
      }
      options.onRead?.(offset, got);
      step = scan.next(buffer.subarray(0, got));
    }
    return step.value;
  } finally {
    await file.close();
  }
}
