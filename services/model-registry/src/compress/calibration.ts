import { registry as pb } from '@quanta/contracts';
import { invalidArgument } from '@quanta/service-kit';
import { NpyError, TensorError, readNpy, readNpz, splitBatch, tensorFromJson } from '@quanta/tensor';
import type { Tensor } from '@quanta/tensor';

/** One calibration sample: a tensor for every graph input. */
export type Sample = Record<string, Tensor>;

/** The most samples a call measures, uploaded or generated. */
export const MAX_SAMPLES = 1000;

function describeFile(file: pb.CalibrationFile, index: number): string {
  return `calibration[${index}]${file.inputName === '' ? '' : ` (input "${file.inputName}")`}`;
}

/** The arrays of one file, by input name (the caller's name, the arrays' own, or the model's only input). */
function arraysOf(file: pb.CalibrationFile, index: number, onlyInput: string | undefined): Map<string, Tensor> {
  const what = describeFile(file, index);
  const named = (name: string | undefined): string => {
    const chosen = file.inputName !== '' ? file.inputName : (name ?? onlyInput);
    if (chosen === undefined || chosen === '') {
      throw invalidArgument(`${what}: input_name is required: the model has more than one input`);
    }
    return chosen;
  };
  try {
    switch (file.format) {
      case pb.CalibrationFormat.CALIBRATION_FORMAT_NPY:
        return new Map([[named(undefined), readNpy(file.data, what)]]);
      case pb.CalibrationFormat.CALIBRATION_FORMAT_NPZ:
        if (file.inputName !== '')
          throw invalidArgument(`${what}: an .npz file names its arrays itself; leave input_name empty`);
        return readNpz(file.data, what);
      case pb.CalibrationFormat.CALIBRATION_FORMAT_KSERVE_JSON: {
        let json: unknown;
        try {
          json = JSON.parse(Buffer.from(file.data).toString('utf8'));
        } catch (error: unknown) {
          throw invalidArgument(`${what}: not JSON: ${error instanceof Error ? error.message : String(error)}`);
        }
        const inputs =
          typeof json === 'object' && json !== null && !Array.isArray(json)
            ? (json as { inputs?: unknown }).inputs
            : undefined;
        if (Array.isArray(inputs)) {
          if (file.inputName !== '')
            throw invalidArgument(`${what}: a KServe request names its tensors itself; leave input_name empty`);
          return new Map(
            inputs.map((tensor: unknown, i) => {
              const parsed = tensorFromJson(tensor, { name: `${what}.inputs[${i}]` });
              if (parsed.name === undefined) throw invalidArgument(`${what}: inputs[${i}] has no name`);
              return [parsed.name, parsed] as const;
            }),
          );
        }
        const tensor = tensorFromJson(json, {});
        return new Map([[named(tensor.name), tensor]]);
      }
      default:
        throw invalidArgument(`${what}: format must be NPY, NPZ or KSERVE_JSON`);
    }
  } catch (error: unknown) {
    if (error instanceof NpyError || error instanceof TensorError)
      throw invalidArgument(`${what}: ${error.message}`, { cause: error });
    throw error;
  }
}

function shapeText(shape: readonly (number | bigint)[]): string {
  return `[${shape.map((d) => (Number(d) < 0 ? '?' : String(d))).join(', ')}]`;
}

/**
 * The caller's calibration files as samples. Each array holds one input's samples, one per row
 * along its first axis: with the input's rank, a row is a batch of one; with one more axis, a row
 * is a whole input. Every input must be given, each with the input's datatype, fixed dimensions and
 * the same number of samples.
 */
export function callerSamples(files: readonly pb.CalibrationFile[], inputs: readonly pb.TensorSignature[]): Sample[] {
  const onlyInput = inputs.length === 1 ? inputs[0]!.name : undefined;
  const arrays = new Map<string, Tensor>();
  files.forEach((file, index) => {
    for (const [name, tensor] of arraysOf(file, index, onlyInput)) {
      if (arrays.has(name)) throw invalidArgument(`calibration: input "${name}" is given twice`);
      arrays.set(name, tensor);
    }
  });
  const known = inputs.map((i) => `"${i.name}"`).join(', ');
  for (const name of arrays.keys()) {
    if (!inputs.some((i) => i.name === name))
      throw invalidArgument(`calibration: the model has no input "${name}"; its inputs are ${known}`);
  }
  let count: number | undefined;
  const rows = new Map<string, Tensor[]>();
  for (const input of inputs) {
    const tensor = arrays.get(input.name);
    if (tensor === undefined)
      throw invalidArgument(
        `calibration: no data for input "${input.name}"; every input needs samples (inputs: ${known})`,
      );
    if (tensor.datatype !== input.datatype) {
      throw invalidArgument(
        `calibration: input "${input.name}" is ${input.datatype}, the data given is ${tensor.datatype}`,
      );
    }
    const rank = input.shape.length;
    const stacked = tensor.shape.length === rank + 1;
    if (!stacked && (tensor.shape.length !== rank || rank === 0)) {
      throw invalidArgument(
        `calibration: input "${input.name}" has shape ${shapeText(input.shape)}; its data must have shape ` +
          `${shapeText(input.shape)} (samples along the first axis) or [samples, ...that], not ` +
          `${shapeText(tensor.shape)}`,
      );
    }
    const rowShape = stacked ? tensor.shape.slice(1) : [1, ...tensor.shape.slice(1)];
    input.shape.forEach((dim, axis) => {
      if (dim >= 0n && BigInt(rowShape[axis]!) !== dim) {
        throw invalidArgument(
          `calibration: input "${input.name}" has shape ${shapeText(input.shape)}; a sample of the data given ` +
            `has ${shapeText(rowShape)}`,
        );
      }
    });
    const n = tensor.shape[0]!;
    if (n === 0) throw invalidArgument(`calibration: input "${input.name}" has no samples`);
    if (count !== undefined && n !== count)
      throw invalidArgument(`calibration: input "${input.name}" has ${n} samples, others have ${count}`);
    count = n;
    if (n > MAX_SAMPLES) throw invalidArgument(`calibration: ${n} samples is over the maximum of ${MAX_SAMPLES}`);
    const split = splitBatch(tensor, new Array<number>(n).fill(1), { name: input.name });
    rows.set(
      input.name,
      split.map((row): Tensor => ({ ...row, name: input.name, shape: rowShape })),
    );
  }
  return Array.from({ length: count ?? 0 }, (_, i) =>
    Object.fromEntries(inputs.map((input) => [input.name, rows.get(input.name)![i]!])),
  );
}
