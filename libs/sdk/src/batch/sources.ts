// Dataset readers for batchInfer. Each reads lazily, in a fixed order, holding a few records at a
// time (an .npz compressed by numpy is the exception: it is read whole).
import { createReadStream } from 'node:fs';
import { open, readdir, readFile, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { readNpy, readNpz, tensorFromJson, tensorFromRaw, type Tensor } from '@quanta/tensor/core';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';
import { parseNpyHeader, type NpyLayout } from './npy-file.js';
import type { BatchRecord, BatchSource, ModelSignature, TensorSpec } from './types.js';

/** A Parquet cell as an id: strings, numbers and bigints as they print. */
const cellText = (value: unknown): string | undefined =>
  typeof value === 'string' || typeof value === 'number' || typeof value === 'bigint' ? String(value) : undefined;

const inputNames = (model: ModelSignature): string => model.inputs.map((i) => i.name).join(', ');

const message = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** The model's input called `name`, or its only input when `name` is not given. */
function inputOf(model: ModelSignature, name: string | undefined, what: string): TensorSpec {
  if (name !== undefined) {
    const input = model.inputs.find((i) => i.name === name);
    if (input === undefined)
      throw new Error(`${what}: model "${model.name}" has no input "${name}"; its inputs: ${inputNames(model)}`);
    return input;
  }
  const first = model.inputs[0];
  if (first === undefined) throw new Error(`model "${model.name}" has no inputs`);
  return first;
}

/**
 * The shape one row of `count` values takes for `input`: its shape with each dynamic dim 1 when
 * the fixed dims hold `count` values ([-1,3,32,32] for 3072 values, [-1,-1,4] for 4), else [1, count].
 */
function rowShape(input: TensorSpec, count: number): number[] {
  const dims = input.shape.map((d) => (d < 0 ? 1 : d));
  return input.shape.length > 0 && dims.reduce((a, b) => a * b, 1) === count ? dims : [1, count];
}

/** A tensor of the values of one row, for `input` (plain numbers, bigints or booleans). */
function rowTensor(input: TensorSpec, values: readonly unknown[]): Tensor {
  const shape = rowShape(input, values.length);
  if (input.datatype === 'FP32' || input.datatype === 'FP64') {
    const data = input.datatype === 'FP32' ? new Float32Array(values.length) : new Float64Array(values.length);
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      const n =
        typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : typeof v === 'boolean' ? Number(v) : NaN;
      if (typeof v !== 'number' && typeof v !== 'bigint' && typeof v !== 'boolean')
        throw new Error(`value ${i + 1} is ${JSON.stringify(v)}, not a number`);
      data[i] = n;
    }
    return { name: input.name, datatype: input.datatype, shape, data } as Tensor;
  }
  return {
    ...tensorFromJson({ datatype: input.datatype, shape, data: [...values] }, { name: input.name, role: 'input' }),
    name: input.name,
  };
}

/** Gives a loaded tensor the leading row dim its input has, when it was saved without one ([3,32,32] → [1,3,32,32]). */
function withRowDim(tensor: Tensor, input: TensorSpec | undefined): Tensor {
  if (input === undefined || tensor.shape.length + 1 !== input.shape.length) return tensor;
  return { ...tensor, shape: [1, ...tensor.shape] };
}

// ---------------------------------------------------------------- a folder of .npy files

/**
 * A folder of `.npy` files, one record per id in name order: `<id>.npy` for a model with one input,
 * or `<id>.<input>.npy` for each input of a model with several. A file saved without the row dim
 * gets it ([3,32,32] for an input [-1,3,32,32]).
 */
export function npyFolderSource(dir: string): BatchSource {
  let total: number | undefined;
  let done = 0;
  return {
    total: () => total,
    fraction: () => (total === undefined || total === 0 ? undefined : done / total),
    async *records(model) {
      const names = (await readdir(dir)).filter((n) => n.endsWith('.npy'));
      const entries = names.map((file) => {
        const base = file.slice(0, -'.npy'.length);
        const input = model.inputs.find((i) => model.inputs.length > 1 && base.endsWith(`.${i.name}`));
        if (input !== undefined) return { id: base.slice(0, -(input.name.length + 1)), input: input.name, file };
        if (model.inputs.length > 1) {
          throw new Error(
            `${join(dir, file)}: model "${model.name}" has several inputs; ` +
              `name files <id>.<input>.npy (${inputNames(model)})`,
          );
        }
        return { id: base, input: model.inputs[0]?.name ?? '', file };
      });
      entries.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.input < b.input ? -1 : a.input > b.input ? 1 : 0));
      const ids: { id: string; files: { input: string; file: string }[] }[] = [];
      for (const e of entries) {
        const last = ids[ids.length - 1];
        if (last?.id === e.id) last.files.push(e);
        else ids.push({ id: e.id, files: [e] });
      }
      total = ids.length;
      for (const { id, files } of ids) {
        let record: BatchRecord;
        try {
          const inputs: Tensor[] = [];
          for (const { input, file } of files) {
            const path = join(dir, file);
            const tensor = readNpy(await readFile(path), path);
            inputs.push({
              ...withRowDim(
                tensor,
                model.inputs.find((i) => i.name === input),
              ),
              name: input,
            });
          }
          record = { id, inputs };
        } catch (error: unknown) {
          record = { id, inputs: [], error: message(error) };
        }
        done += 1;
        yield record;
      }
    },
  };
}

// ---------------------------------------------------------------- one .npy file, a record per row

const ROWS_PER_READ = 256;

/** One `.npy` file of rows for a one-input model: record i is row i (id "i"), read from disk as needed. */
export function npyRowsSource(file: string, options: { input?: string } = {}): BatchSource {
  let total: number | undefined;
  let done = 0;
  return {
    total: () => total,
    fraction: () => (total === undefined || total === 0 ? undefined : done / total),
    async *records(model) {
      const input = inputOf(model, options.input, file);
      const handle = await open(file, 'r');
      try {
        const head = Buffer.alloc(65536 + 12);
        const { bytesRead } = await handle.read(head, 0, head.length, 0);
        const layout = parseNpyHeader(head.subarray(0, bytesRead), file);
        const rows = layout.shape[0]!;
        total = rows;
        const rowShape = [1, ...layout.shape.slice(1)];
        for (let first = 0; first < rows; first += ROWS_PER_READ) {
          const count = Math.min(ROWS_PER_READ, rows - first);
          const buffer = Buffer.alloc(count * layout.rowBytes);
          const read = await handle.read(buffer, 0, buffer.length, layout.dataOffset + first * layout.rowBytes);
          if (read.bytesRead !== buffer.length)
            throw new Error(`${file}: truncated (rows ${first}..${first + count - 1} are missing)`);
          for (let k = 0; k < count; k++) {
            const bytes = buffer.subarray(k * layout.rowBytes, (k + 1) * layout.rowBytes);
            const tensor = tensorFromRaw(layout.datatype, rowShape, bytes);
            done += 1;
            yield { id: String(first + k), inputs: [{ ...withRowDim(tensor, input), name: input.name }] };
          }
        }
      } finally {
        await handle.close();
      }
    },
  };
}

// ---------------------------------------------------------------- .npz

interface StoredMember {
  readonly name: string;
  /** Where the member's .npy bytes start in the archive. */
  readonly offset: number;
}

/**
 * The members of a zip when every one is stored uncompressed (np.savez), with where each one's
 * bytes start; undefined when one is compressed (np.savez_compressed) or needs ZIP64 sizes.
 */
async function storedMembers(handle: FileHandle, file: string): Promise<StoredMember[] | undefined> {
  const { size } = await handle.stat();
  const tail = Buffer.alloc(Math.min(size, 22 + 0xffff));
  await handle.read(tail, 0, tail.length, size - tail.length);
  let end = -1;
  for (let at = tail.length - 22; at >= 0; at -= 1) {
    if (tail.readUInt32LE(at) === 0x06054b50) {
      end = at;
      break;
    }
  }
  if (end < 0) throw new Error(`${file} is not a .npz file (no zip end-of-central-directory record)`);
  const count = tail.readUInt16LE(end + 10);
  const directory = Buffer.alloc(tail.readUInt32LE(end + 12));
  const directoryAt = tail.readUInt32LE(end + 16);
  if (count === 0xffff || directoryAt === 0xffffffff) return undefined;
  await handle.read(directory, 0, directory.length, directoryAt);
  const members: StoredMember[] = [];
  const local = Buffer.alloc(30);
  for (let i = 0, at = 0; i < count; i += 1) {
    if (directory.readUInt32LE(at) !== 0x02014b50) throw new Error(`${file}: damaged zip central directory`);
    const method = directory.readUInt16LE(at + 10);
    const nameLength = directory.readUInt16LE(at + 28);
    const localAt = directory.readUInt32LE(at + 42);
    const name = directory.subarray(at + 46, at + 46 + nameLength).toString('utf8');
    if (method !== 0 || directory.readUInt32LE(at + 20) === 0xffffffff || localAt === 0xffffffff) return undefined;
    await handle.read(local, 0, 30, localAt);
    members.push({ name, offset: localAt + 30 + local.readUInt16LE(26) + local.readUInt16LE(28) });
    at += 46 + nameLength + directory.readUInt16LE(at + 30) + directory.readUInt16LE(at + 32);
  }
  return members;
}

/** Each array of an .npz under the model input it fills (`arr_0` is taken for a model with one input). */
function arrayInputs<T>(
  arrays: readonly (readonly [string, T])[],
  model: ModelSignature,
  file: string,
): { name: string; array: T }[] {
  const only = model.inputs.length === 1 && arrays.length === 1 ? model.inputs[0]!.name : undefined;
  return arrays.map(([name, array]) => {
    const input = only ?? name;
    if (!model.inputs.some((i) => i.name === input)) {
      throw new Error(`${file}: array "${name}" is not an input of model "${model.name}" (${inputNames(model)})`);
    }
    return { name: input, array };
  });
}

/**
 * An `.npz` archive whose arrays are named after the model's inputs (`arr_0` is taken for a model
 * with one input): record i is row i of each array, id "i". An archive of np.savez (members
 * stored) is read from disk a slice of rows at a time; one of np.savez_compressed is read whole.
 */
export function npzSource(file: string): BatchSource {
  let total: number | undefined;
  let done = 0;
  const evenRows = (counts: readonly { name: string; rows: number }[]): number => {
    const rows = counts[0]?.rows ?? 0;
    const uneven = counts.find((c) => c.rows !== rows);
    if (uneven !== undefined)
      throw new Error(`${file}: array "${uneven.name}" has ${uneven.rows} rows, another has ${rows}`);
    return rows;
  };
  return {
    total: () => total,
    fraction: () => (total === undefined || total === 0 ? undefined : done / total),
    async *records(model) {
      const handle = await open(file, 'r');
      try {
        const members = await storedMembers(handle, file);
        if (members !== undefined) {
          const layouts: [string, NpyLayout & { at: number }][] = [];
          for (const member of members) {
            const head = Buffer.alloc(65536 + 12);
            const { bytesRead } = await handle.read(head, 0, head.length, member.offset);
            const layout = parseNpyHeader(head.subarray(0, bytesRead), `${file}: ${member.name}`);
            layouts.push([member.name.replace(/\.npy$/, ''), { ...layout, at: member.offset + layout.dataOffset }]);
          }
          const inputs = arrayInputs(layouts, model, file);
          const rows = evenRows(inputs.map(({ name, array }) => ({ name, rows: array.shape[0]! })));
          total = rows;
          for (let first = 0; first < rows; first += ROWS_PER_READ) {
            const count = Math.min(ROWS_PER_READ, rows - first);
            const blocks: Buffer[] = [];
            for (const { array } of inputs) {
              const block = Buffer.alloc(count * array.rowBytes);
              await handle.read(block, 0, block.length, array.at + first * array.rowBytes);
              blocks.push(block);
            }
            for (let k = 0; k < count; k++) {
              done += 1;
              yield {
                id: String(first + k),
                inputs: inputs.map(({ name, array }, i) => {
                  const bytes = blocks[i]!.subarray(k * array.rowBytes, (k + 1) * array.rowBytes);
                  return { ...tensorFromRaw(array.datatype, [1, ...array.shape.slice(1)], bytes), name };
                }),
              };
            }
          }
          return;
        }
        const inputs = arrayInputs([...readNpz(await readFile(file), file)], model, file);
        const rows = evenRows(inputs.map(({ name, array }) => ({ name, rows: array.shape[0] ?? 0 })));
        total = rows;
        for (let r = 0; r < rows; r++) {
          done += 1;
          yield {
            id: String(r),
            inputs: inputs.map(({ name, array: tensor }) => {
              const rowLength = tensor.shape.slice(1).reduce((a, b) => a * b, 1);
              const data =
                tensor.datatype === 'BYTES'
                  ? tensor.data.slice(r * rowLength, (r + 1) * rowLength)
                  : tensor.data.subarray(r * rowLength, (r + 1) * rowLength);
              return { name, datatype: tensor.datatype, shape: [1, ...tensor.shape.slice(1)], data } as Tensor;
            }),
          };
        }
      } finally {
        await handle.close();
      }
    },
  };
}

// ---------------------------------------------------------------- lines of text

async function* linesOf(file: string, progress: { read: number }): AsyncGenerator<string> {
  const stream = createReadStream(file);
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  try {
    for await (const line of lines) {
      progress.read = stream.bytesRead;
      yield line;
    }
  } finally {
    lines.close();
    stream.destroy();
  }
}

function fileProgress(file: string): {
  state: { read: number; size: number | undefined };
  fraction: () => number | undefined;
} {
  const state = { read: 0, size: undefined as number | undefined };
  void stat(file).then(
    (s) => (state.size = s.size),
    () => undefined,
  );
  return {
    state,
    fraction: () => (state.size === undefined || state.size === 0 ? undefined : Math.min(1, state.read / state.size)),
  };
}

export interface JsonlSourceOptions {
  /** Field of the record id; default "id" (the line's position when it has none). */
  readonly idField?: string;
  /** Field naming the record's sequence (stateful models); default "sequence_id". */
  readonly sequenceField?: string;
}

/**
 * JSON Lines, one KServe v2 request per line: `{"id": …, "inputs": [{"name", "shape",
 * "datatype", "data"}], "sequence_id": …}` (datatype may be left out: the model's is taken).
 * A line that does not parse is a failed record, not the end of the job.
 */
export function jsonlSource(file: string, options: JsonlSourceOptions = {}): BatchSource {
  const { state, fraction } = fileProgress(file);
  const idField = options.idField ?? 'id';
  const sequenceField = options.sequenceField ?? 'sequence_id';
  return {
    fraction,
    async *records(model) {
      let index = 0;
      for await (const line of linesOf(file, state)) {
        if (line.trim() === '') continue;
        const position = String(index++);
        let parsed: Record<string, unknown>;
        try {
          parsed = JSON.parse(line) as Record<string, unknown>;
          if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
            throw new Error('a line must be a JSON object');
        } catch (error: unknown) {
          yield { id: position, inputs: [], error: `line ${index} of ${file}: ${message(error)}` };
          continue;
        }
        const rawId = parsed[idField];
        const id = typeof rawId === 'string' || typeof rawId === 'number' ? String(rawId) : position;
        const rawSequence = parsed[sequenceField];
        const sequenceId =
          typeof rawSequence === 'string' || typeof rawSequence === 'number' ? String(rawSequence) : undefined;
        try {
          const inputs = parsed['inputs'];
          if (!Array.isArray(inputs) || inputs.length === 0)
            throw new Error('"inputs" must be a non-empty array of tensors');
          const tensors = inputs.map((raw: unknown) => {
            const t = raw as Record<string, unknown>;
            const name =
              typeof t['name'] === 'string' ? t['name'] : model.inputs.length === 1 ? model.inputs[0]!.name : undefined;
            if (name === undefined) throw new Error('an input without a "name" (the model has several)');
            const spec = model.inputs.find((i) => i.name === name);
            const datatype = typeof t['datatype'] === 'string' ? t['datatype'] : spec?.datatype;
            return { ...tensorFromJson({ ...t, name, datatype }, { name, role: 'input' }), name };
          });
          yield sequenceId === undefined ? { id, inputs: tensors } : { id, inputs: tensors, sequenceId };
        } catch (error: unknown) {
          yield { id, inputs: [], error: message(error), ...(sequenceId === undefined ? {} : { sequenceId }) };
        }
      }
    },
  };
}

// ---------------------------------------------------------------- CSV

export interface TableSourceOptions {
  /** Column of the record id; default "id" when there is one (else the row's position). */
  readonly idColumn?: string;
  /** Column naming the record's sequence (stateful models). */
  readonly sequenceColumn?: string;
  /** The input the feature columns fill; default the model's first. */
  readonly input?: string;
  /** Feature columns, in order; default every column but the id and sequence ones. */
  readonly columns?: readonly string[];
}

/** Splits one CSV line (RFC 4180 quotes; a quoted field cannot span lines here). */
export function splitCsvLine(line: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    if (line[i] === '"') {
      let value = '';
      i += 1;
      for (;;) {
        const close = line.indexOf('"', i);
        if (close < 0) throw new Error('an unterminated quoted field');
        value += line.slice(i, close);
        if (line[close + 1] === '"') {
          value += '"';
          i = close + 2;
        } else {
          i = close + 1;
          break;
        }
      }
      fields.push(value);
      if (i >= line.length) return fields;
      if (line[i] !== ',') throw new Error(`text after a quoted field at character ${i + 1}`);
      i += 1;
    } else {
      const comma = line.indexOf(',', i);
      if (comma < 0) {
        fields.push(line.slice(i));
        return fields;
      }
      fields.push(line.slice(i, comma));
      i = comma + 1;
    }
  }
}

/** Which columns are what, from the header. */
function tableLayout(
  header: readonly string[],
  options: TableSourceOptions,
  input: TensorSpec,
  what: string,
): { id: number; sequence: number; features: number[]; columns: number } {
  const find = (name: string | undefined, flag: string, required: boolean): number => {
    if (name === undefined) return -1;
    const at = header.indexOf(name);
    if (at < 0 && required)
      throw new Error(`${what}: no column "${name}" (${flag}); the columns are ${header.join(', ')}`);
    return at;
  };
  const id = find(options.idColumn ?? 'id', 'the id column', options.idColumn !== undefined);
  const sequence = find(options.sequenceColumn, 'the sequence column', true);
  const features =
    options.columns?.map((c) => find(c, 'a feature column', true)) ??
    header.map((_, i) => i).filter((i) => i !== id && i !== sequence);
  if (features.length === 0) throw new Error(`${what}: no feature columns`);
  const fixed = input.shape.slice(1);
  const need = fixed.every((d) => d >= 0) ? fixed.reduce((a, b) => a * b, 1) : undefined;
  if (
    need !== undefined &&
    need !== features.length &&
    rowShape(input, features.length).length === 2 &&
    input.shape.length === 2
  ) {
    throw new Error(
      `${what}: ${features.length} feature columns, ` +
        `but input "${input.name}" [${input.shape.join(',')}] takes ${need} per row`,
    );
  }
  return { id, sequence, features, columns: header.length };
}

/**
 * CSV with a header line, one record per row for a tabular model: the feature columns become a
 * row of the input (`[1, columns]`, or the input's shape with its dynamic dims 1), of its datatype.
 */
export function csvSource(file: string, options: TableSourceOptions = {}): BatchSource {
  const { state, fraction } = fileProgress(file);
  return {
    fraction,
    async *records(model) {
      const input = inputOf(model, options.input, file);
      let layout: ReturnType<typeof tableLayout> | undefined;
      let index = 0;
      for await (const line of linesOf(file, state)) {
        if (line === '') continue;
        if (layout === undefined) {
          layout = tableLayout(splitCsvLine(line), options, input, file);
          continue;
        }
        const position = String(index++);
        let fields: string[];
        try {
          fields = splitCsvLine(line);
        } catch (error: unknown) {
          yield { id: position, inputs: [], error: `row ${index} of ${file}: ${message(error)}` };
          continue;
        }
        const id = layout.id >= 0 ? (fields[layout.id] ?? position) : position;
        if (fields.length !== layout.columns) {
          yield {
            id,
            inputs: [],
            error: `row ${index} of ${file} has ${fields.length} fields, the header ${layout.columns}`,
          };
          continue;
        }
        const sequenceId = layout.sequence >= 0 ? fields[layout.sequence] : undefined;
        const seq = sequenceId === undefined || sequenceId === '' ? {} : { sequenceId };
        try {
          const values = layout.features.map((c, k) => {
            const cell = fields[c]?.trim() ?? '';
            if (input.datatype === 'BYTES') return cell;
            if (input.datatype === 'BOOL') return cell === 'true' || cell === '1' || cell === 'True';
            const n = cell === '' ? NaN : Number(cell);
            if (Number.isNaN(n) && !/^nan$/i.test(cell)) throw new Error(`column ${k + 1} ("${cell}") is not a number`);
            return n;
          });
          yield { id, inputs: [rowTensor(input, values)], ...seq };
        } catch (error: unknown) {
          yield { id, inputs: [], error: `row ${index} of ${file}: ${message(error)}`, ...seq };
        }
      }
      if (layout === undefined) throw new Error(`${file} is empty: a CSV needs a header line`);
    },
  };
}

// ---------------------------------------------------------------- Parquet

const PARQUET_ROWS_PER_READ = 2048;

/**
 * Parquet (read with hyparquet), laid out as a CSV: an id column, a sequence column, and feature
 * columns of numbers (or lists of numbers, flattened) filling the input's row. Read a slice of
 * rows at a time.
 */
export function parquetSource(file: string, options: TableSourceOptions = {}): BatchSource {
  let total: number | undefined;
  let done = 0;
  return {
    total: () => total,
    fraction: () => (total === undefined || total === 0 ? undefined : done / total),
    async *records(model) {
      const input = inputOf(model, options.input, file);
      const buffer = await asyncBufferFromFile(file);
      const metadata = await parquetMetadataAsync(buffer);
      const header = parquetSchema(metadata).children.map((c) => c.element.name);
      const layout = tableLayout(header, options, input, file);
      const rows = Number(metadata.num_rows);
      total = rows;
      for (let start = 0; start < rows; start += PARQUET_ROWS_PER_READ) {
        const slice = await parquetReadObjects({
          file: buffer,
          metadata,
          rowStart: start,
          rowEnd: Math.min(rows, start + PARQUET_ROWS_PER_READ),
        });
        for (const [k, row] of slice.entries()) {
          const position = String(start + k);
          const cell = (c: number): unknown => (row as Record<string, unknown>)[header[c]!];
          const rawId = layout.id >= 0 ? cell(layout.id) : undefined;
          const id = cellText(rawId) ?? position;
          const rawSequence = layout.sequence >= 0 ? cell(layout.sequence) : undefined;
          const sequenceId = cellText(rawSequence);
          const seq = sequenceId === undefined ? {} : { sequenceId };
          done += 1;
          try {
            const values = layout.features.flatMap((c) => {
              const v = cell(c);
              return Array.isArray(v) ? (v as unknown[]) : [v];
            });
            yield { id, inputs: [rowTensor(input, values)], ...seq };
          } catch (error: unknown) {
            yield { id, inputs: [], error: `row ${start + k + 1} of ${file}: ${message(error)}`, ...seq };
          }
        }
      }
    },
  };
}

/** The input format a path names: a folder of .npy files, .npy, .npz, .jsonl/.ndjson, .csv or .parquet. */
export type InputFormat = 'npy-folder' | 'npy' | 'npz' | 'jsonl' | 'csv' | 'parquet';

export async function inputFormatOf(path: string): Promise<InputFormat> {
  if ((await stat(path)).isDirectory()) return 'npy-folder';
  const lower = path.toLowerCase();
  if (lower.endsWith('.npy')) return 'npy';
  if (lower.endsWith('.npz')) return 'npz';
  if (lower.endsWith('.jsonl') || lower.endsWith('.ndjson')) return 'jsonl';
  if (lower.endsWith('.csv')) return 'csv';
  if (lower.endsWith('.parquet')) return 'parquet';
  throw new Error(`${path}: the input must be a folder of .npy files, or end in .npy, .npz, .jsonl, .csv or .parquet`);
}
