import type { Datatype } from '@quanta/tensor';
import type { OnnxDataTypeName } from './data-types.js';

/** What a graph input or output (or an element of one) is. */
export type OnnxValueKind = 'tensor' | 'sparse_tensor' | 'sequence' | 'map' | 'optional' | 'opaque';

export interface OnnxTypeInfo {
  readonly kind: OnnxValueKind;
  /** ONNX TensorProto.DataType of a tensor or sparse tensor's elements (a map's key type); 0 otherwise. */
  readonly elemType: number;
  /** The ONNX name of elemType (`FLOAT`, `INT64`, ...), null when there is none. */
  readonly onnxType: OnnxDataTypeName | null;
  /**
   * The KServe v2 datatype (`FP32`, `INT64`, `BYTES` for strings, ...); null for non-tensors and
   * types KServe lacks.
   */
  readonly datatype: Datatype | null;
  /** Dims, -1 for a symbolic or unknown dim; null when the model declares no shape (any rank). */
  readonly shape: readonly number[] | null;
  /** Per dim: its symbolic name (`dim_param`, e.g. `N`), or null for a fixed or unnamed dim. */
  readonly dimParams: readonly (string | null)[] | null;
  /** A sequence's or optional's element type, a map's value type. */
  readonly element?: OnnxTypeInfo;
}

export interface OnnxValueInfo extends OnnxTypeInfo {
  readonly name: string;
}

export interface OnnxOpsetImport {
  /** '' (or 'ai.onnx') is the standard operator set. */
  readonly domain: string;
  readonly version: number;
}

export interface OnnxInitializerInfo {
  readonly name: string;
  readonly elemType: number;
  readonly onnxType: OnnxDataTypeName;
  readonly datatype: Datatype | null;
  readonly dims: readonly number[];
  /** Product of dims (for a sparse initializer: of its dense shape). */
  readonly elementCount: number;
  /** Bytes of the stored values: raw_data length, or elements times element size (strings: their lengths). */
  readonly byteSize: number;
  /** Data stored outside the model file (data_location EXTERNAL). */
  readonly external: boolean;
  /** external_data `location`, relative to the model file; null when the data is inside. */
  readonly location: string | null;
  readonly sparse: boolean;
}

export interface OnnxModelInfo {
  readonly fileSize: number;
  readonly irVersion: number;
  readonly producerName: string;
  readonly producerVersion: string;
  readonly domain: string;
  readonly modelVersion: number;
  /** At most the first 4 KiB of the model's doc_string. */
  readonly docString: string;
  readonly opsetImports: readonly OnnxOpsetImport[];
  readonly metadata: Readonly<Record<string, string>>;
  readonly graphName: string;
  /** Inputs a caller must feed: graph inputs that are not initializers (what onnxruntime lists). */
  readonly inputs: readonly OnnxValueInfo[];
  readonly outputs: readonly OnnxValueInfo[];
  /** Graph inputs that also have an initializer: optional, overridable, left out of `inputs`. */
  readonly initializerInputs: readonly OnnxValueInfo[];
  readonly initializerCount: number;
  /** Sum of elementCount over initializers (Constant node tensors are in constantParameterCount). */
  readonly parameterCount: number;
  /** Sum of byteSize over initializers. */
  readonly parameterBytes: number;
  /** Tensors held by Constant nodes (where some exporters keep all weights), counted apart. */
  readonly constantCount: number;
  /** Sum of element counts of Constant node tensors. */
  readonly constantParameterCount: number;
  readonly constantBytes: number;
  /** Whether any initializer keeps its data in an external file. */
  readonly hasExternalData: boolean;
  readonly initializers: readonly OnnxInitializerInfo[];
  readonly nodeCount: number;
  /** Node count per operator, keyed `Conv` (standard domain) or `com.microsoft:FusedConv`. */
  readonly operators: Readonly<Record<string, number>>;
}
