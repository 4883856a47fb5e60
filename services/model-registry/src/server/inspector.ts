import type { registry as pb } from '@quanta/contracts';
import { OnnxError, inspectOnnxSource } from '@quanta/onnx';
import type { OnnxValueInfo, ReadAt } from '@quanta/onnx';
import { invalidArgument } from '@quanta/service-kit';

/**
 * An uploaded file as the inspector reads it: its size and random access to its plaintext (decrypted from the sealed
 * blob as asked).
 */
export interface InspectSource {
  readonly size: number;
  readonly read: ReadAt;
}

/** Reads an ONNX file's signature; throws INVALID_ARGUMENT saying why a file is not a usable model. */
export type Inspector = (source: InspectSource) => Promise<pb.OnnxSignature>;

function tensorSignature(value: OnnxValueInfo): pb.TensorSignature {
  return {
    name: value.name,
    // Non-tensor values (sequences, maps) have no KServe datatype: show what ONNX calls them.
    datatype: value.datatype ?? value.onnxType ?? value.kind.toUpperCase(),
    shape: (value.shape ?? []).map((d) => BigInt(d)),
    dimNames: (value.dimParams ?? []).map((n) => n ?? ''),
  };
}

export const inspectOnnxModel: Inspector = async (source) => {
  try {
    const info = await inspectOnnxSource(source.size, source.read);
    if (info.hasExternalData) {
      throw invalidArgument(
        'the ONNX model keeps weights in external data files; upload a self-contained model (onnx.save(..., ' +
          'save_as_external_data=False))',
      );
    }
    return {
      irVersion: info.irVersion,
      producerName: info.producerName,
      producerVersion: info.producerVersion,
      opsetImports: info.opsetImports.map((o) => ({
        domain: o.domain === 'ai.onnx' ? '' : o.domain,
        version: o.version,
      })),
      inputs: info.inputs.map(tensorSignature),
      outputs: info.outputs.map(tensorSignature),
      initializerCount: info.initializerCount,
      parameterCount: BigInt(info.parameterCount),
      parameterBytes: BigInt(info.parameterBytes),
    };
  } catch (error: unknown) {
    if (error instanceof OnnxError)
      throw invalidArgument(`the file is not a valid ONNX model (${error.problem}): ${error.message}`, {
        cause: error,
      });
    throw error;
  }
};
