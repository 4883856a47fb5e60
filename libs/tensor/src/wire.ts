import { emptyContents, tensorFromContents, tensorToContents, type TensorContents } from './contents.js';
import { parseDatatype } from './datatype.js';
import { tensorError, type TensorContext, type TensorRole } from './errors.js';
import { tensorToRaw, tensorFromRaw } from './raw.js';
import { parseShape } from './shape.js';
import type { Tensor } from './tensor.js';

/** The parts of a KServe InferInputTensor / InferOutputTensor that carry the tensor. */
export interface WireTensor {
  name: string;
  datatype: string;
  shape: readonly (bigint | number)[];
  contents?: TensorContents | undefined;
}

/**
 * Reads a request input (or response output) as it arrives: typed `contents`, or the matching
 * entry of raw_input_contents / raw_output_contents (`raw`), never both.
 */
export function tensorFromWire(wire: WireTensor, raw?: Uint8Array, role: TensorRole = 'input'): Tensor {
  const context: TensorContext = { name: wire.name, role };
  const datatype = parseDatatype(wire.datatype, context);
  const shape = parseShape(wire.shape, context);
  if (raw === undefined) return tensorFromContents(datatype, shape, wire.contents ?? emptyContents(), context);
  const contents = wire.contents;
  if (contents !== undefined && Object.values(contents).some((values: unknown[]) => values.length > 0)) {
    throw tensorError(
      context,
      'contents',
      `has both typed contents and ${role === 'output' ? 'raw_output_contents' : 'raw_input_contents'}; send one`,
    );
  }
  return tensorFromRaw(datatype, shape, raw, context);
}

/**
 * Writes a tensor for the wire: `raw` (no copy for fixed-size datatypes) when asked or when the
 * datatype has no typed contents field (FP16, BF16), typed `contents` otherwise.
 */
export function tensorToWire(
  tensor: Tensor,
  options: { raw: boolean; role?: TensorRole },
): { wire: WireTensor & { shape: bigint[] }; raw?: Buffer } {
  const head = { name: tensor.name ?? '', datatype: tensor.datatype, shape: tensor.shape.map(BigInt) };
  if (options.raw || tensor.datatype === 'FP16' || tensor.datatype === 'BF16') {
    return { wire: head, raw: tensorToRaw(tensor) };
  }
  return { wire: { ...head, contents: tensorToContents(tensor, { name: tensor.name, role: options.role }) } };
}
