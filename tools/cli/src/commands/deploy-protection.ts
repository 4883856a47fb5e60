import type { registry as pb } from '@quanta/contracts';
import { CliError } from '../errors.js';
import { parseWhole } from './models-args.js';

// `quanta deploy`'s response cache, priority and caller-limit flags
// (docs/decisions/inference-caller-limits.md): parsed into the DeploymentSpec fields the registry
// checks and inference applies. The flags keep issue 19's names (`--tenant-*`); each limit applies
// per caller, that is per token subject of the deployment's tenant.

export interface ProtectionOptions {
  cacheBytes?: string;
  priorityLevels?: string;
  defaultPriority?: string;
  priorityQueue?: string[];
  tenantRate?: string;
  tenantBurst?: string;
  tenantConcurrency?: string;
  tenantLimit?: string[];
}

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

type Flag = [flags: string, description: string] | [flags: string, description: string, parse: typeof collect];

/** The flags of `quanta deploy`, as `.option(...)` takes them. */
export const PROTECTION_FLAGS = {
  cacheBytes: [
    '--cache-bytes <size>',
    'response cache per replica: bytes, or with KiB, MiB or GiB (e.g. 64MiB); 0: none',
  ],
  priorityLevels: [
    '--priority-levels <n>',
    'request priority levels (the `priority` request parameter, 1 first); 0: one level',
  ],
  defaultPriority: ['--default-priority <n>', 'the level of a request that names none (default: the lowest)'],
  priorityQueue: [
    '--priority-queue <LEVEL=POLICY>',
    'queue policy of a level, or of every other one with `default`: max:N, timeout:DURATION (e.g. 50ms), delay ' +
      "(a timed-out request runs last instead of failing), override (a request's own timeout wins); " +
      'e.g. 1=max:8,timeout:50ms,delay (repeatable)',
    collect,
  ],
  tenantRate: ['--tenant-rate <rate>', 'requests per second of each caller (token subject), e.g. 100/s or 600/m'],
  tenantBurst: ['--tenant-burst <n>', "requests a caller may send at once over its rate (default: a second's worth)"],
  tenantConcurrency: ['--tenant-concurrency <n>', 'requests of each caller in flight at once (queued or running)'],
  tenantLimit: [
    '--tenant-limit <SUBJECT=RATE[,CONCURRENCY]>',
    "one caller's limits instead of the --tenant-* ones, e.g. partner=500/s,32 or batch=0,4 (0: no limit) " +
      '(repeatable)',
    collect,
  ],
} satisfies Record<string, Flag>;

const UNITS: Record<string, bigint> = { '': 1n, b: 1n, kib: 1n << 10n, mib: 1n << 20n, gib: 1n << 30n };

/** `64MiB` → bytes (KiB, MiB, GiB, binary; case-insensitive; a plain number is bytes). */
export function parseByteSize(text: string, flag: string): bigint {
  const match = /^\s*(\d+)\s*([a-z]*)\s*$/i.exec(text);
  const unit = UNITS[match?.[2]?.toLowerCase() ?? 'x'];
  if (match === null || unit === undefined)
    throw new CliError(`${flag} must be a size in bytes, KiB, MiB or GiB (e.g. 64MiB), got "${text}"`, 2);
  return BigInt(match[1]!) * unit;
}

/** `100/s`, `600/m`, `100` (per second) → requests per second. */
export function parseRate(text: string, flag: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(?:\/\s*(s|m|h))?\s*$/.exec(text);
  if (match === null)
    throw new CliError(`${flag} must be a rate such as 100/s, 600/m or 0 (no limit), got "${text}"`, 2);
  const per = { s: 1, m: 60, h: 3600 }[(match[2] ?? 's') as 's' | 'm' | 'h'];
  return Number(match[1]) / per;
}

/** `50ms`, `2s`, `500us`, `50` (milliseconds) → microseconds. */
export function parseDurationUs(text: string, flag: string): bigint {
  const match = /^\s*(\d+)\s*(us|µs|ms|s)?\s*$/.exec(text);
  if (match === null) throw new CliError(`${flag} must be a duration such as 50ms, 2s or 500us, got "${text}"`, 2);
  const scale = { us: 1n, µs: 1n, ms: 1000n, s: 1_000_000n }[(match[2] ?? 'ms') as 'us' | 'µs' | 'ms' | 's'];
  return BigInt(match[1]!) * scale;
}

/** `1=max:8,timeout:50ms,delay` → [level (0 for `default`), policy]. */
export function parseQueuePolicy(text: string): [number, pb.QueuePolicy] {
  const flag = '--priority-queue';
  const at = text.indexOf('=');
  const level = at < 0 ? '' : text.slice(0, at).trim();
  if (at < 0 || !(level === 'default' || /^\d+$/.test(level)) || level === '0')
    throw new CliError(`${flag} must be LEVEL=POLICY with LEVEL 1, 2, … or default (e.g. 1=max:8,timeout:50ms)`, 2);
  const policy: pb.QueuePolicy = { maxQueueSize: 0, timeoutUs: 0n, delayOnTimeout: false, allowTimeoutOverride: false };
  for (const part of text.slice(at + 1).split(',')) {
    const [key, value, extra] = part.split(':').map((s) => s.trim());
    if (key === 'max' && value !== undefined && extra === undefined)
      policy.maxQueueSize = parseWhole(value, `${flag} max`);
    else if (key === 'timeout' && value !== undefined && extra === undefined)
      policy.timeoutUs = parseDurationUs(value, `${flag} timeout`);
    else if (key === 'delay' && value === undefined) policy.delayOnTimeout = true;
    else if (key === 'override' && value === undefined) policy.allowTimeoutOverride = true;
    else throw new CliError(`${flag} "${text}": "${part}" is not one of max:N, timeout:DURATION, delay, override`, 2);
  }
  return [level === 'default' ? 0 : Number(level), policy];
}

/** `partner=500/s,32` → [subject, limits]. */
export function parseCallerLimit(text: string): [string, pb.CallerLimits] {
  const at = text.indexOf('=');
  const subject = at < 0 ? '' : text.slice(0, at).trim();
  const [rate, concurrency, extra] = text.slice(at + 1).split(',');
  if (at < 0 || subject === '' || rate === undefined || extra !== undefined)
    throw new CliError(`--tenant-limit must be SUBJECT=RATE[,CONCURRENCY] (e.g. partner=500/s,32), got "${text}"`, 2);
  return [
    subject,
    {
      requestsPerSecond: parseRate(rate, '--tenant-limit'),
      burst: 0,
      maxConcurrency: concurrency === undefined ? 0 : parseWhole(concurrency.trim(), '--tenant-limit concurrency'),
    },
  ];
}

/** The spec fields of the flags (the defaults of those not given). */
export function protectionSpec(
  opts: ProtectionOptions,
): Pick<
  pb.DeploymentSpec,
  | 'responseCacheBytes'
  | 'priorityLevels'
  | 'defaultPriorityLevel'
  | 'defaultQueuePolicy'
  | 'priorityQueuePolicies'
  | 'callerLimits'
  | 'callerLimitOverrides'
> {
  let defaultQueuePolicy: pb.QueuePolicy | undefined;
  const priorityQueuePolicies: Record<number, pb.QueuePolicy> = {};
  for (const text of opts.priorityQueue ?? []) {
    const [level, policy] = parseQueuePolicy(text);
    if (level === 0) defaultQueuePolicy = policy;
    else priorityQueuePolicies[level] = policy;
  }
  const limited =
    opts.tenantRate !== undefined || opts.tenantBurst !== undefined || opts.tenantConcurrency !== undefined;
  return {
    responseCacheBytes: opts.cacheBytes === undefined ? 0n : parseByteSize(opts.cacheBytes, '--cache-bytes'),
    priorityLevels: parseWhole(opts.priorityLevels ?? '0', '--priority-levels'),
    defaultPriorityLevel: parseWhole(opts.defaultPriority ?? '0', '--default-priority'),
    defaultQueuePolicy,
    priorityQueuePolicies,
    callerLimits: limited
      ? {
          requestsPerSecond: opts.tenantRate === undefined ? 0 : parseRate(opts.tenantRate, '--tenant-rate'),
          burst: parseWhole(opts.tenantBurst ?? '0', '--tenant-burst'),
          maxConcurrency: parseWhole(opts.tenantConcurrency ?? '0', '--tenant-concurrency'),
        }
      : undefined,
    callerLimitOverrides: Object.fromEntries((opts.tenantLimit ?? []).map(parseCallerLimit)),
  };
}

const GIB = 1n << 30n;
const MIB = 1n << 20n;
const KIB = 1n << 10n;

function byteSize(bytes: bigint): string {
  for (const [unit, size] of [
    ['GiB', GIB],
    ['MiB', MIB],
    ['KiB', KIB],
  ] as const)
    if (bytes >= size && bytes % size === 0n) return `${bytes / size}${unit}`;
  return `${bytes} bytes`;
}

function describePolicy(p: pb.QueuePolicy): string {
  const parts = [
    p.maxQueueSize > 0 ? `max:${p.maxQueueSize}` : '',
    p.timeoutUs > 0n ? `timeout:${p.timeoutUs % 1000n === 0n ? `${p.timeoutUs / 1000n}ms` : `${p.timeoutUs}us`}` : '',
    p.delayOnTimeout ? 'delay' : '',
    p.allowTimeoutOverride ? 'override' : '',
  ].filter((s) => s !== '');
  return parts.length === 0 ? 'no limits' : parts.join(',');
}

function describeLimits(l: pb.CallerLimits): string {
  const parts = [
    l.requestsPerSecond > 0 ? `${l.requestsPerSecond}/s${l.burst > 0 ? ` (burst ${l.burst})` : ''}` : '',
    l.maxConcurrency > 0 ? `${l.maxConcurrency} in flight` : '',
  ].filter((s) => s !== '');
  return parts.length === 0 ? 'none' : parts.join(', ');
}

/** Lines of `quanta deployments get` for the cache, priorities and limits. */
export function describeProtection(s: pb.DeploymentSpec | undefined): [string, string][] {
  if (s === undefined) return [];
  const policies = Object.entries(s.priorityQueuePolicies).map(([level, p]) => `${level}=${describePolicy(p)}`);
  if (s.defaultQueuePolicy !== undefined) policies.unshift(`default=${describePolicy(s.defaultQueuePolicy)}`);
  const overrides = Object.entries(s.callerLimitOverrides).map(([sub, l]) => `${sub}: ${describeLimits(l)}`);
  return [
    ['response cache', s.responseCacheBytes > 0n ? byteSize(s.responseCacheBytes) : 'none'],
    [
      'priorities',
      s.priorityLevels > 0
        ? `${s.priorityLevels} levels, default ${s.defaultPriorityLevel || s.priorityLevels}` +
          (policies.length > 0 ? `; ${policies.join(' ')}` : '')
        : 'one level',
    ],
    [
      'caller limits',
      (s.callerLimits === undefined ? 'none' : describeLimits(s.callerLimits)) +
        (overrides.length > 0 ? `; ${overrides.join('; ')}` : ''),
    ],
  ];
}
