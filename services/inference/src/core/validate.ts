import type { Tensor } from '@quanta/tensor';
import { formatSpecShape } from './signature.js';
import { InferError, type InferRequest, type ModelSignature, type TensorSpec } from './types.js';

// A request checked against the model's signature before it is queued, so that a bad request
// fails alone with a message naming the tensor, never inside a merged batch.

export interface ValidateOptions {
  /** Inputs the server may supply (a stateful model's state inputs). */
  readonly optionalInputs?: ReadonlySet<string>;
}

function names(specs: readonly TensorSpec[]): string {
  return specs.map((spec) => spec.name).join(', ');
}

function formatShape(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** onnxruntime string tensors hold text: a bad element must fail its own request, not a merged batch. */
function checkUtf8(model: string, spec: TensorSpec, data: readonly Uint8Array[]): void {
  for (const [index, element] of data.entries()) {
    try {
      utf8.decode(element);
    } catch {
      throw new InferError(
        'INVALID_ARGUMENT',
        `model "${model}" input "${spec.name}": BYTES element ${index} is not valid UTF-8, ` +
          'which an onnxruntime string tensor needs',
      );
    }
  }
}

function checkTensor(model: string, spec: TensorSpec, tensor: Tensor): void {
  if (tensor.datatype !== spec.datatype) {
    throw new InferError(
      'INVALID_ARGUMENT',
      `model "${model}" input "${spec.name}": expected datatype ${spec.datatype}, got ${tensor.datatype}`,
    );
  }
  if (tensor.datatype === 'BYTES') checkUtf8(model, spec, tensor.data);
  if (spec.shape === null) return;
  const fits =
    tensor.shape.length === spec.shape.length && spec.shape.every((dim, i) => dim === -1 || dim === tensor.shape[i]);
  if (!fits) {
    throw new InferError(
      'INVALID_ARGUMENT',
      `model "${model}" input "${spec.name}": ` +
        `expected shape ${formatSpecShape(spec.shape)} (-1: any size), got ${formatShape(tensor.shape)}`,
    );
  }
}

interface SignatureLookups {
  readonly specs: ReadonlyMap<string, TensorSpec>;
  readonly outputNames: readonly string[];
}

// Built once per signature (a loaded model keeps its signature), not per request.
const lookups = new WeakMap<ModelSignature, SignatureLookups>();

function lookupsOf(signature: ModelSignature): SignatureLookups {
  let found = lookups.get(signature);
  if (found === undefined) {
    found = {
      specs: new Map(signature.inputs.map((spec) => [spec.name, spec])),
      outputNames: signature.outputs.map((spec) => spec.name),
    };
    lookups.set(signature, found);
  }
  return found;
}

/**
 * Checks the request's inputs and requested outputs and returns the outputs to give back, in
 * order (all of the model's when none are asked for).
 */
export function validateRequest(
  model: string,
  signature: ModelSignature,
  request: InferRequest,
  options: ValidateOptions = {},
): string[] {
  const { specs, outputNames } = lookupsOf(signature);
  for (const name of request.inputs.keys()) {
    if (!specs.has(name)) {
      throw new InferError(
        'INVALID_ARGUMENT',
        `model "${model}" has no input "${name}"; its inputs are: ${names(signature.inputs)}`,
      );
    }
  }
  for (const spec of signature.inputs) {
    const tensor = request.inputs.get(spec.name);
    if (tensor === undefined) {
      if (options.optionalInputs?.has(spec.name) === true) continue;
      throw new InferError(
        'INVALID_ARGUMENT',
        `model "${model}" needs input "${spec.name}" (${spec.datatype} ${formatSpecShape(spec.shape)}), ` +
          'which the request lacks',
      );
    }
    checkTensor(model, spec, tensor);
  }
  const requested = request.outputs ?? [];
  if (requested.length === 0) return [...outputNames];
  const seen = new Set<string>();
  for (const name of requested) {
    if (!outputNames.includes(name)) {
      throw new InferError(
        'INVALID_ARGUMENT',
        `model "${model}" has no output "${name}"; its outputs are: ${names(signature.outputs)}`,
      );
    }
    if (seen.has(name)) {
      throw new InferError('INVALID_ARGUMENT', `model "${model}": output "${name}" is requested more than once`);
    }
    seen.add(name);
  }
  return [...requested];
}
