// Where batchInfer writes results, in input order, each resumable (see BatchSink). Text sinks
// (JSON Lines, CSV) write through a LineOutput, which may encrypt; the NumPy sinks write plain files.
import { crc32 } from 'node:zlib';
import { createReadStream } from 'node:fs';
import { mkdir, open as openFile, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ELEMENT_SIZE,
  tensorToJson,
  tensorToRaw,
  writeNpy,
  type FixedDatatype,
  type Tensor,
} from '@quanta/tensor/core';
import { npyDescr, npyHeader } from './npy-file.js';
import { PlainFile, type LineOutput } from './outputs.js';
import type { BatchFailure, BatchResult, BatchSink } from './types.js';

/** JSON has no NaN or Infinity: KServe readers (and @quanta/tensor) take these strings for them. */
const jsonValue = (v: number | boolean | string): number | boolean | string =>
  typeof v === 'number' && !Number.isFinite(v) ? String(v) : v;

/** FP32 values with the 9 significant digits that give back the same float32. */
const float32 = (v: number | boolean | string): number | boolean | string =>
  typeof v === 'number' && Number.isFinite(v) ? Number(v.toPrecision(9)) : jsonValue(v);

function jsonTensor(tensor: Tensor): {
  name?: string;
  datatype: string;
  shape: number[];
  data: (number | boolean | string)[];
} {
  const json = tensorToJson(tensor);
  return { ...json, data: json.data.map(tensor.datatype === 'FP32' ? float32 : jsonValue) };
}

/** `{"id": …, "outputs": [{"name", "datatype", "shape", "data"}]}` per record: the KServe v2 response form. */
export function jsonlSink(output: LineOutput): BatchSink {
  return {
    open: (positions) => output.open(positions),
    write: (result: BatchResult) =>
      output.writeLine(JSON.stringify({ id: result.id, outputs: result.outputs.map(jsonTensor) })),
    sync: () => output.sync(),
    ...(output.retain === undefined ? {} : { retain: (p: unknown, latest: unknown) => output.retain!(p, latest) }),
    close: () => output.close(),
    abort: () => output.abort(),
  };
}

const csvField = (value: string): string => (/[",\n\r]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value);

/**
 * A header line (`id`, then each output's elements: `name` for one element per record,
 * `name_0`, `name_1`… for more), then one line per record.
 */
export function csvSink(output: LineOutput, options: { idColumn?: string } = {}): BatchSink {
  let header: string[] | undefined;
  const sinkOf = (position: unknown): { out: unknown; header?: string[] } =>
    (position ?? {}) as { out: unknown; header?: string[] };
  return {
    async open(positions) {
      const chosen = await output.open(positions.map((p) => sinkOf(p).out));
      header = chosen < 0 ? undefined : sinkOf(positions[chosen]).header;
      return chosen;
    },
    async write(result) {
      const columns = result.outputs.flatMap((t) => {
        const count = t.data.length;
        const name = t.name ?? 'output';
        return count === 1 ? [name] : Array.from({ length: count }, (_, k) => `${name}_${k}`);
      });
      if (header === undefined) {
        header = [options.idColumn ?? 'id', ...columns];
        await output.writeLine(header.map(csvField).join(','));
      } else if (header.length !== columns.length + 1) {
        throw new Error(
          `record "${result.id}" has ${columns.length} output values, the CSV's header has ${header.length - 1}`,
        );
      }
      const values = result.outputs.flatMap((t) => jsonTensor(t).data.map(String));
      await output.writeLine([csvField(result.id), ...values.map(csvField)].join(','));
    },
    async sync() {
      return { out: await output.sync(), ...(header === undefined ? {} : { header }) };
    },
    ...(output.retain === undefined
      ? {}
      : { retain: (p: unknown, latest: unknown) => output.retain!(sinkOf(p).out, sinkOf(latest).out) }),
    close: () => output.close(),
    abort: () => output.abort(),
  };
}

/** A file name part from an id or an output name: what a path cannot hold is replaced. */
const safe = (text: string): string => text.replace(/[^A-Za-z0-9._-]/g, '_') || '_';

/** A folder of `<id>.<output>.npy` files, one per output of each record (numpy.load reads each). */
export function npyFolderSink(dir: string): BatchSink {
  let unsynced: string[] = [];
  const syncFiles = async (): Promise<void> => {
    for (const file of unsynced) {
      const handle = await openFile(file, 'r');
      await handle.sync().finally(() => handle.close());
    }
    unsynced = [];
  };
  return {
    async open(positions) {
      await mkdir(dir, { recursive: true });
      // A record written again after a resume replaces its files: nothing needs cutting back.
      return positions.length - 1;
    },
    async write(result) {
      for (const tensor of result.outputs) {
        const file = join(dir, `${safe(result.id)}.${safe(tensor.name ?? 'output')}.npy`);
        await writeFile(file, writeNpy(tensor));
        unsynced.push(file);
      }
    },
    async sync() {
      await syncFiles();
      return {};
    },
    async close() {
      await syncFiles();
    },
    abort() {
      unsynced = [];
      return Promise.resolve();
    },
  };
}

// ---------------------------------------------------------------- rows aligned with the input

interface RowLayout {
  datatype: FixedDatatype;
  trailing: number[];
}

/** One row of the fill value of a failed record: NaN for floats, 0 for integers and booleans. */
function fillRow(layout: RowLayout): Buffer {
  const count = layout.trailing.reduce((a, b) => a * b, 1);
  const bytes = Buffer.alloc(count * ELEMENT_SIZE[layout.datatype]);
  if (layout.datatype === 'FP32') for (let i = 0; i < count; i++) bytes.writeFloatLE(NaN, i * 4);
  if (layout.datatype === 'FP64') for (let i = 0; i < count; i++) bytes.writeDoubleLE(NaN, i * 8);
  if (layout.datatype === 'FP16') for (let i = 0; i < count; i++) bytes.writeUInt16LE(0x7e00, i * 2);
  return bytes;
}

/** An output's rows appended to one file; a failed record's rows are filled (NaN or 0). */
class RowFile {
  layout: RowLayout | undefined;
  rows = 0;
  bytes = 0;
  private handle: FileHandle | undefined;
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;

  constructor(
    readonly path: string,
    readonly offset: number,
  ) {}

  /** Opens the file cut back to `position`; false (and an empty file) when the file is shorter than it. */
  async open(position: { rows: number; bytes: number; layout?: RowLayout } | undefined): Promise<boolean> {
    const size =
      position === undefined
        ? -1
        : await stat(this.path).then(
            (s) => s.size,
            () => -1,
          );
    const honoured = position !== undefined && size >= this.offset + position.bytes;
    this.handle = await openFile(this.path, honoured ? 'r+' : 'w+');
    this.rows = honoured ? position.rows : 0;
    this.bytes = honoured ? position.bytes : 0;
    this.layout = honoured ? position.layout : undefined;
    await this.handle.truncate(this.offset + this.bytes);
    return honoured;
  }

  async append(tensor: Tensor, what: string): Promise<void> {
    if (tensor.datatype === 'BYTES' || tensor.datatype === 'BF16')
      throw new Error(`${what}: ${tensor.datatype} has no .npy dtype; write jsonl`);
    const trailing = tensor.shape.slice(1);
    if (this.layout === undefined) this.layout = { datatype: tensor.datatype, trailing };
    else if (this.layout.datatype !== tensor.datatype || this.layout.trailing.join() !== trailing.join()) {
      throw new Error(
        `${what}: ${tensor.datatype}[${tensor.shape.join(',')}] does not stack under the earlier rows' ` +
          `${this.layout.datatype}[-1,${this.layout.trailing.join(',')}]`,
      );
    }
    await this.push(tensorToRaw(tensor));
    this.rows += tensor.shape[0] ?? 1;
  }

  async fill(rows: number): Promise<void> {
    if (this.layout === undefined) throw new Error('no layout yet');
    const row = fillRow(this.layout);
    for (let r = 0; r < rows; r++) await this.push(Buffer.from(row));
    this.rows += rows;
  }

  private async push(data: Buffer): Promise<void> {
    this.buffered.push(data);
    this.bufferedBytes += data.length;
    if (this.bufferedBytes >= 1 << 20) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.bufferedBytes === 0) return;
    const data = Buffer.concat(this.buffered);
    this.buffered = [];
    this.bufferedBytes = 0;
    await this.handle!.write(data, 0, data.length, this.offset + this.bytes);
    this.bytes += data.length;
  }

  async sync(): Promise<{ rows: number; bytes: number; layout?: RowLayout }> {
    await this.flush();
    await this.handle!.sync();
    return { rows: this.rows, bytes: this.bytes, ...(this.layout === undefined ? {} : { layout: this.layout }) };
  }

  /** Writes the .npy header for the rows there are now at the start of the file. */
  async finishNpy(): Promise<void> {
    await this.flush();
    const layout = this.layout ?? { datatype: 'FP32', trailing: [] };
    await this.handle!.write(
      npyHeader(layout.datatype, [this.rows, ...layout.trailing], this.offset),
      0,
      this.offset,
      0,
    );
    await this.handle!.sync();
  }

  async close(): Promise<void> {
    await this.handle?.close();
    this.handle = undefined;
  }
}

const HEADER_BYTES = 128;

/**
 * One output's rows as one `.npy` file, row i from record i (so a file of input rows gives a file
 * of output rows, index for index); a failed record's rows are NaN (0 for integers). The header's
 * shape is written when the job finishes. `output` picks the output of a model with several.
 */
export function npyFileSink(path: string, options: { output?: string } = {}): BatchSink {
  const file = new RowFile(path, HEADER_BYTES);
  let deferred = 0; // failed rows before the first result told the layout
  const pick = (result: BatchResult): Tensor => {
    const tensor =
      options.output === undefined ? result.outputs[0] : result.outputs.find((t) => t.name === options.output);
    if (tensor === undefined || (options.output === undefined && result.outputs.length > 1)) {
      throw new Error(
        `${path}: a .npy file holds one output; the model gave ` +
          `${result.outputs.map((t) => t.name).join(', ')}: pick one, or write .npz`,
      );
    }
    return tensor;
  };
  return {
    async open(positions) {
      const position = positions[positions.length - 1] as
        { rows: number; bytes: number; layout?: RowLayout; deferred?: number } | undefined;
      const honoured = await file.open(position);
      deferred = honoured ? (position?.deferred ?? 0) : 0;
      return honoured ? positions.length - 1 : -1;
    },
    async write(result) {
      const tensor = pick(result);
      if (file.layout === undefined && deferred > 0) {
        file.layout = { datatype: tensor.datatype as FixedDatatype, trailing: tensor.shape.slice(1) };
        await file.fill(deferred);
        deferred = 0;
      }
      await file.append(tensor, `${path}, record "${result.id}"`);
    },
    async fail(_failure: BatchFailure, rows: number) {
      if (file.layout === undefined) deferred += rows;
      else await file.fill(rows);
    },
    async sync() {
      return { ...(await file.sync()), deferred };
    },
    async close() {
      await file.finishNpy();
      await file.close();
    },
    abort: () => file.close(),
  };
}

/** Appends a ZIP (stored, no compression: what np.savez writes) of `members`, each from a file region. */
async function writeZip(
  path: string,
  members: { name: string; head: Buffer; file: string; offset: number; bytes: number }[],
): Promise<void> {
  const out = await openFile(path, 'w');
  try {
    let at = 0;
    const central: Buffer[] = [];
    for (const member of members) {
      const name = Buffer.from(member.name, 'utf8');
      const size = member.head.length + member.bytes;
      if (size >= 0xffffffff)
        throw new Error(`${path}: member ${member.name} is over 4 GiB; write .npy or jsonl instead`);
      const local = Buffer.alloc(30);
      local.writeUInt32LE(0x04034b50, 0);
      local.writeUInt16LE(20, 4);
      local.writeUInt16LE(0x21, 12); // 1980-01-01
      local.writeUInt32LE(size, 18);
      local.writeUInt32LE(size, 22);
      local.writeUInt16LE(name.length, 26);
      const localAt = at;
      await out.write(Buffer.concat([local, name, member.head]), 0, 30 + name.length + member.head.length, at);
      at += 30 + name.length + member.head.length;
      let crc = crc32(member.head);
      if (member.bytes > 0) {
        for await (const chunk of createReadStream(member.file, {
          start: member.offset,
          end: member.offset + member.bytes - 1,
        })) {
          const data = chunk as Buffer;
          crc = crc32(data, crc);
          await out.write(data, 0, data.length, at);
          at += data.length;
        }
      }
      const crcBytes = Buffer.alloc(4);
      crcBytes.writeUInt32LE(crc >>> 0, 0);
      await out.write(crcBytes, 0, 4, localAt + 14);
      const entry = Buffer.alloc(46);
      entry.writeUInt32LE(0x02014b50, 0);
      entry.writeUInt16LE(20, 4);
      entry.writeUInt16LE(20, 6);
      entry.writeUInt16LE(0x21, 14);
      entry.writeUInt32LE(crc >>> 0, 16);
      entry.writeUInt32LE(size, 20);
      entry.writeUInt32LE(size, 24);
      entry.writeUInt16LE(name.length, 28);
      entry.writeUInt32LE(localAt, 42);
      central.push(entry, name);
    }
    const directory = Buffer.concat(central);
    const end = Buffer.alloc(22);
    end.writeUInt32LE(0x06054b50, 0);
    end.writeUInt16LE(members.length, 8);
    end.writeUInt16LE(members.length, 10);
    end.writeUInt32LE(directory.length, 12);
    end.writeUInt32LE(at, 16);
    await out.write(Buffer.concat([directory, end]), 0, directory.length + 22, at);
    await out.sync();
  } finally {
    await out.close();
  }
}

/**
 * An `.npz` with one array per output, row i from record i (a failed record's rows NaN, or 0 for
 * integers), as np.savez writes it. Rows go to a parts folder beside it (`<path>.parts`) while the
 * job runs; the archive is assembled when it finishes.
 */
export function npzSink(path: string): BatchSink {
  const parts = `${path}.parts`;
  const files = new Map<string, RowFile>();
  let deferred = 0;
  let names: string[] | undefined;
  /** The part file of an output: opened where `position` says, or empty for an output new to it. */
  const fileOf = async (
    name: string,
    position?: { rows: number; bytes: number; layout?: RowLayout },
  ): Promise<{ file: RowFile; honoured: boolean }> => {
    const known = files.get(name);
    if (known !== undefined) return { file: known, honoured: true };
    const file = new RowFile(join(parts, `${safe(name)}.raw`), 0);
    files.set(name, file);
    return { file, honoured: await file.open(position) };
  };
  return {
    async open(positions) {
      const position = positions[positions.length - 1] as
        | {
            names: string[];
            files: Record<string, { rows: number; bytes: number; layout?: RowLayout }>;
            deferred: number;
          }
        | undefined;
      const start = async (): Promise<void> => {
        for (const file of files.values()) await file.close();
        files.clear();
        await rm(parts, { recursive: true, force: true });
        await mkdir(parts, { recursive: true });
        deferred = 0;
        names = undefined;
      };
      if (position === undefined) {
        await start();
        return -1;
      }
      await mkdir(parts, { recursive: true });
      deferred = position.deferred;
      names = position.names;
      for (const [name, at] of Object.entries(position.files)) {
        if (!(await fileOf(name, at)).honoured) {
          // A part shorter than the checkpoint says (it was changed): start afresh.
          await start();
          return -1;
        }
      }
      return positions.length - 1;
    },
    async write(result) {
      if (names === undefined) names = result.outputs.map((t) => t.name ?? 'output');
      for (const tensor of result.outputs) {
        const { file } = await fileOf(tensor.name ?? 'output');
        if (file.layout === undefined && deferred > 0) {
          file.layout = { datatype: tensor.datatype as FixedDatatype, trailing: tensor.shape.slice(1) };
          await file.fill(deferred);
        }
        await file.append(tensor, `${path}, record "${result.id}", output "${tensor.name ?? ''}"`);
      }
      deferred = 0;
    },
    async fail(_failure: BatchFailure, rows: number) {
      if (names === undefined) deferred += rows;
      else for (const name of names) await (await fileOf(name)).file.fill(rows);
    },
    async sync() {
      const positions: Record<string, unknown> = {};
      for (const [name, file] of files) positions[name] = await file.sync();
      return { names, files: positions, deferred };
    },
    async close() {
      const members = [];
      for (const [name, file] of files) {
        await file.sync();
        const layout = file.layout!;
        if (npyDescr(layout.datatype) === undefined)
          throw new Error(`${path}: output "${name}" is ${layout.datatype}, which has no .npy dtype`);
        members.push({
          name: `${name}.npy`,
          head: npyHeader(layout.datatype, [file.rows, ...layout.trailing]),
          file: file.path,
          offset: 0,
          bytes: file.bytes,
        });
      }
      await writeZip(path, members);
      for (const file of files.values()) await file.close();
      await rm(parts, { recursive: true, force: true });
    },
    async abort() {
      for (const file of files.values()) await file.close();
    },
  };
}

/** The errors file: one JSON line per failed record, `{"id", "index", "code", "message"}`. */
export function errorsSink(path: string): BatchSink<BatchFailure> {
  const file = new PlainFile(path);
  return {
    open: (positions) => file.open(positions),
    write: (failure) => file.writeLine(JSON.stringify(failure)),
    sync: () => file.sync(),
    close: () => file.close(),
    abort: () => file.abort(),
  };
}
