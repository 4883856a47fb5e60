import type * as ort from 'onnxruntime-node';
import { ORT_TYPE, type Datatype } from '@quanta/tensor';
import type { ModelSignature, TensorSpec } from './types.js';

// A model's signature as its onnxruntime session reports it. ORT gives symbolic dims as strings
// (`N`, `p2o.DynamicDimension.0`); the contract shows them as -1, and the symbol names are kept
// apart so that the sequence batcher can size a state tensor from a request's other inputs.

const DATATYPE_OF_ORT: ReadonlyMap<string, Datatype> = new Map(
  Object.entries(ORT_TYPE).flatMap(([datatype, type]) => (type === undefined ? [] : [[type, datatype as Datatype]])),
);

/** Per tensor name, the symbol of each dim (undefined for a fixed dim). */
export type DimSymbols = ReadonlyMap<string, readonly (string | undefined)[]>;

export interface SessionSignature {
  readonly signature: ModelSignature;
  readonly symbols: DimSymbols;
}

/** Thrown when a model cannot be served; the manager turns it into a FAILED load with this reason. */
export class SignatureError extends Error {
  override readonly name = 'SignatureError';
}

type Metadata = ort.InferenceSession['inputMetadata'][number];

function specOf(meta: Metadata, role: 'input' | 'output', symbols: Map<string, (string | undefined)[]>): TensorSpec {
  if (!meta.isTensor) {
    throw new SignatureError(
      `${role} "${meta.name}" is not a tensor (a sequence, map or optional); only tensor ${role}s can be served`,
    );
  }
  const datatype = DATATYPE_OF_ORT.get(meta.type);
  if (datatype === undefined) {
    throw new SignatureError(
      `${role} "${meta.name}" has onnxruntime type ${meta.type}, ` +
        'which has no KServe datatype that onnxruntime-node can feed',
    );
  }
  // ORT reports an undeclared shape as [], the same as a scalar's; a model that declares no shape
  // is rare enough that treating it as a scalar (and so unbatchable) is the safe reading.
  const shape = meta.shape.map((dim) => (typeof dim === 'number' && dim >= 0 ? dim : -1));
  symbols.set(
    meta.name,
    meta.shape.map((dim) => (typeof dim === 'string' && dim !== '' ? dim : undefined)),
  );
  return { name: meta.name, datatype, shape };
}

/** True when the spec has a dynamic dim 0, so that requests can be stacked along it. */
function hasBatchAxis(spec: TensorSpec): boolean {
  return spec.shape !== null && spec.shape.length >= 1 && spec.shape[0] === -1;
}

export function signatureOf(session: Pick<ort.InferenceSession, 'inputMetadata' | 'outputMetadata'>): SessionSignature {
  const symbols = new Map<string, (string | undefined)[]>();
  const inputs = session.inputMetadata.map((meta) => specOf(meta, 'input', symbols));
  const outputs = session.outputMetadata.map((meta) => specOf(meta, 'output', symbols));
  const batchable = inputs.length > 0 && inputs.every(hasBatchAxis) && outputs.every(hasBatchAxis);
  return { signature: { inputs, outputs, batchable }, symbols };
}

export function formatSpecShape(shape: readonly number[] | null): string {
  return shape === null ? 'any shape' : `[${shape.join(',')}]`;
}
