// .npy files are read and written by @quanta/tensor (the registry reads calibration files with the
// same code); here its errors become the CLI's one-line errors.
import { NpyError, readNpy as readNpyBytes, writeNpy as writeNpyTensor, type Tensor } from '@quanta/tensor';
import { CliError } from './errors.js';

function asCliError<T>(run: () => T, hint = ''): T {
  try {
    return run();
  } catch (error: unknown) {
    if (error instanceof NpyError) throw new CliError(`${error.message}${hint}`);
    throw error;
  }
}

/** Reads a .npy file's bytes into a tensor (the data is viewed, not copied, where alignment allows). */
export function readNpy(bytes: Uint8Array, what = 'the .npy file'): Tensor {
  return asCliError(() => readNpyBytes(bytes, what));
}

/** Writes a tensor as a .npy file, laid out as numpy.save does. */
export function writeNpy(tensor: Tensor): Buffer {
  return asCliError(() => writeNpyTensor(tensor), '; use --output-format json');
}
