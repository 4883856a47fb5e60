import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IContainer } from 'kubernetes-models/v1/Container';
import { beforeAll, describe, expect, it } from 'vitest';
import type { K8sObject } from '../src/manifests.js';
import { parseQuantity, QUANTA_SERVICES } from '../src/rules.js';
import { renderObjects } from '../src/testing/overlays.js';

/**
 * The settings the manifests give each service, checked by the service itself: every QUANTA_* and
 * AWS_* variable a container sets is one that the service's --help lists, and the service's own
 * config loader accepts every value (it reports all problems at once, so an unknown flag makes it
 * list them and exit before it starts anything).
 */

const root = join(import.meta.dirname, '..', '..', '..');
const run = promisify(execFile);

/** Read by crypto's master-key loader, not its config schema (so not in --help). */
const READ_OUTSIDE_CONFIG: Record<string, readonly string[]> = { crypto: ['QUANTA_MASTER_KEY'] };

async function service(
  name: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; output: string }> {
  const main = join(root, 'services', name, 'src', 'main.ts');
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      ['--conditions=@quanta/source', '--import', 'tsx', main, ...args],
      { cwd: root, env, timeout: 60_000 },
    );
    return { code: 0, output: stdout + stderr };
  } catch (error: unknown) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, output: e.stdout + e.stderr };
  }
}

/** The container's environment as the kubelet would set it, values from the Secret and ConfigMap included. */
function environmentOf(container: IContainer, objects: readonly K8sObject[]): Record<string, string> {
  const data = (kind: string, name: string): Record<string, string> => {
    const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
    return {
      ...((o?.['data'] as Record<string, string> | undefined) ?? {}),
      ...((o?.['stringData'] as Record<string, string> | undefined) ?? {}),
    };
  };
  const env: Record<string, string> = {};
  for (const e of container.env ?? []) {
    const from = e.valueFrom;
    let value = e.value;
    if (from?.secretKeyRef !== undefined) value = data('Secret', from.secretKeyRef.name ?? '')[from.secretKeyRef.key];
    if (from?.configMapKeyRef !== undefined)
      value = data('ConfigMap', from.configMapKeyRef.name ?? '')[from.configMapKeyRef.key];
    if (from?.resourceFieldRef !== undefined) {
      const limit = parseQuantity(
        container.resources?.limits?.[from.resourceFieldRef.resource.replace(/^limits\./, '')],
      );
      value = limit === undefined ? undefined : String(Math.ceil(limit));
    }
    if (value === undefined) throw new Error(`${container.name}: no value for ${e.name}`);
    env[e.name] = value;
  }
  return env;
}

describe('the settings each Deployment gives its service', () => {
  let objects: K8sObject[];
  beforeAll(async () => {
    objects = await renderObjects('default');
  });

  it.each(Object.keys(QUANTA_SERVICES))(
    '%s knows every variable and accepts every value',
    async (name) => {
      const deployment = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === name) as
        (K8sObject & IDeployment) | undefined;
      const container = deployment?.spec?.template.spec?.containers[0];
      expect(container?.args).toEqual([name]);
      const env = environmentOf(container!, objects);
      const base = { PATH: process.env['PATH'], HOME: process.env['HOME'] };

      const [help, check] = await Promise.all([
        service(name, ['--help'], base),
        service(name, ['--k8s-settings-check'], { ...base, ...env }),
      ]);
      expect(help.code).toBe(0);
      const known = new Set([...help.output.matchAll(/\b(QUANTA|AWS)_[A-Z0-9_]+/g)].map((m) => m[0]));
      const unknown = Object.keys(env).filter(
        (v) => /^(QUANTA|AWS)_/.test(v) && !known.has(v) && !(READ_OUTSIDE_CONFIG[name] ?? []).includes(v),
      );
      expect(unknown).toEqual([]);
      expect(check.code).toBe(2);
      expect(check.output).toBe(`${name}: invalid configuration:\n  - unknown flag --k8s-settings-check\n`);
    },
    120_000,
  );

  it('match the image: its entrypoint takes the service name as the first argument, and it runs as user 10001', () => {
    const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
    const entrypoint = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(dockerfile)?.[1];
    expect(entrypoint, 'the Dockerfile has an exec-form ENTRYPOINT').toBeDefined();
    expect((JSON.parse(entrypoint!) as string[]).at(-1)).toBe('quanta-service');
    expect(/^USER\s+(\S+)\s*$/m.exec(dockerfile)?.[1]?.split(':')[0]).toBe('10001');
    for (const o of objects.filter((x): x is K8sObject & IDeployment => x.kind === 'Deployment')) {
      expect(o.spec?.template.spec?.securityContext?.runAsUser, o.metadata.name).toBe(10001);
    }
  });
});
