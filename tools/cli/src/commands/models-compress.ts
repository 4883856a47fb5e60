import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { registry as pb } from '@quanta/contracts';
import type { Command } from 'commander';
import { CliError } from '../errors.js';
import { connect } from '../grpc.js';
import { action } from '../action.js';
import type { Settings } from '../settings.js';
import { collect, parseWhole } from './models-args.js';
import { describeLineage } from './models-format.js';
import { withRegistry } from './registry-rpc.js';
import { describeCompression, humanBytes } from './models-report.js';

const METHODS: Readonly<Record<string, pb.CompressionMethod>> = {
  'int8-weights': pb.CompressionMethod.COMPRESSION_METHOD_INT8_WEIGHTS,
  'int8-dynamic': pb.CompressionMethod.COMPRESSION_METHOD_INT8_DYNAMIC,
  fp16: pb.CompressionMethod.COMPRESSION_METHOD_FP16,
  prune: pb.CompressionMethod.COMPRESSION_METHOD_PRUNE,
};

const FORMATS: Readonly<Record<string, pb.CalibrationFormat>> = {
  '.npy': pb.CalibrationFormat.CALIBRATION_FORMAT_NPY,
  '.npz': pb.CalibrationFormat.CALIBRATION_FORMAT_NPZ,
  '.json': pb.CalibrationFormat.CALIBRATION_FORMAT_KSERVE_JSON,
};

interface CompressOptions {
  method: string;
  sparsity?: string;
  calibration?: string[];
  dim?: string[];
  samples?: string;
  seed?: string;
  target?: string;
  alias?: string;
  description?: string;
  minCosine?: string;
  maxAbsError?: string;
  minTop1Agreement?: string;
}

function parseNumber(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value)) throw new CliError(`${flag} must be a number, got "${text}"`, 2);
  return value;
}

/** `--calibration NAME=FILE` (or a bare FILE: an .npz, or the model's only input), read into the request. */
async function readCalibration(items: readonly string[]): Promise<pb.CalibrationFile[]> {
  return Promise.all(
    items.map(async (item) => {
      const eq = item.indexOf('=');
      const inputName = eq < 0 ? '' : item.slice(0, eq);
      const file = eq < 0 ? item : item.slice(eq + 1);
      const format = FORMATS[extname(file).toLowerCase()];
      if (format === undefined)
        throw new CliError(`--calibration ${item}: the file must be .npy, .npz or .json (KServe tensors)`, 2);
      const data = await readFile(file).catch((error: unknown) => {
        throw new CliError(
          `--calibration ${item}: cannot read ${file}: ${error instanceof Error ? error.message : String(error)}`,
        );
      });
      return { inputName, format, data };
    }),
  );
}

export async function buildCompressRequest(ref: string, opts: CompressOptions): Promise<pb.CompressVersionRequest> {
  const method = METHODS[opts.method];
  if (method === undefined)
    throw new CliError(`--method must be one of ${Object.keys(METHODS).join(', ')}; got "${opts.method}"`, 2);
  const dims: Record<string, number> = {};
  for (const item of opts.dim ?? []) {
    const match = /^([^=]+)=(\d+)$/.exec(item);
    if (match === null) throw new CliError(`--dim "${item}" must be NAME=N`, 2);
    dims[match[1]!] = Number(match[2]);
  }
  const sparsity = parseNumber(opts.sparsity, '--sparsity');
  const minCosine = parseNumber(opts.minCosine, '--min-cosine');
  const maxAbsError = parseNumber(opts.maxAbsError, '--max-abs-error');
  const minTop1Agreement = parseNumber(opts.minTop1Agreement, '--min-top1-agreement');
  return {
    ref,
    targetModel: opts.target ?? '',
    method,
    ...(sparsity === undefined ? {} : { sparsity }),
    calibration: await readCalibration(opts.calibration ?? []),
    dims,
    sampleCount: opts.samples === undefined ? 0 : parseWhole(opts.samples, '--samples'),
    seed: opts.seed === undefined ? 0n : BigInt(parseWhole(opts.seed, '--seed')),
    gates: {
      ...(minCosine === undefined ? {} : { minCosine }),
      ...(maxAbsError === undefined ? {} : { maxAbsError }),
      ...(minTop1Agreement === undefined ? {} : { minTop1Agreement }),
    },
    alias: opts.alias ?? '',
    description: opts.description ?? '',
  };
}

/** A one-line bar on stderr for a terminal (never with --json): phase and share done. */
function progressBar(settings: Settings, label: string): { update(p: pb.CompressProgress): void; end(): void } {
  if (settings.json || !process.stderr.isTTY) return { update: () => undefined, end: () => undefined };
  let drawn = false;
  return {
    update(p) {
      const width = 30;
      const filled = Math.round(Math.min(1, p.fraction) * width);
      const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
      const pct = String(Math.floor(p.fraction * 100)).padStart(3);
      process.stderr.write(`\r${label} ${bar} ${pct}% ${p.phase.padEnd(12)}`);
      drawn = true;
    },
    end: () => {
      if (drawn) process.stderr.write('\n');
    },
  };
}

async function runCompress(settings: Settings, request: pb.CompressVersionRequest): Promise<pb.ModelVersion> {
  const client = connect(pb.RegistryServiceClient, settings, 'registry');
  const bar = progressBar(settings, `compress ${request.ref}`);
  try {
    let version: pb.ModelVersion | undefined;
    for await (const message of client.compressVersion(request) as AsyncIterable<pb.CompressVersionResponse>) {
      if (message.event?.$case === 'progress') bar.update(message.event.value);
      else if (message.event?.$case === 'version') version = message.event.value;
    }
    if (version === undefined) throw new CliError('the registry ended the call without the new version');
    return version;
  } catch (error: unknown) {
    const e = error as Partial<grpc.ServiceError>;
    if (e.code === grpc.status.RESOURCE_EXHAUSTED && request.calibration.length > 0) {
      const total = request.calibration.reduce((n, f) => n + f.data.length, 0);
      throw new CliError(
        `the registry refused ${humanBytes(total)} of calibration data (${e.details ?? ''}); send fewer samples`,
      );
    }
    throw error;
  } finally {
    bar.end();
    client.close();
  }
}

const parentOf = (v: pb.ModelVersion): pb.ParentVersion | undefined =>
  v.lineage?.origin?.$case === 'parent' ? v.lineage.origin.value : undefined;
const isChild = (child: pb.ModelVersion, parent: pb.ModelVersion): boolean => {
  const p = parentOf(child);
  return p !== undefined && p.model === parent.model && p.version === parent.version;
};

/** `compare A B`: sizes and lineage of both; where one was compressed from the other, its stored report. */
function describeComparison(a: pb.ModelVersion, b: pb.ModelVersion): string {
  const name = (v: pb.ModelVersion): string => `${v.model}:${v.version}`;
  const lines = [
    `${name(a)}  ${humanBytes(a.sizeBytes)}  ${describeLineage(a.lineage) || '(no lineage)'}`,
    `${name(b)}  ${humanBytes(b.sizeBytes)}  ${describeLineage(b.lineage) || '(no lineage)'}`,
    `size ${name(b)} / ${name(a)}: ${((Number(b.sizeBytes) / Number(a.sizeBytes)) * 100).toFixed(1)}%`,
  ];
  const child = isChild(b, a) ? b : isChild(a, b) ? a : undefined;
  if (child?.compression !== undefined) {
    const parent = child === b ? a : b;
    lines.push(
      '',
      `${name(child)} was compressed from ${name(parent)}; measured then:`,
      describeCompression(child.compression),
    );
  } else if (child !== undefined) {
    lines.push(
      '',
      `${name(child)} was made from ${name(child === b ? a : b)} by ${parentOf(child)!.transform} ` +
        'outside the registry: no measurements stored',
    );
  } else {
    lines.push(
      '',
      'neither was compressed from the other: no measurements relate them ' +
        '(quanta models compress makes a measured version)',
    );
  }
  return lines.join('\n');
}

/** `quanta models compress` and `quanta models compare`, under the `models` group. */
export function registerModelsCompressCommands(program: Command): void {
  const models = program.commands.find((c) => c.name() === 'models');
  if (models === undefined) throw new Error('register the models command first');

  models
    .command('compress')
    .description(
      'make a compressed version (int8, float16, pruning) measured against its source; ' +
        'misses of the gates create nothing',
    )
    .argument('<ref>', 'the source: NAME, NAME:VERSION or NAME@ALIAS')
    .requiredOption('--method <method>', 'int8-weights | int8-dynamic | fp16 | prune')
    .option('--sparsity <s>', 'share of weights to zero, 0 < s < 1 (prune; optional with int8-weights)')
    .option(
      '--calibration <name=file>',
      'calibration samples for an input: .npy, .npz or KServe JSON (repeatable; default: generated)',
      collect,
    )
    .option('--dim <name=n>', 'size of a symbolic dimension for generated samples (repeatable; default 1)', collect)
    .option('--samples <n>', 'generated samples (default 32)')
    .option('--seed <n>', 'seed of generated samples (default 0)')
    .option('--target <model>', 'store it as a version of this model (default: the source model)')
    .option('--alias <name>', 'point this alias at the new version')
    .option('--description <text>', "the new version's description")
    .option('--min-cosine <x>', 'gate: lowest cosine similarity of every output')
    .option('--max-abs-error <x>', 'gate: largest absolute error of any output element')
    .option('--min-top1-agreement <x>', 'gate: lowest top-1 agreement (0..1) of class-score outputs')
    .action(
      action(async ({ settings, out }, ref: string, opts: CompressOptions) => {
        const version = await runCompress(settings, await buildCompressRequest(ref, opts));
        const parent = parentOf(version);
        const from = parent === undefined ? ref : `${parent.model}:${parent.version}`;
        const aliases = version.aliases.length > 0 ? `, aliases ${version.aliases.join(', ')}` : '';
        out.result(pb.ModelVersion.toJSON(version), () =>
          [
            `compressed ${from} → ${version.model}:${version.version} ` +
              `(sha256 ${version.sha256.slice(0, 12)}…)${aliases}`,
            version.compression === undefined ? '' : describeCompression(version.compression),
          ].join('\n'),
        );
      }),
    );

  models
    .command('compare')
    .description('compare two versions: sizes, lineage and, where one was compressed from the other, its measurements')
    .argument('<ref-a>', 'NAME:VERSION or NAME@ALIAS')
    .argument('<ref-b>', 'NAME:VERSION or NAME@ALIAS')
    .action(
      action(async ({ settings, out }, refA: string, refB: string) => {
        const [a, b] = await withRegistry(settings, (rpc) =>
          Promise.all([rpc('getVersion', { ref: refA }), rpc('getVersion', { ref: refB })]),
        );
        if (a.version === undefined || b.version === undefined)
          throw new CliError('the registry answered without a version');
        const va = a.version;
        const vb = b.version;
        const child = isChild(vb, va) ? vb : isChild(va, vb) ? va : undefined;
        out.result(
          {
            a: pb.ModelVersion.toJSON(va),
            b: pb.ModelVersion.toJSON(vb),
            sizeRatio: Number(vb.sizeBytes) / Number(va.sizeBytes),
            compressedFrom: child === undefined ? null : child === vb ? 'a' : 'b',
            compression: child?.compression === undefined ? null : pb.CompressionReport.toJSON(child.compression),
          },
          () => describeComparison(va, vb),
        );
      }),
    );
}
