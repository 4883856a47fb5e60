import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { LeanRegistryServiceClient, readUploadChunks, registry as pb } from '@quanta/contracts';
import type { Command } from 'commander';
import { CliError } from '../errors.js';
import { connect, deadline } from '../grpc.js';
import { table } from '../output.js';
import { action } from '../action.js';
import type { Settings } from '../settings.js';
import { registerModelsReadyCommand } from './infer.js';
import { describeCompression, humanBytes } from './models-report.js';

type Definition = typeof pb.RegistryServiceService;
type UnaryName = {
  [K in keyof Definition]: Definition[K]['requestStream'] extends false
    ? Definition[K]['responseStream'] extends false
      ? K
      : never
    : never;
}[keyof Definition];
type RequestOf<K extends keyof Definition> = Parameters<Definition[K]['requestSerialize']>[0];
type ResponseOf<K extends keyof Definition> = ReturnType<Definition[K]['responseDeserialize']>;

/** A promise-returning caller of RegistryService's unary RPCs (the CLI's token rides on every call). */
export interface RegistryRpc {
  <K extends UnaryName>(method: K, request: RequestOf<K>): Promise<ResponseOf<K>>;
  readonly client: pb.RegistryServiceClient;
}

/** Runs `fn` with a connected registry caller and always closes the channel. */
export async function withRegistry<T>(settings: Settings, fn: (rpc: RegistryRpc) => Promise<T>): Promise<T> {
  const client = connect(pb.RegistryServiceClient, settings, 'registry');
  const rpc = <K extends UnaryName>(method: K, request: RequestOf<K>): Promise<ResponseOf<K>> => {
    const m = pb.RegistryServiceService[method] as unknown as grpc.MethodDefinition<RequestOf<K>, ResponseOf<K>>;
    return new Promise((resolve, reject) => {
      client.makeUnaryRequest(
        m.path,
        m.requestSerialize,
        m.responseDeserialize,
        request,
        new grpc.Metadata(),
        deadline(60),
        (error, response) => (error ? reject(error) : resolve(response as ResponseOf<K>)),
      );
    });
  };
  try {
    return await fn(Object.assign(rpc, { client }));
  } finally {
    client.close();
  }
}

/** `k=v` (or a bare `k`, an empty value) into a tag map. */
export function parseTags(items: readonly string[] | undefined): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const item of items ?? []) {
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq);
    if (key === '') throw new CliError(`tag "${item}" has no key: write KEY=VALUE`, 2);
    tags[key] = eq < 0 ? '' : item.slice(eq + 1);
  }
  return tags;
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

export function parseWhole(text: string, what: string): number {
  if (!/^\d+$/.test(text)) throw new CliError(`${what} must be a whole number, got "${text}"`, 2);
  return Number(text);
}

const statusName = (s: pb.VersionStatus): string => pb.versionStatusToJSON(s).replace('VERSION_STATUS_', '');

const formatTags = (tags: Readonly<Record<string, string>>): string =>
  Object.entries(tags)
    .map(([k, v]) => (v === '' ? k : `${k}=${v}`))
    .join(',');

export function describeLineage(lineage: pb.Lineage | undefined): string {
  const origin = lineage?.origin;
  if (origin === undefined) return '';
  if (origin.$case === 'sourceUri') return origin.value;
  const p = origin.value;
  const params = Object.entries(p.transformParams).map(([k, v]) => `${k}=${v}`);
  return `${p.transform}${params.length > 0 ? `[${params.join(',')}]` : ''}(${p.model}:${p.version})`;
}

export function describeVersion(v: pb.ModelVersion): string {
  const sig = v.signature;
  const tensor = (t: pb.TensorSignature): string =>
    `${t.name} ${t.datatype}[${t.shape.map((d, i) => (d === -1n ? t.dimNames[i] || '?' : String(d))).join(',')}]`;
  const lines: [string, string][] = [
    ['version', `${v.model}:${v.version}`],
    ['status', statusName(v.status) + (v.statusReason === '' ? '' : ` (${v.statusReason})`)],
    ['aliases', v.aliases.join(', ')],
    ['sha256', v.sha256],
    ['size', humanBytes(v.sizeBytes)],
    ['description', v.description],
    ['tags', formatTags(v.tags)],
    ['lineage', describeLineage(v.lineage)],
    ['inputs', sig?.inputs.map(tensor).join('; ') ?? ''],
    ['outputs', sig?.outputs.map(tensor).join('; ') ?? ''],
    ['opsets', sig?.opsetImports.map((o) => `${o.domain || 'ai.onnx'} ${o.version}`).join(', ') ?? ''],
    ['producer', sig === undefined ? '' : `${sig.producerName} ${sig.producerVersion}`.trim()],
    [
      'parameters',
      sig === undefined
        ? ''
        : `${sig.parameterCount} in ${sig.initializerCount} initializers (${humanBytes(sig.parameterBytes)})`,
    ],
    ['created', `${v.createTime?.toISOString() ?? ''} by ${v.createdBy}`],
  ];
  const width = Math.max(...lines.map(([k]) => k.length));
  const text = lines.map(([k, val]) => `${k.padEnd(width)}  ${val}`).join('\n');
  if (v.compression === undefined) return text;
  const parent =
    v.lineage?.origin?.$case === 'parent'
      ? `${v.lineage.origin.value.model}:${v.lineage.origin.value.version}`
      : 'its parent';
  return `${text}\n\ncompression, measured against ${parent}:\n${describeCompression(v.compression)}`;
}

function describeModel(m: pb.Model): string {
  const lines: [string, string][] = [
    ['name', m.name],
    ['description', m.description],
    ['tags', formatTags(m.tags)],
    ['versions', `${m.versionCount} (latest ${m.latestVersion})`],
    [
      'aliases',
      Object.entries(m.aliases)
        .map(([a, v]) => `${a} → ${v}`)
        .join(', '),
    ],
    ['created', m.createTime?.toISOString() ?? ''],
    ['updated', m.updateTime?.toISOString() ?? ''],
  ];
  const width = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, val]) => `${k.padEnd(width)}  ${val}`).join('\n');
}

/** A one-line progress bar on stderr, only on a terminal and never with --json. */
function progress(settings: Settings, label: string, total: number): { update(done: number): void; end(): void } {
  if (settings.json || !process.stderr.isTTY) return { update: () => undefined, end: () => undefined };
  let last = -1;
  const draw = (done: number): void => {
    const pct = total === 0 ? 100 : Math.floor((done / total) * 100);
    if (pct === last) return;
    last = pct;
    const width = 30;
    const filled = Math.round((pct / 100) * width);
    process.stderr.write(
      `\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(pct).padStart(3)}% ${humanBytes(done)}/${humanBytes(total)}`,
    );
  };
  return { update: draw, end: () => process.stderr.write('\n') };
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function parseLineage(opts: { source?: string; parent?: string; transform?: string }): pb.Lineage | undefined {
  if (opts.source !== undefined && opts.parent !== undefined)
    throw new CliError('--source and --parent exclude each other', 2);
  if (opts.source !== undefined) return { origin: { $case: 'sourceUri', value: opts.source } };
  if (opts.parent === undefined) return undefined;
  const match = /^([^:@]+):(\d+)$/.exec(opts.parent);
  if (match === null) throw new CliError(`--parent "${opts.parent}" must be NAME:VERSION`, 2);
  if (opts.transform === undefined)
    throw new CliError('--parent needs --transform NAME (what made this version from it)', 2);
  return {
    origin: {
      $case: 'parent',
      value: { model: match[1]!, version: Number(match[2]), transform: opts.transform, transformParams: {} },
    },
  };
}

interface PushOptions {
  name: string;
  description?: string;
  tag?: string[];
  source?: string;
  parent?: string;
  transform?: string;
}

/**
 * Writes the file's bytes to an upload call in 1 MiB chunks, each read into a buffer with room for
 * its protobuf prefix, so that the lean client sends it as read (no copy), waiting for 'drain' while
 * gRPC's buffer is full, so memory stays at a chunk or two; ends the call after the last chunk.
 */
async function sendChunks(
  call: grpc.ClientWritableStream<pb.UploadVersionRequest>,
  file: string,
  onSent: (sent: number) => void,
): Promise<void> {
  let sent = 0;
  for await (const chunk of readUploadChunks(file, 1 << 20)) {
    sent += chunk.length;
    onSent(sent);
    if (!call.write({ part: { $case: 'chunk', value: chunk } })) await once(call, 'drain');
  }
  call.end();
}

async function pushFile(settings: Settings, file: string, opts: PushOptions): Promise<pb.ModelVersion> {
  const size = (await stat(file)).size;
  const digest = await sha256File(file);
  const bar = progress(settings, `push ${basename(file)}`, size);
  const client = connect(LeanRegistryServiceClient, settings, 'registry');
  try {
    return await new Promise<pb.ModelVersion>((resolve, reject) => {
      const call = client.uploadVersion((error, response) => {
        if (error) reject(error);
        else if (response?.version === undefined) reject(new CliError('the registry answered without a version'));
        else resolve(response.version);
      });
      const header: pb.UploadHeader = {
        model: opts.name,
        description: opts.description ?? '',
        tags: parseTags(opts.tag),
        expectedSha256: digest,
        expectedSizeBytes: BigInt(size),
        lineage: parseLineage(opts),
        createModel: true,
      };
      call.write({ part: { $case: 'header', value: header } });
      sendChunks(call, file, (sent) => bar.update(sent)).catch((error: unknown) => {
        call.cancel();
        reject(error instanceof Error ? error : new Error(String(error)));
      });
    });
  } finally {
    bar.end();
    client.close();
  }
}

async function pullFile(settings: Settings, ref: string, out: string): Promise<pb.ModelVersion> {
  const client = connect(LeanRegistryServiceClient, settings, 'registry');
  const partial = `${out}.part`;
  const handle = await open(partial, 'w', 0o644);
  let bar: ReturnType<typeof progress> | undefined;
  try {
    const stream = client.downloadVersion({ ref, chunkSizeBytes: 0, tenant: '' });
    let version: pb.ModelVersion | undefined;
    let done = 0;
    for await (const message of stream as AsyncIterable<pb.DownloadVersionResponse>) {
      if (message.part?.$case === 'header') {
        version = message.part.value.version;
        bar = progress(settings, `pull ${ref}`, Number(version?.sizeBytes ?? 0));
      } else if (message.part?.$case === 'chunk') {
        await handle.write(message.part.value);
        done += message.part.value.length;
        bar?.update(done);
      }
    }
    if (version === undefined) throw new CliError('the registry sent no header');
    await handle.sync();
    await handle.close();
    // The registry checked the digest as it streamed (the call ended OK): publish the file.
    await rename(partial, out);
    return version;
  } catch (error: unknown) {
    await handle.close().catch(() => undefined);
    await rm(partial, { force: true });
    throw error;
  } finally {
    bar?.end();
    client.close();
  }
}

const isRef = (text: string): boolean => text.includes(':') || text.includes('@');

export function registerModelsCommand(program: Command): void {
  const models = program
    .command('models')
    .description('register, version, alias and fetch ONNX models in the model registry');

  models
    .command('create')
    .description('register a model with no versions')
    .argument('<name>', 'model name (a-z, 0-9, ".", "_", "-")')
    .option('--description <text>', 'free text')
    .option('--tag <key=value>', 'a tag (repeatable)', collect)
    .action(
      action(async ({ settings, out }, name: string, opts: { description?: string; tag?: string[] }) => {
        const reply = await withRegistry(settings, (rpc) =>
          rpc('createModel', { name, description: opts.description ?? '', tags: parseTags(opts.tag) }),
        );
        out.result(reply.model === undefined ? null : pb.Model.toJSON(reply.model), () => `created model "${name}"`);
      }),
    );

  models
    .command('list')
    .description("list your tenant's models")
    .option('--prefix <text>', 'only names starting with this')
    .option('--tag <key=value>', 'only models with this tag (repeatable; key alone: any value)', collect)
    .action(
      action(async ({ settings, out }, opts: { prefix?: string; tag?: string[] }) => {
        const all = await withRegistry(settings, async (rpc) => {
          const found: pb.Model[] = [];
          let pageToken = '';
          do {
            const page = await rpc('listModels', {
              pageSize: 200,
              pageToken,
              namePrefix: opts.prefix ?? '',
              tags: parseTags(opts.tag),
            });
            found.push(...page.models);
            pageToken = page.nextPageToken;
          } while (pageToken !== '');
          return found;
        });
        out.result(
          all.map((m) => pb.Model.toJSON(m)),
          () =>
            all.length === 0
              ? 'no models'
              : table(
                  ['NAME', 'LATEST', 'VERSIONS', 'ALIASES', 'TAGS', 'DESCRIPTION'],
                  all.map((m) => [
                    m.name,
                    String(m.latestVersion),
                    String(m.versionCount),
                    Object.entries(m.aliases)
                      .map(([a, v]) => `${a}→${v}`)
                      .join(','),
                    formatTags(m.tags),
                    m.description,
                  ]),
                ),
        );
      }),
    );

  models
    .command('show')
    .description('show a model (NAME) or one version (NAME:3, NAME@alias)')
    .argument('<ref>', 'NAME, NAME:VERSION or NAME@ALIAS')
    .action(
      action(async ({ settings, out }, ref: string) => {
        if (isRef(ref)) {
          const reply = await withRegistry(settings, (rpc) => rpc('getVersion', { ref }));
          out.result(reply.version === undefined ? null : pb.ModelVersion.toJSON(reply.version), () =>
            reply.version ? describeVersion(reply.version) : '',
          );
        } else {
          const reply = await withRegistry(settings, (rpc) => rpc('getModel', { name: ref }));
          out.result(reply.model === undefined ? null : pb.Model.toJSON(reply.model), () =>
            reply.model ? describeModel(reply.model) : '',
          );
        }
      }),
    );

  models
    .command('versions')
    .description("list a model's versions, newest first")
    .argument('<name>', 'model name')
    .action(
      action(async ({ settings, out }, name: string) => {
        const all = await withRegistry(settings, async (rpc) => {
          const found: pb.ModelVersion[] = [];
          let pageToken = '';
          do {
            const page = await rpc('listVersions', { model: name, pageSize: 200, pageToken, status: 0, tags: {} });
            found.push(...page.versions);
            pageToken = page.nextPageToken;
          } while (pageToken !== '');
          return found;
        });
        out.result(
          all.map((v) => pb.ModelVersion.toJSON(v)),
          () =>
            all.length === 0
              ? `model "${name}" has no versions`
              : table(
                  ['VERSION', 'STATUS', 'ALIASES', 'SIZE', 'SHA256', 'LINEAGE', 'CREATED'],
                  all.map((v) => [
                    String(v.version),
                    statusName(v.status),
                    v.aliases.join(','),
                    humanBytes(v.sizeBytes),
                    v.sha256.slice(0, 12),
                    describeLineage(v.lineage),
                    v.createTime?.toISOString() ?? '',
                  ]),
                ),
        );
      }),
    );

  models
    .command('push')
    .description('upload an ONNX file as the next version of a model (created if missing)')
    .argument('<file>', 'the .onnx file')
    .requiredOption('--name <name>', 'model name')
    .option('--description <text>', "the version's description")
    .option('--tag <key=value>', 'a tag of the version (repeatable)', collect)
    .option('--source <uri>', 'lineage: where the file came from')
    .option('--parent <name:version>', 'lineage: the version this one was made from')
    .option('--transform <name>', 'lineage: what made it from --parent (e.g. quantize-int8)')
    .action(
      action(async ({ settings, out }, file: string, opts: PushOptions) => {
        const version = await pushFile(settings, file, opts);
        out.result(
          pb.ModelVersion.toJSON(version),
          () =>
            `pushed ${file} as ${version.model}:${version.version} (sha256 ${version.sha256}, ${humanBytes(version.sizeBytes)})`,
        );
      }),
    );

  models
    .command('pull')
    .description('download a version (checked against its sha256) to a file')
    .argument('<ref>', 'NAME, NAME:VERSION or NAME@ALIAS')
    .requiredOption('--out <file>', 'where to write it')
    .action(
      action(async ({ settings, out }, ref: string, opts: { out: string }) => {
        const version = await pullFile(settings, ref, opts.out);
        out.result(
          { file: opts.out, version: pb.ModelVersion.toJSON(version) },
          () => `pulled ${version.model}:${version.version} to ${opts.out} (sha256 ${version.sha256})`,
        );
      }),
    );

  models
    .command('alias')
    .description('point an alias at a version (creates or moves it), or remove it with --delete')
    .argument('<name>', 'model name')
    .argument('<alias>', 'alias, e.g. production')
    .argument('[version]', 'version number')
    .option('--delete', 'remove the alias')
    .action(
      action(
        async (
          { settings, out },
          name: string,
          alias: string,
          version: string | undefined,
          opts: { delete?: boolean },
        ) => {
          if (opts.delete === true) {
            await withRegistry(settings, (rpc) => rpc('deleteAlias', { model: name, alias }));
            out.result({ model: name, alias, deleted: true }, () => `removed alias ${name}@${alias}`);
            return;
          }
          if (version === undefined) throw new CliError('give the VERSION to point the alias at (or --delete)', 2);
          const reply = await withRegistry(settings, (rpc) =>
            rpc('setAlias', { model: name, alias, version: parseWhole(version, 'VERSION') }),
          );
          out.result({ model: name, alias, version: Number(version), previousVersion: reply.previousVersion }, () =>
            reply.previousVersion === 0
              ? `${name}@${alias} → ${version}`
              : `${name}@${alias} moved ${reply.previousVersion} → ${version}`,
          );
        },
      ),
    );

  models
    .command('tag')
    .description('set or remove tags of a model (NAME) or of a version (NAME:3, NAME@alias)')
    .argument('<ref>', 'NAME, NAME:VERSION or NAME@ALIAS')
    .argument('[tags...]', 'KEY=VALUE to set')
    .option('--remove <key>', 'a tag key to remove (repeatable)', collect)
    .option('--description <text>', 'also set the description')
    .action(
      action(
        async ({ settings, out }, ref: string, tags: string[], opts: { remove?: string[]; description?: string }) => {
          const change = { setTags: parseTags(tags), removeTags: opts.remove ?? [], description: opts.description };
          if (isRef(ref)) {
            const reply = await withRegistry(settings, (rpc) => rpc('updateVersion', { ref, ...change }));
            out.result(
              reply.version === undefined ? null : pb.ModelVersion.toJSON(reply.version),
              () => `${ref}: tags ${formatTags(reply.version?.tags ?? {}) || '(none)'}`,
            );
          } else {
            const reply = await withRegistry(settings, (rpc) => rpc('updateModel', { name: ref, ...change }));
            out.result(
              reply.model === undefined ? null : pb.Model.toJSON(reply.model),
              () => `${ref}: tags ${formatTags(reply.model?.tags ?? {}) || '(none)'}`,
            );
          }
        },
      ),
    );

  models
    .command('delete')
    .description('delete a model with its versions, aliases and files (refused while a deployment uses it)')
    .argument('<name>', 'model name')
    .action(
      action(async ({ settings, out }, name: string) => {
        await withRegistry(settings, (rpc) => rpc('deleteModel', { name }));
        out.result({ name, deleted: true }, () => `deleted model "${name}"`);
      }),
    );

  registerModelsReadyCommand(models);
}
