// Every tensor problem is a TensorError: the serving layer maps it to INVALID_ARGUMENT (it is
// always the caller's data that is wrong), so the message must say which tensor and what exactly.

/** What kind of problem, for callers that want to branch without parsing messages. */
export type TensorProblem =
  | 'datatype' // unknown datatype, or data of the wrong type for the datatype
  | 'shape' // negative, non-integer or overflowing dims; batch shapes that do not line up
  | 'size' // element or byte count does not match the shape
  | 'contents' // typed contents in the wrong field, or values out of range for the datatype
  | 'framing' // malformed BYTES length prefixes
  | 'unsupported'; // a valid tensor that cannot travel this way (FP16 in typed contents, BF16 to ORT)

/** Whether the tensor is a request input, a response output, or neither. */
export type TensorRole = 'input' | 'output' | 'tensor';

/** Where a tensor is named in error messages: `input "x"`, `output "y"`, `tensor "z"`, or `tensor`. */
export interface TensorContext {
  readonly name?: string | undefined;
  readonly role?: TensorRole | undefined;
}

export class TensorError extends Error {
  override readonly name = 'TensorError';
  constructor(
    message: string,
    readonly problem: TensorProblem,
    readonly tensorName?: string,
  ) {
    super(message);
  }
}

/** `input "x"` / `tensor` etc.; JSON.stringify quotes and escapes the name like a string literal. */
export function describeTensor(context: TensorContext = {}): string {
  const role = context.role ?? 'tensor';
  return context.name === undefined ? role : `${role} ${JSON.stringify(context.name)}`;
}

export function tensorError(context: TensorContext, problem: TensorProblem, what: string): TensorError {
  return new TensorError(`${describeTensor(context)}: ${what}`, problem, context.name);
}

export function formatShape(shape: readonly (number | bigint)[]): string {
  return `[${shape.join(',')}]`;
}
