import type { registry as pb } from '@quanta/contracts';
import { CliError } from '../errors.js';

// `quanta deploy`'s canary and shadow flags: a second version of the model that takes a share of
// the requests, and one that gets copies of them off the caller's path (DeploymentSpec.canary and
// .shadow). The registry checks the references and percentages; these only parse them.

export interface TrafficOptions {
  /** `REF=PERCENT`; false with --no-canary. */
  canary?: string | false;
  /** `REF` or `REF=PERCENT`; false with --no-shadow. */
  shadow?: string | false;
  promote?: boolean;
}

/** The flags of `quanta deploy`, as `.option(...)` takes them. */
export const TRAFFIC_FLAGS = {
  canary: [
    '--canary <REF=PERCENT>',
    'send PERCENT (1-99) of the requests that name no version to REF, another version of the model ' +
      '(e.g. cifar:4=10); per sequence_id for stateful models. Kept on update unless given or --no-canary',
  ],
  noCanary: ['--no-canary', 'remove the canary: every request goes to --model'],
  shadow: [
    '--shadow <REF[=PERCENT]>',
    "run a copy of PERCENT (default 100) of the requests on REF after --model answered; the caller's answer " +
      "is never the shadow's, and monitoring compares the two. Kept on update unless given or --no-shadow",
  ],
  noShadow: ['--no-shadow', 'remove the shadow'],
  promote: ['--promote', "move every request to the canary: its reference becomes the deployment's model"],
} satisfies Record<string, [flags: string, description: string]>;

/** `cifar:4=10` → a TrafficTarget; the percent is required for a canary, optional (100) for a shadow. */
export function parseTrafficTarget(text: string, flag: '--canary' | '--shadow'): pb.TrafficTarget {
  const at = text.lastIndexOf('=');
  const modelRef = (at < 0 ? text : text.slice(0, at)).trim();
  const percentText = at < 0 ? undefined : text.slice(at + 1).trim();
  const example = flag === '--canary' ? 'cifar:4=10' : 'cifar:4 or cifar:4=25';
  if (modelRef === '') throw new CliError(`${flag} "${text}" names no model (e.g. ${example})`, 2);
  if (percentText === undefined) {
    if (flag === '--canary') throw new CliError(`--canary "${text}" needs a percent: REF=PERCENT (e.g. ${example})`, 2);
    return { modelRef, percent: 0 };
  }
  if (!/^\d+$/.test(percentText))
    throw new CliError(`${flag} "${text}": the percent must be a whole number (e.g. ${example})`, 2);
  return { modelRef, percent: Number(percentText) };
}

/**
 * The canary and shadow of the spec `quanta deploy` sends: the flags' when given, none with
 * --no-canary / --no-shadow, else what the deployment has now (`current`, undefined on create).
 */
export function trafficSpec(
  opts: TrafficOptions,
  current: pb.DeploymentSpec | undefined,
): Pick<pb.DeploymentSpec, 'canary' | 'shadow'> {
  const pick = (
    value: string | false | undefined,
    flag: '--canary' | '--shadow',
    kept: pb.TrafficTarget | undefined,
  ): pb.TrafficTarget | undefined =>
    value === false ? undefined : value === undefined ? kept : parseTrafficTarget(value, flag);
  const canary = pick(opts.canary, '--canary', current?.canary);
  const shadow = pick(opts.shadow, '--shadow', current?.shadow);
  return { ...(canary === undefined ? {} : { canary }), ...(shadow === undefined ? {} : { shadow }) };
}

/** The spec `--promote` sends: the canary's reference as the model, no canary. */
export function promotedSpec(name: string, d: pb.Deployment): pb.DeploymentSpec {
  const spec = d.spec;
  if (spec?.canary === undefined)
    throw new CliError(`deployment "${name}" has no canary to promote (add one with --canary REF=PERCENT)`, 2);
  const { canary, ...rest } = spec;
  return { ...rest, modelRef: canary.modelRef };
}

const version = (v: pb.ModelVersion | undefined): string => (v === undefined ? '?' : `${v.model}:${v.version}`);

/** `quanta deployments show`'s canary and shadow lines. */
export function describeTraffic(d: pb.Deployment): [string, string][] {
  const s = d.spec;
  return [
    [
      'canary',
      s?.canary === undefined ? 'none' : `${s.canary.modelRef} → ${version(d.canaryVersion)}, ${s.canary.percent}%`,
    ],
    [
      'shadow',
      s?.shadow === undefined
        ? 'none'
        : `${s.shadow.modelRef} → ${version(d.shadowVersion)}, ${s.shadow.percent || 100}% of requests copied`,
    ],
  ];
}

/** What `quanta deploy` prints after the resolved version: `, canary cifar:4 at 10%, shadow …`. */
export function trafficSummary(d: pb.Deployment | undefined): string {
  const s = d?.spec;
  return [
    s?.canary === undefined ? '' : `, canary ${version(d?.canaryVersion)} at ${s.canary.percent}%`,
    s?.shadow === undefined ? '' : `, shadow ${version(d?.shadowVersion)} at ${s.shadow.percent || 100}%`,
  ].join('');
}
