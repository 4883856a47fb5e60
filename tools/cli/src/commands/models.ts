import { registry as pb } from '@quanta/contracts';
import type { Command } from 'commander';
import { CliError } from '../errors.js';
import { table } from '../output.js';
import { action } from '../action.js';
import { registerModelsReadyCommand } from './infer.js';
import { collect, parseTags, parseWhole } from './models-args.js';
import { describeLineage, describeModel, describeVersion, formatTags, statusName } from './models-format.js';
import { pullFile } from './models-pull.js';
import { pushFile, type PushOptions } from './models-push.js';
import { humanBytes } from './models-report.js';
import { withRegistry } from './registry-rpc.js';

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
        const size = humanBytes(version.sizeBytes);
        out.result(
          pb.ModelVersion.toJSON(version),
          () => `pushed ${file} as ${version.model}:${version.version} (sha256 ${version.sha256}, ${size})`,
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
