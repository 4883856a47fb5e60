// Every reason a byte string is not an ONNX model we can serve. Callers (the registry) map an
// OnnxError to INVALID_ARGUMENT / FAILED_PRECONDITION with its message; anything else that escapes
// inspection (a file that cannot be opened or read) is an I/O problem and is thrown unchanged.

/** Why the bytes were rejected, for callers that branch without parsing messages. */
export type OnnxProblem =
  | 'empty' // zero bytes
  | 'not-protobuf' // not protobuf wire format at all (bad wire type, field 0, overlong varint)
  | 'truncated' // a length or varint runs past the end of the file
  | 'malformed' // protobuf, but not a well-formed ONNX ModelProto (wrong wire type, bad sizes)
  | 'no-ir-version' // ModelProto.ir_version missing (or 0)
  | 'no-opset' // no opset_import (required since IR version 3)
  | 'no-graph' // ModelProto.graph missing
  | 'no-outputs' // the graph declares no outputs
  | 'unknown-elem-type'; // a tensor element type ONNX does not define (or UNDEFINED)

export class OnnxError extends Error {
  override readonly name = 'OnnxError';
  constructor(
    readonly problem: OnnxProblem,
    message: string,
    /** Byte offset in the file where the problem was found, when there is one. */
    readonly offset?: number,
  ) {
    super(message);
  }
}
