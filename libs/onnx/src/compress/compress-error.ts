// The one error compressModel throws for a request it cannot carry out: bad options, or a model
// this rewriter does not take (not ONNX, weights in external files). Callers (the registry) map it
// to INVALID_ARGUMENT / FAILED_PRECONDITION with its message.

/** Why compression was refused, for callers that branch without parsing messages. */
export type CompressProblem =
  | 'bad-options' // unknown method, sparsity missing, out of range or given to a method without it
  | 'bad-model' // not a ModelProto this rewriter can decode
  | 'external-data'; // an initializer or constant keeps its data in a file beside the model

export class CompressError extends Error {
  override readonly name = 'CompressError';
  constructor(
    readonly problem: CompressProblem,
    message: string,
  ) {
    super(message);
  }
}
