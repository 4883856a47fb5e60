import * as grpc from '@grpc/grpc-js';
import { registry as pb } from '@quanta/contracts';
import type { Command } from 'commander';
import { CliError } from '../errors.js';
import { table } from '../output.js';
import { action } from '../action.js';
import { describeProtection, PROTECTION_FLAGS, protectionSpec, type ProtectionOptions } from './deploy-protection.js';
import {
  describeTraffic,
  promotedSpec,
  TRAFFIC_FLAGS,
  trafficSpec,
  trafficSummary,
  type TrafficOptions,
} from './deploy-traffic.js';
import { parseWhole } from './models-args.js';
import { withRegistry } from './registry-rpc.js';

/** `h=hn,c=cn` → state mappings (input takes the previous request's output). */
export function parseSequenceState(text: string | undefined): pb.SequenceStateMapping[] {
  if (text === undefined || text.trim() === '') return [];
  return text.split(',').map((pair) => {
    const [inputName, outputName, extra] = pair.split('=').map((s) => s.trim());
    if (
      inputName === undefined ||
      inputName === '' ||
      outputName === undefined ||
      outputName === '' ||
      extra !== undefined
    ) {
      throw new CliError(`--sequence-state "${pair}" must be INPUT=OUTPUT (e.g. h=hn,c=cn)`, 2);
    }
    return { inputName, outputName };
  });
}

/**
 * `4,8` → preferred batch sizes; `auto` → inference measures the best one on live traffic (the
 * registry checks them against --max-batch).
 */
export function parsePreferredBatch(
  text: string | undefined,
): Pick<pb.DeploymentSpec, 'preferredBatchSizes' | 'tunePreferredBatchSize'> {
  if (text === undefined) return { preferredBatchSizes: [], tunePreferredBatchSize: false };
  if (text.trim() === 'auto') return { preferredBatchSizes: [], tunePreferredBatchSize: true };
  const sizes = text.split(',').map((s) => s.trim());
  if (sizes.some((s) => !/^\d+$/.test(s) || Number(s) < 1)) {
    throw new CliError(
      `--preferred-batch must be batch sizes of at least 1, comma-separated (e.g. 4,8), or auto; got "${text}"`,
      2,
    );
  }
  return { preferredBatchSizes: sizes.map(Number), tunePreferredBatchSize: false };
}

/** The preferred batch sizes as `--preferred-batch` takes them: `4,8`, `auto`, or '' for none. */
const preferredBatch = (s: pb.DeploymentSpec | undefined): string =>
  s?.tunePreferredBatchSize === true ? 'auto' : (s?.preferredBatchSizes ?? []).join(',');

function describeDeployment(d: pb.Deployment): string {
  const s = d.spec;
  const v = d.resolvedVersion;
  const lines: [string, string][] = [
    ['name', d.name],
    ['model', s?.modelRef ?? ''],
    ['resolved', v === undefined ? '' : `${v.model}:${v.version} (sha256 ${v.sha256.slice(0, 12)})`],
    ['max batch', String(s?.maxBatchSize ?? 0)],
    ['max delay', `${s?.maxQueueDelayUs ?? 0} µs`],
    [
      'preferred batch',
      s?.tunePreferredBatchSize === true ? 'auto (measured on live traffic)' : preferredBatch(s) || 'none',
    ],
    ['instances', String(s?.instanceCount || 1)],
    ['sequence state', s?.sequenceState.map((m) => `${m.inputName}=${m.outputName}`).join(',') ?? ''],
    ...describeProtection(s),
    ...describeTraffic(d),
    ['generation', String(d.generation)],
    ['updated', d.updateTime?.toISOString() ?? ''],
  ];
  const width = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, val]) => `${k.padEnd(width)}  ${val}`).join('\n');
}

const deploymentJson = (d: pb.Deployment | undefined): unknown => (d === undefined ? null : pb.Deployment.toJSON(d));

interface DeployOptions extends ProtectionOptions, TrafficOptions {
  model?: string;
  maxBatch?: string;
  maxDelayUs?: string;
  instances?: string;
  maxQueue?: string;
  sequenceState?: string;
  preferredBatch?: string;
}

export function registerDeployCommand(program: Command): void {
  program
    .command('deploy')
    .description('create or replace a deployment: what inference replicas serve, and how')
    .argument('<name>', 'deployment name')
    .option(
      '--model <ref>',
      'NAME (latest), NAME:VERSION (pinned) or NAME@ALIAS (follows the alias); required but with --promote',
    )
    .option('--max-batch <n>', 'largest dynamic batch (0 or 1: no batching)', '0')
    .option('--max-delay-us <n>', 'longest wait in the queue for a batch, in microseconds', '0')
    .option('--instances <n>', 'onnxruntime sessions per replica', '1')
    .option('--max-queue <n>', 'queued requests before RESOURCE_EXHAUSTED (0: no limit)', '0')
    .option('--sequence-state <pairs>', 'stateful models: INPUT=OUTPUT,... (e.g. h=hn,c=cn)')
    .option(
      '--preferred-batch <sizes|auto>',
      'batch sizes that leave the queue without waiting (e.g. 4,8; each at most --max-batch), ' +
        'or auto: measured on live traffic',
    )
    .option(...PROTECTION_FLAGS.cacheBytes)
    .option(...PROTECTION_FLAGS.priorityLevels)
    .option(...PROTECTION_FLAGS.defaultPriority)
    .option(...PROTECTION_FLAGS.priorityQueue)
    .option(...PROTECTION_FLAGS.tenantRate)
    .option(...PROTECTION_FLAGS.tenantBurst)
    .option(...PROTECTION_FLAGS.tenantConcurrency)
    .option(...PROTECTION_FLAGS.tenantLimit)
    .option(...TRAFFIC_FLAGS.canary)
    .option(...TRAFFIC_FLAGS.noCanary)
    .option(...TRAFFIC_FLAGS.shadow)
    .option(...TRAFFIC_FLAGS.noShadow)
    .option(...TRAFFIC_FLAGS.promote)
    .action(
      action(async ({ settings, out }, name: string, opts: DeployOptions) => {
        if (opts.promote === true) {
          if (opts.model !== undefined || opts.canary !== undefined)
            throw new CliError('--promote takes the deployment as it is: leave out --model and --canary', 2);
          const promoted = await withRegistry(settings, async (rpc) => {
            const current = (await rpc('getDeployment', { name })).deployment;
            if (current === undefined) throw new CliError(`deployment "${name}" not found`);
            const base = promotedSpec(name, current);
            const spec = { ...base, ...trafficSpec(opts, base) };
            // Refused if the deployment changed since it was read: nothing else's change is undone.
            return (await rpc('updateDeployment', { name, spec, expectedGeneration: current.generation })).deployment;
          });
          const v = promoted?.resolvedVersion;
          out.result(
            deploymentJson(promoted),
            () =>
              `promoted deployment "${name}": ${promoted?.spec?.modelRef} → ${v?.model}:${v?.version}` +
              trafficSummary(promoted),
          );
          return;
        }
        if (opts.model === undefined) throw new CliError('--model is required (but with --promote)', 2);
        const spec: pb.DeploymentSpec = {
          modelRef: opts.model,
          maxBatchSize: parseWhole(opts.maxBatch ?? '0', '--max-batch'),
          maxQueueDelayUs: parseWhole(opts.maxDelayUs ?? '0', '--max-delay-us'),
          instanceCount: parseWhole(opts.instances ?? '1', '--instances'),
          maxQueueSize: parseWhole(opts.maxQueue ?? '0', '--max-queue'),
          sequenceState: parseSequenceState(opts.sequenceState),
          sequenceIdleTimeoutMs: 0,
          ...protectionSpec(opts),
          ...parsePreferredBatch(opts.preferredBatch),
        };
        const { deployment, created } = await withRegistry(settings, async (rpc) => {
          try {
            const created = { ...spec, ...trafficSpec(opts, undefined) };
            return { deployment: (await rpc('createDeployment', { name, spec: created })).deployment, created: true };
          } catch (error: unknown) {
            if ((error as Partial<grpc.ServiceError>).code !== grpc.status.ALREADY_EXISTS) throw error;
            // The canary and shadow stay as they are unless the flags say otherwise: read them, and
            // update only that generation.
            const current = (await rpc('getDeployment', { name })).deployment;
            const updated = { ...spec, ...trafficSpec(opts, current?.spec) };
            const expectedGeneration = current?.generation ?? 0n;
            return {
              deployment: (await rpc('updateDeployment', { name, spec: updated, expectedGeneration })).deployment,
              created: false,
            };
          }
        });
        const v = deployment?.resolvedVersion;
        out.result(
          deploymentJson(deployment),
          () =>
            `${created ? 'created' : 'updated'} deployment "${name}": ${opts.model} → ${v?.model}:${v?.version}` +
            trafficSummary(deployment),
        );
      }),
    );
}

export function registerDeploymentsCommand(program: Command): void {
  const deployments = program
    .command('deployments')
    .description('list, show and delete deployments (create them with `quanta deploy`)');

  deployments
    .command('list')
    .description("list your tenant's deployments")
    .option('--model <name>', 'only deployments of this model')
    .action(
      action(async ({ settings, out }, opts: { model?: string }) => {
        const all = await withRegistry(settings, async (rpc) => {
          const found: pb.Deployment[] = [];
          let pageToken = '';
          do {
            const page = await rpc('listDeployments', { pageSize: 200, pageToken, model: opts.model ?? '' });
            found.push(...page.deployments);
            pageToken = page.nextPageToken;
          } while (pageToken !== '');
          return found;
        });
        out.result(
          all.map((d) => pb.Deployment.toJSON(d)),
          () =>
            all.length === 0
              ? 'no deployments'
              : table(
                  ['NAME', 'MODEL', 'RESOLVED', 'BATCH', 'DELAY-US', 'PREFERRED', 'INSTANCES', 'GENERATION'],
                  all.map((d) => [
                    d.name,
                    d.spec?.modelRef ?? '',
                    `${d.resolvedVersion?.model}:${d.resolvedVersion?.version}`,
                    String(d.spec?.maxBatchSize ?? 0),
                    String(d.spec?.maxQueueDelayUs ?? 0),
                    preferredBatch(d.spec) || '-',
                    String(d.spec?.instanceCount || 1),
                    String(d.generation),
                  ]),
                ),
        );
      }),
    );

  deployments
    .command('show')
    .description('show a deployment and the version it resolves to')
    .argument('<name>', 'deployment name')
    .action(
      action(async ({ settings, out }, name: string) => {
        const reply = await withRegistry(settings, (rpc) => rpc('getDeployment', { name }));
        out.result(deploymentJson(reply.deployment), () =>
          reply.deployment ? describeDeployment(reply.deployment) : '',
        );
      }),
    );

  deployments
    .command('delete')
    .description('delete a deployment (replicas stop serving it)')
    .argument('<name>', 'deployment name')
    .action(
      action(async ({ settings, out }, name: string) => {
        await withRegistry(settings, (rpc) => rpc('deleteDeployment', { name }));
        out.result({ name, deleted: true }, () => `deleted deployment "${name}"`);
      }),
    );
}
