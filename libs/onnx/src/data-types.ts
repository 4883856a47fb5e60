import type { Datatype } from '@quanta/tensor';

// ONNX TensorProto.DataType (onnx/onnx.proto3), with element widths and the KServe v2 datatype each
// travels as. Types KServe cannot carry (complex, float8, 4/2-bit) have datatype null.

/** ONNX TensorProto.DataType numbers. */
export const OnnxDataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  COMPLEX64: 14,
  COMPLEX128: 15,
  BFLOAT16: 16,
  FLOAT8E4M3FN: 17,
  FLOAT8E4M3FNUZ: 18,
  FLOAT8E5M2: 19,
  FLOAT8E5M2FNUZ: 20,
  UINT4: 21,
  INT4: 22,
  FLOAT4E2M1: 23,
  FLOAT8E8M0: 24,
  UINT2: 25,
  INT2: 26,
} as const;

export type OnnxDataTypeName = keyof typeof OnnxDataType;

export interface OnnxDataTypeInfo {
  readonly code: number;
  readonly name: OnnxDataTypeName;
  /** Bits per element; undefined for STRING (each element has its own length). */
  readonly bits: number | undefined;
  /** The KServe v2 datatype, or null when KServe has none. */
  readonly datatype: Datatype | null;
}

const BITS: Record<OnnxDataTypeName, number | undefined> = {
  FLOAT: 32,
  UINT8: 8,
  INT8: 8,
  UINT16: 16,
  INT16: 16,
  INT32: 32,
  INT64: 64,
  STRING: undefined,
  BOOL: 8,
  FLOAT16: 16,
  DOUBLE: 64,
  UINT32: 32,
  UINT64: 64,
  COMPLEX64: 64,
  COMPLEX128: 128,
  BFLOAT16: 16,
  FLOAT8E4M3FN: 8,
  FLOAT8E4M3FNUZ: 8,
  FLOAT8E5M2: 8,
  FLOAT8E5M2FNUZ: 8,
  UINT4: 4,
  INT4: 4,
  FLOAT4E2M1: 4,
  FLOAT8E8M0: 8,
  UINT2: 2,
  INT2: 2,
};

const KSERVE: Partial<Record<OnnxDataTypeName, Datatype>> = {
  FLOAT: 'FP32',
  UINT8: 'UINT8',
  INT8: 'INT8',
  UINT16: 'UINT16',
  INT16: 'INT16',
  INT32: 'INT32',
  INT64: 'INT64',
  STRING: 'BYTES',
  BOOL: 'BOOL',
  FLOAT16: 'FP16',
  DOUBLE: 'FP64',
  UINT32: 'UINT32',
  UINT64: 'UINT64',
  BFLOAT16: 'BF16',
};

const BY_CODE: ReadonlyMap<number, OnnxDataTypeInfo> = new Map(
  (Object.entries(OnnxDataType) as [OnnxDataTypeName, number][]).map(([name, code]) => [
    code,
    { code, name, bits: BITS[name], datatype: KSERVE[name] ?? null },
  ]),
);

/** The description of an ONNX element type number, or undefined when ONNX defines none (0 included). */
export function onnxDataType(code: number): OnnxDataTypeInfo | undefined {
  return BY_CODE.get(code);
}

/** Bytes taken by `count` elements of a fixed-width type (sub-byte types pack, rounding up). */
export function byteSizeOf(info: OnnxDataTypeInfo, count: number): number | undefined {
  return info.bits === undefined ? undefined : Math.ceil((count * info.bits) / 8);
}
