import { randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { inference as pb, unaryCaller, type UnaryCaller } from '@quanta/contracts';
import {
  isDatatype,
  tensorFromJson,
  tensorFromWire,
  tensorToJson,
  tensorToWire,
  type Datatype,
  type JsonTensor,
  type Tensor,
} from '@quanta/tensor';
import type { Command } from 'commander';
import { CliError, describeError } from '../errors.js';
import { connect } from '../grpc.js';
import { readNpy, writeNpy } from '../npy.js';
import { action } from '../action.js';
import type { Settings } from '../settings.js';

type InferenceRpc = UnaryCaller<typeof pb.GRPCInferenceServiceService>;

/**
 * Runs `fn` with a caller of the inference service (token on every call, deadline `seconds`
 * away) and always closes the channel. An unreachable server becomes a CliError naming the address.
 */
async function withInference<T>(
  settings: Settings,
  seconds: number,
  fn: (rpc: InferenceRpc) => Promise<T>,
): Promise<T> {
  const client = connect(pb.GRPCInferenceServiceClient, settings, 'inference');
  try {
    return await fn(unaryCaller(client, pb.GRPCInferenceServiceService, { deadlineMs: seconds * 1000 }));
  } catch (error: unknown) {
    if ((error as Partial<grpc.ServiceError>).code === grpc.status.UNAVAILABLE) {
      throw new CliError(describeError(error, settings.address('inference')));
    }
    throw error;
  } finally {
    client.close();
  }
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** `NAME=FILE` into its parts. */
export function parseInputSpec(spec: string): { name: string; file: string } {
  const eq = spec.indexOf('=');
  if (eq <= 0 || eq === spec.length - 1)
    throw new CliError(`--input "${spec}" must be NAME=FILE.json or NAME=FILE.npy`, 2);
  return { name: spec.slice(0, eq), file: spec.slice(eq + 1) };
}

/** The shape of a nested JSON array, checking every row has the same length (a ragged array names where). */
export function nestedShape(value: unknown, what: string): number[] {
  const shape: number[] = [];
  let probe = value;
  while (Array.isArray(probe)) {
    shape.push(probe.length);
    probe = probe[0];
  }
  const check = (node: unknown, depth: number, path: string): void => {
    if (depth === shape.length) {
      if (Array.isArray(node))
        throw new CliError(`${what}: ${path} is an array, but its siblings are values: the array is ragged`);
      return;
    }
    if (!Array.isArray(node) || node.length !== shape[depth]) {
      const has = Array.isArray(node) ? `${node.length} elements` : 'a value';
      throw new CliError(`${what}: ${path} has ${has} where ${shape[depth]} are expected: the array is ragged`);
    }
    node.forEach((child, i) => check(child, depth + 1, `${path}[${i}]`));
  };
  check(value, 0, 'data');
  return shape;
}

/** Looks up an input's datatype in the model's metadata, asked at most once. */
type DatatypeOf = (input: string) => Promise<Datatype>;

/**
 * Reads one input file: `.npy` (dtype from the file), or `.json` as a KServe tensor
 * `{"shape", "datatype", "data"}` or a bare nested array (shape from its nesting, datatype from
 * the model's metadata).
 */
export async function loadInput(name: string, file: string, datatypeOf: DatatypeOf): Promise<Tensor> {
  const ext = extname(file).toLowerCase();
  if (ext !== '.npy' && ext !== '.json')
    throw new CliError(`--input ${name}=${file}: the file must end in .json or .npy`, 2);
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (error: unknown) {
    throw new CliError(`--input ${name}=${file}: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (ext === '.npy') return { ...readNpy(bytes, file), name };
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (error: unknown) {
    throw new CliError(`${file} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  let tensor: { datatype: string; shape: unknown; data: unknown };
  if (Array.isArray(json)) {
    tensor = { datatype: await datatypeOf(name), shape: nestedShape(json, file), data: json };
  } else if (typeof json === 'object' && json !== null && 'data' in json) {
    const object = json as Record<string, unknown>;
    const data = object['data'];
    const datatype = typeof object['datatype'] === 'string' ? object['datatype'] : await datatypeOf(name);
    tensor = { datatype, shape: object['shape'] ?? nestedShape(data, file), data };
  } else {
    throw new CliError(
      `${file}: expected a nested array or a tensor {"shape": [..], "datatype": "FP32", "data": [..]}`,
    );
  }
  try {
    return tensorFromJson(tensor, { name, role: 'input' });
  } catch (error: unknown) {
    throw new CliError(`${file}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** Triton's sequence parameters: a numeric id travels as int64 (as tritonclient sends it), any other as a string. */
export function sequenceParameters(opts: {
  sequenceId?: string;
  sequenceStart?: boolean;
  sequenceEnd?: boolean;
}): Record<string, pb.InferParameter> {
  if (opts.sequenceId === undefined) {
    if (opts.sequenceStart === true || opts.sequenceEnd === true)
      throw new CliError('--sequence-start and --sequence-end need --sequence-id', 2);
    return {};
  }
  const id = opts.sequenceId;
  const numeric = /^\d+$/.test(id) && BigInt(id) <= 0x7fff_ffff_ffff_ffffn;
  return {
    sequence_id: {
      parameterChoice: numeric ? { $case: 'int64Param', value: BigInt(id) } : { $case: 'stringParam', value: id },
    },
    sequence_start: { parameterChoice: { $case: 'boolParam', value: opts.sequenceStart === true } },
    sequence_end: { parameterChoice: { $case: 'boolParam', value: opts.sequenceEnd === true } },
  };
}

/**
 * The request: raw tensors when asked or when a datatype has no typed form (FP16, BF16): then all of
 * them, as Triton wants.
 */
export function buildRequest(
  model: string,
  version: string,
  id: string,
  tensors: readonly Tensor[],
  outputs: readonly string[],
  parameters: Record<string, pb.InferParameter>,
  raw: boolean,
): pb.ModelInferRequest {
  const useRaw = raw || tensors.some((t) => t.datatype === 'FP16' || t.datatype === 'BF16');
  const wires = tensors.map((t) => tensorToWire(t, { raw: useRaw, role: 'input' }));
  return {
    modelName: model,
    modelVersion: version,
    id,
    parameters,
    inputs: wires.map(({ wire }) => ({
      name: wire.name,
      datatype: wire.datatype,
      shape: wire.shape,
      parameters: {},
      contents: wire.contents,
    })),
    outputs: outputs.map((name) => ({ name, parameters: {} })),
    rawInputContents: useRaw ? wires.map((w) => w.raw ?? Buffer.alloc(0)) : [],
  };
}

/** The response's outputs as tensors, from typed contents or raw_output_contents. */
export function responseTensors(response: pb.ModelInferResponse): Tensor[] {
  const raw = response.rawOutputContents;
  return response.outputs.map((out, i) => {
    try {
      return tensorFromWire(out, raw.length > 0 ? (raw[i] ?? Buffer.alloc(0)) : undefined, 'output');
    } catch (error: unknown) {
      throw new CliError(
        `the server sent an unreadable output "${out.name}": ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  });
}

/** JSON has no NaN or Infinity: write them as the strings KServe JSON readers (and @quanta/tensor) take. */
function jsonValue(v: number | boolean | string): number | boolean | string {
  return typeof v === 'number' && !Number.isFinite(v) ? String(v) : v;
}

function outputJson(tensor: Tensor): JsonTensor {
  const json = tensorToJson(tensor);
  return { ...json, data: json.data.map(jsonValue) };
}

/** The response document, one line per tensor (a 1000-float output stays one line, not 1000). */
function formatResponse(
  head: { model_name: string; model_version: string; id: string },
  tensors: readonly unknown[],
  key: string,
): string {
  const lines = tensors.map((t) => `    ${JSON.stringify(t)}`);
  return [
    '{',
    `  "model_name": ${JSON.stringify(head.model_name)},`,
    `  "model_version": ${JSON.stringify(head.model_version)},`,
    `  "id": ${JSON.stringify(head.id)},`,
    `  "${key}": [`,
    lines.join(',\n'),
    '  ]',
    '}',
  ].join('\n');
}

/** A file name for an output: its name, with what a path cannot hold replaced. */
const fileName = (output: string, ext: string): string =>
  `${output.replace(/[^A-Za-z0-9._-]/g, '_') || 'output'}${ext}`;

interface InferOptions {
  version?: string;
  input?: string[];
  output?: string[];
  outputFormat: string;
  out?: string;
  raw?: boolean;
  id?: string;
  timeout: string;
  sequenceId?: string;
  sequenceStart?: boolean;
  sequenceEnd?: boolean;
  priority?: string;
}

/** Triton's `priority` parameter (1 is the highest level; 0 the deployment's default), as uint64. */
export function priorityParameter(text: string | undefined): Record<string, pb.InferParameter> {
  if (text === undefined) return {};
  if (!/^\d+$/.test(text.trim()))
    throw new CliError(`--priority must be a whole number (1 is the highest level), got "${text}"`, 2);
  return { priority: { parameterChoice: { $case: 'uint64Param', value: BigInt(text.trim()) } } };
}

export function registerInferCommand(program: Command): void {
  program
    .command('infer')
    .description('run a model on the inference service (KServe v2 ModelInfer) with inputs from .json or .npy files')
    .argument('<model>', 'model name')
    .option('--version <version>', 'model version (default: the one the server serves)')
    .option(
      '--input <name=file>',
      'an input: NAME=FILE.npy, or NAME=FILE.json (a KServe tensor or a nested array) (repeatable)',
      collect,
    )
    .option('--output <name>', 'an output to return (repeatable; default: all)', collect)
    .option(
      '--output-format <format>',
      'json (to stdout, or NAME.json files with --out) or npy (NAME.npy files in --out)',
      'json',
    )
    .option('--out <dir>', 'folder for output files')
    .option('--raw', 'send inputs as raw_input_contents (the server then answers in raw_output_contents)')
    .option('--id <id>', 'request id (default: a random one)')
    .option('--timeout <seconds>', 'deadline of each call', '60')
    .option('--sequence-id <id>', 'stateful models: the sequence this request belongs to')
    .option('--sequence-start', 'stateful models: this request starts the sequence')
    .option('--sequence-end', 'stateful models: this request ends the sequence')
    .option('--priority <n>', "the request's priority level: 1 is the highest (default: the deployment's default)")
    .action(
      action(async ({ settings, out }, model: string, opts: InferOptions) => {
        const format = opts.outputFormat;
        if (format !== 'json' && format !== 'npy')
          throw new CliError(`--output-format must be json or npy, got "${format}"`, 2);
        const seconds = Number(opts.timeout);
        if (!(seconds > 0))
          throw new CliError(`--timeout must be a positive number of seconds, got "${opts.timeout}"`, 2);
        const specs = (opts.input ?? []).map(parseInputSpec);
        if (specs.length === 0) throw new CliError('give at least one --input NAME=FILE', 2);
        const parameters = { ...sequenceParameters(opts), ...priorityParameter(opts.priority) };
        const version = opts.version ?? '';
        const id = opts.id ?? randomUUID();

        const response = await withInference(settings, seconds, async (rpc) => {
          let metadata: Promise<pb.ModelMetadataResponse> | undefined;
          const datatypeOf: DatatypeOf = async (input) => {
            metadata ??= rpc('modelMetadata', { name: model, version });
            const meta = await metadata;
            const spec = meta.inputs.find((i) => i.name === input);
            if (spec === undefined) {
              const inputs = meta.inputs.map((i) => `${i.name} ${i.datatype}`).join(', ');
              throw new CliError(`model "${model}" has no input "${input}"; its inputs: ${inputs}`);
            }
            if (!isDatatype(spec.datatype))
              throw new CliError(`model "${model}" declares input "${input}" with unknown datatype "${spec.datatype}"`);
            return spec.datatype;
          };
          const tensors: Tensor[] = [];
          for (const { name, file } of specs) tensors.push(await loadInput(name, file, datatypeOf));
          return rpc(
            'modelInfer',
            buildRequest(model, version, id, tensors, opts.output ?? [], parameters, opts.raw === true),
          );
        });

        const tensors = responseTensors(response);
        const head = { model_name: response.modelName, model_version: response.modelVersion, id: response.id };
        if (format === 'json' && opts.out === undefined) {
          // The KServe v2 REST response form: an output can be fed back as an --input file.
          // It is JSON with or without --json, written as is so that each tensor stays on one line.
          process.stdout.write(`${formatResponse(head, tensors.map(outputJson), 'outputs')}\n`);
          return;
        }
        const dir = opts.out ?? '.';
        await mkdir(dir, { recursive: true });
        const files: { name: string; datatype: string; shape: number[]; file: string }[] = [];
        for (const tensor of tensors) {
          const name = tensor.name ?? '';
          const file = join(dir, fileName(name, `.${format}`));
          await writeFile(file, format === 'npy' ? writeNpy(tensor) : `${JSON.stringify(outputJson(tensor))}\n`);
          files.push({ name, datatype: tensor.datatype, shape: [...tensor.shape], file });
        }
        out.result({ ...head, outputs: files }, () =>
          [
            `model ${head.model_name} version ${head.model_version}, request id ${head.id}`,
            ...files.map((f) => `wrote ${f.file} (${f.name} ${f.datatype}[${f.shape.join(',')}])`),
          ].join('\n'),
        );
      }),
    );
}

/** Why a model is not ready, from RepositoryIndex (state and reason), when the server tells. */
async function notReadyReason(
  rpc: InferenceRpc,
  model: string,
  version: string,
): Promise<{ state?: string; reason: string }> {
  try {
    const index = await rpc('repositoryIndex', { repositoryName: '', ready: false });
    const entries = index.models.filter((m) => m.name === model && (version === '' || m.version === version));
    const entry = entries.find((m) => m.state !== 'READY') ?? entries[0];
    if (entry === undefined)
      return { reason: `the server does not serve model "${model}"${version === '' ? '' : ` version ${version}`}` };
    return {
      state: entry.state,
      reason: `version ${entry.version} is ${entry.state}${entry.reason === '' ? '' : `: ${entry.reason}`}`,
    };
  } catch {
    return { reason: 'the server gives no reason' };
  }
}

/** `quanta models ready NAME [--version V]`: exit 0 when the inference service can run it now, 1 when not. */
export function registerModelsReadyCommand(models: Command): void {
  models
    .command('ready')
    .description(
      'ask the inference service whether a model (version) takes requests now; exit code 0 if ready, 1 if not',
    )
    .argument('<name>', 'model name')
    .option('--version <version>', 'model version (default: the one the server serves)')
    .action(
      action(async ({ settings, out }, name: string, opts: { version?: string }) => {
        const version = opts.version ?? '';
        const label = `model "${name}"${version === '' ? '' : ` version ${version}`}`;
        const answer = await withInference(settings, 30, async (rpc) => {
          try {
            const { ready } = await rpc('modelReady', { name, version });
            return ready ? { ready } : { ready, ...(await notReadyReason(rpc, name, version)) };
          } catch (error: unknown) {
            // A server that does not know the model says so with NOT_FOUND: that is "not ready", with its message.
            if ((error as Partial<grpc.ServiceError>).code !== grpc.status.NOT_FOUND) throw error;
            return { ready: false, reason: describeError(error) };
          }
        });
        out.result({ model: name, version, ...answer }, () =>
          answer.ready ? `${label} is ready` : `${label} is not ready: ${answer.reason}`,
        );
        if (!answer.ready) process.exitCode = 1;
      }),
    );
}
