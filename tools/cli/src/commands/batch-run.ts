// What `quanta batch` runs: the SDK's batchInfer (ModelStreamInfer, a bounded window, resumable)
// from the CLI's settings and flags, a progress bar on a terminal and a summary at the end. Loaded
// only when the command runs, so that other commands do not pay for loading the SDK.
import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { status } from '@grpc/grpc-js';
import {
  AeadFile,
  BatchError,
  batchInfer,
  createQuantaClient,
  crypto as cryptoPb,
  csvSink,
  csvSource,
  errorsSink,
  FernetLines,
  inputFormatOf,
  jsonlSink,
  jsonlSource,
  npyFileSink,
  npyFolderSink,
  npyFolderSource,
  npyRowsSource,
  npzSink,
  npzSource,
  parquetSource,
  PlainFile,
  QuantaClientError,
  type BatchProgress,
  type BatchSink,
  type BatchSource,
  type BatchSummary,
  type InputFormat,
  type LineOutput,
  type QuantaClient,
} from '@quanta/sdk';
import { CliError, describeError } from '../errors.js';
import type { CommandContext } from '../action.js';
import type { Settings } from '../settings.js';

type OutputFormat = 'npy' | 'npz' | 'jsonl' | 'csv';

export interface BatchFlags {
  input: string;
  out: string;
  format?: string;
  errors?: string;
  checkpoint?: string;
  maxFailures?: string;
  window?: string;
  batchRows: string;
  resume?: boolean;
  encryptWith?: string;
  sequenceColumn?: string;
  idColumn?: string;
  inputName?: string;
  output?: string[];
  version?: string;
  progress: boolean;
}

function whole(text: string | undefined, flag: string, min: number): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < min)
    throw new CliError(`${flag} must be a whole number ≥ ${min}, got "${text}"`, 2);
  return Number(text);
}

/** What each input format writes when --format is not given (Parquet has no writer here: JSON Lines). */
const MATCHING: Record<InputFormat, OutputFormat> = {
  'npy-folder': 'npy',
  npy: 'npy',
  npz: 'npz',
  jsonl: 'jsonl',
  csv: 'csv',
  parquet: 'jsonl',
};

/** The SDK client for the CLI's settings (addresses, token, TLS files). */
export function sdkClient(settings: Settings): QuantaClient {
  const read = (path: string | undefined): Buffer | undefined => (path === undefined ? undefined : readFileSync(path));
  const tls = settings.tls;
  const token = settings.token();
  return createQuantaClient({
    address: settings.address('inference'),
    addresses: {
      crypto: settings.address('crypto'),
      registry: settings.address('registry'),
      monitoring: settings.address('monitoring'),
    },
    ...(token === undefined ? {} : { token }),
    ...(tls === undefined
      ? {}
      : {
          tls:
            Object.keys(tls).length === 0
              ? true
              : {
                  ...(tls.caFile && { ca: read(tls.caFile) }),
                  ...(tls.certFile && { cert: read(tls.certFile) }),
                  ...(tls.keyFile && { key: read(tls.keyFile) }),
                },
        }),
  });
}

function sourceOf(format: InputFormat, input: string, flags: BatchFlags): BatchSource {
  const table = {
    ...(flags.idColumn === undefined ? {} : { idColumn: flags.idColumn }),
    ...(flags.sequenceColumn === undefined ? {} : { sequenceColumn: flags.sequenceColumn }),
    ...(flags.inputName === undefined ? {} : { input: flags.inputName }),
  };
  switch (format) {
    case 'npy-folder':
      return npyFolderSource(input);
    case 'npy':
      return npyRowsSource(input, flags.inputName === undefined ? {} : { input: flags.inputName });
    case 'npz':
      return npzSource(input);
    case 'jsonl':
      return jsonlSource(input, {
        ...(flags.idColumn === undefined ? {} : { idField: flags.idColumn }),
        ...(flags.sequenceColumn === undefined ? {} : { sequenceField: flags.sequenceColumn }),
      });
    case 'csv':
      return csvSource(input, table);
    case 'parquet':
      return parquetSource(input, table);
  }
}

/** The line output of a text format: plain, sealed with a streaming AEAD key, or a Fernet token per line. */
async function lineOutput(client: QuantaClient, out: string, key: string | undefined): Promise<LineOutput> {
  if (key === undefined) return new PlainFile(out);
  const reply = await client.crypto.getKey({ name: key });
  return reply.key?.type === cryptoPb.KeyType.KEY_TYPE_FERNET
    ? new FernetLines(client, key, out)
    : new AeadFile(client, key, out);
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number): string => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

/** A one-line progress bar on stderr: records, records/s, ETA (from the record count or the bytes read). */
function progressBar(stream: NodeJS.WriteStream): { update(p: BatchProgress): void; done(): void } {
  let shown = false;
  return {
    update(p) {
      const seconds = p.elapsedMs / 1000;
      const rate = seconds > 0 ? p.recordsThisRun / seconds : 0;
      const fraction = p.total !== undefined && p.total > 0 ? p.records / p.total : p.fraction;
      const eta =
        p.total !== undefined && rate > 0
          ? (p.total - p.records) / rate
          : fraction !== undefined && fraction > 0
            ? (seconds * (1 - fraction)) / fraction
            : NaN;
      const width = 24;
      const filled = fraction === undefined ? 0 : Math.round(Math.min(1, fraction) * width);
      const bar = fraction === undefined ? '' : `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] `;
      const count =
        p.total === undefined
          ? `${p.records.toLocaleString('en-US')}`
          : `${p.records.toLocaleString('en-US')}/${p.total.toLocaleString('en-US')}`;
      const speed = `${Math.round(rate).toLocaleString('en-US')} rows/s`;
      const line = `${bar}${count} rows  ${speed}  ETA ${formatDuration(eta)}  failures ${p.failures}`;
      stream.write(`\r${line}\x1b[K`);
      shown = true;
    },
    done() {
      if (shown) stream.write('\n');
    },
  };
}

function summaryText(s: BatchSummary & { peakRssMb: number }, files: { out: string; errors: string }): string {
  const n = (value: number): string => value.toLocaleString('en-US');
  const thisRun = s.records - s.resumedFrom;
  const resumed = s.resumedFrom > 0 ? ` (${n(thisRun)} in this run, resumed from row ${n(s.resumedFrom)})` : '';
  return [
    `${n(s.records)} rows through ${s.model}${s.version === '' ? '' : `:${s.version}`}${resumed}`,
    `  time      ${s.wallSeconds.toFixed(1)} s, ${n(Math.round(s.recordsPerSecond))} rows/s, ${n(s.requests)} requests`,
    `  latency   p50 ${s.latencyMs.p50.toFixed(1)} ms, p99 ${s.latencyMs.p99.toFixed(1)} ms`,
    `  written   ${n(s.succeeded)} → ${files.out}`,
    `  failures  ${n(s.failures)}${s.failures > 0 ? ` → ${files.errors}` : ''}`,
    `  peak RSS  ${s.peakRssMb} MB`,
  ].join('\n');
}

/** Runs `quanta batch MODEL` with its flags. */
export async function runBatch({ settings, out }: CommandContext, model: string, flags: BatchFlags): Promise<void> {
  const window = whole(flags.window, '--window', 1);
  const batchRows: number | 'auto' =
    flags.batchRows === 'auto'
      ? flags.sequenceColumn === undefined
        ? 'auto'
        : 1
      : whole(flags.batchRows, '--batch-rows', 1)!;
  const maxFailures = whole(flags.maxFailures, '--max-failures', 0);
  let inputFormat: InputFormat;
  try {
    inputFormat = await inputFormatOf(flags.input);
  } catch (error: unknown) {
    throw new CliError(`--input ${describeError(error)}`, 2);
  }
  const asked: string = flags.format ?? MATCHING[inputFormat];
  if (!['npy', 'npz', 'jsonl', 'csv'].includes(asked)) {
    const hint = asked === 'parquet' ? ' (Parquet is read, not written: use jsonl or csv)' : '';
    throw new CliError(`--format must be npy, npz, jsonl or csv, got "${asked}"${hint}`, 2);
  }
  const format = asked as OutputFormat;
  if (flags.encryptWith !== undefined && format !== 'jsonl' && format !== 'csv') {
    throw new CliError(
      `--encrypt-with writes jsonl or csv (one encrypted stream, or a token per row); --format is ${format}`,
      2,
    );
  }
  if (flags.sequenceColumn !== undefined && !['jsonl', 'csv', 'parquet'].includes(inputFormat)) {
    throw new CliError('--sequence-column needs a jsonl, csv or parquet input', 2);
  }
  if (flags.sequenceColumn !== undefined && batchRows !== 1)
    throw new CliError('--batch-rows stacks rows of different sequences: leave it at 1 with --sequence-column', 2);
  const outPath = resolve(flags.out);
  const errorsPath = resolve(flags.errors ?? `${flags.out}.errors.jsonl`);
  const checkpointPath = resolve(flags.checkpoint ?? `${flags.out}.checkpoint.json`);
  const input = await stat(flags.input);

  const client = sdkClient(settings);
  const controller = new AbortController();
  const onSignal = (): void => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const bar = flags.progress && !settings.json && process.stderr.isTTY ? progressBar(process.stderr) : undefined;
  try {
    const sink: BatchSink =
      format === 'jsonl'
        ? jsonlSink(await lineOutput(client, outPath, flags.encryptWith))
        : format === 'csv'
          ? csvSink(await lineOutput(client, outPath, flags.encryptWith))
          : format === 'npz'
            ? npzSink(outPath)
            : inputFormat === 'npy-folder' || !outPath.toLowerCase().endsWith('.npy')
              ? npyFolderSink(outPath)
              : npyFileSink(outPath, flags.output?.length === 1 ? { output: flags.output[0]! } : {});
    const summary = await batchInfer(client, model, sourceOf(inputFormat, flags.input, flags), sink, {
      ...(window === undefined ? {} : { window }),
      batchRows,
      ...(flags.version === undefined ? {} : { version: flags.version }),
      ...(flags.output === undefined ? {} : { outputs: flags.output }),
      errors: errorsSink(errorsPath),
      ...(maxFailures === undefined ? {} : { maxFailures }),
      checkpoint: checkpointPath,
      resume: flags.resume === true,
      fingerprint: {
        input: resolve(flags.input),
        inputBytes: input.isDirectory() ? undefined : input.size,
        inputModified: input.mtimeMs,
        format,
        encryptWith: flags.encryptWith ?? null,
        sequenceColumn: flags.sequenceColumn ?? null,
        idColumn: flags.idColumn ?? null,
        inputName: flags.inputName ?? null,
      },
      signal: controller.signal,
      ...(bar === undefined ? {} : { onProgress: (p: BatchProgress) => bar.update(p) }),
    }).catch((error: unknown) => {
      if (
        error instanceof BatchError &&
        error.summary !== undefined &&
        (error.reason === 'aborted' || error.reason === 'max-failures')
      ) {
        return { ...error.summary, error: error.message, reason: error.reason };
      }
      throw error;
    });
    bar?.done();
    const result = {
      ...summary,
      peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
      out: outPath,
      errors: errorsPath,
    };
    // The text names the files as they were given; the JSON gives absolute paths.
    const given = { out: flags.out, errors: flags.errors ?? `${flags.out}.errors.jsonl` };
    out.result(result, () => summaryText(result, given));
    if ('reason' in summary) {
      if (summary.reason === 'max-failures') throw new CliError(summary.error, 1);
      const done = summary.records.toLocaleString('en-US');
      const checkpoint = flags.checkpoint ?? `${flags.out}.checkpoint.json`;
      throw new CliError(
        `stopped after ${done} rows; run again with --resume to continue (checkpoint ${checkpoint})`,
        130,
      );
    }
  } catch (error: unknown) {
    bar?.done();
    if (error instanceof BatchError) throw new CliError(error.message, error.reason === 'usage' ? 2 : 1);
    if (error instanceof QuantaClientError && error.code === status.UNAVAILABLE)
      throw new CliError(describeError(error, settings.address('inference')));
    throw error;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    client.close();
  }
}
