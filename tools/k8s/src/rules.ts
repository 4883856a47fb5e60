import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IContainer } from 'kubernetes-models/v1/Container';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import type { IProbe } from 'kubernetes-models/v1/Probe';
import { Secret } from 'kubernetes-models/v1/Secret';
import type { IService } from 'kubernetes-models/v1/Service';
import { Service } from 'kubernetes-models/v1/Service';
import type { K8sObject } from './manifests.js';

/**
 * The rules that the Quanta manifests keep, beyond what the schemas check (schemas.ts). Run them
 * on objects that passed validateObject: the typed views below rely on it.
 */

type LabelSelector = NonNullable<NonNullable<IDeployment['spec']>['selector']>;
type Labels = Readonly<Record<string, string>>;

/** How each service is probed, and the gRPC port it listens on. */
export const QUANTA_SERVICES = {
  crypto: { grpcPort: 9002, probe: 'grpc' },
  'model-registry': { grpcPort: 9001, probe: 'grpc' },
  monitoring: { grpcPort: 9003, probe: 'grpc' },
  inference: { grpcPort: 8001, probe: 'http' },
} as const;
type QuantaService = keyof typeof QUANTA_SERVICES;

/** KServe v2's health endpoints, on inference's REST port. */
export const INFERENCE_HTTP_PORT = 8000;
export const INFERENCE_METRICS_PORT = 8002;
const INFERENCE_READY = '/v2/health/ready';
const INFERENCE_LIVE = '/v2/health/live';

/**
 * The deployments whose pods may call crypto: the registry (data keys, token keys), inference
 * (data keys of model files, token keys) and monitoring (token keys, health board).
 */
export const CRYPTO_CLIENTS: readonly QuantaService[] = ['inference', 'model-registry', 'monitoring'];

/** The label that names a pod's service; every selector in the manifests uses it. */
export const NAME_LABEL = 'app.kubernetes.io/name';

function selects(selector: LabelSelector | undefined, labels: Labels): boolean {
  if (selector === undefined) return false;
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) if (labels[key] !== value) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const value = labels[e.key];
    const values = e.values ?? [];
    if (e.operator === 'In' && !(has && value !== undefined && values.includes(value))) return false;
    if (e.operator === 'NotIn' && has && value !== undefined && values.includes(value)) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

function selectorIsEmpty(selector: LabelSelector | undefined): boolean {
  return Object.keys(selector?.matchLabels ?? {}).length === 0 && (selector?.matchExpressions ?? []).length === 0;
}

const UNITS: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

/** A Kubernetes quantity (`500m`, `2`, `1Gi`) as a number; undefined when it is none. */
export function parseQuantity(value: string | number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'number') return value;
  const match = /^(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(value.trim());
  if (match === null) return undefined;
  return Number(match[1]) * (UNITS[match[2] ?? ''] ?? Number.NaN);
}

interface Workload {
  readonly name: string;
  readonly labels: Labels;
  readonly spec: IPodSpec;
  readonly replicas: number | undefined;
  readonly where: string;
}

function workloadsOf(objects: readonly K8sObject[]): Workload[] {
  return objects
    .filter((o): o is K8sObject & IDeployment => Deployment.is(o))
    .map((d) => ({
      name: d.metadata.name,
      labels: d.spec?.template.metadata?.labels ?? {},
      spec: d.spec?.template.spec ?? { containers: [] },
      replicas: d.spec?.replicas,
      where: `Deployment ${d.metadata.name}`,
    }));
}

function probeProblems(where: string, kind: string, probe: IProbe | undefined, container: IContainer): string[] {
  if (probe === undefined) return [`${where}: container ${container.name} has no ${kind}`];
  const ports = container.ports ?? [];
  const port = probe.grpc?.port ?? probe.httpGet?.port ?? probe.tcpSocket?.port;
  if (port === undefined)
    return probe.exec === undefined ? [`${where}: container ${container.name}'s ${kind} checks nothing`] : [];
  const declared =
    typeof port === 'number' ? ports.some((p) => p.containerPort === port) : ports.some((p) => p.name === port);
  return declared
    ? []
    : [`${where}: container ${container.name}'s ${kind} uses port ${port}, which the container does not declare`];
}

function expectedProbeProblems(w: Workload, container: IContainer): string[] {
  const service = QUANTA_SERVICES[w.name as QuantaService] as (typeof QUANTA_SERVICES)[QuantaService] | undefined;
  if (service === undefined) return [];
  const problems: string[] = [];
  const httpPath = (probe: IProbe | undefined, path: string, kind: string): void => {
    const get = probe?.httpGet;
    const port = get?.port;
    const onRestPort =
      port === INFERENCE_HTTP_PORT ||
      (container.ports ?? []).some((p) => p.name === port && p.containerPort === INFERENCE_HTTP_PORT);
    if (get?.path !== path || !onRestPort)
      problems.push(`${w.where}: ${kind} must be GET ${path} on port ${INFERENCE_HTTP_PORT}`);
  };
  if (service.probe === 'http') {
    httpPath(container.readinessProbe, INFERENCE_READY, 'readinessProbe');
    httpPath(container.livenessProbe, INFERENCE_LIVE, 'livenessProbe');
  } else {
    for (const [kind, probe] of [
      ['readinessProbe', container.readinessProbe],
      ['livenessProbe', container.livenessProbe],
    ] as const) {
      if (probe?.grpc?.port !== service.grpcPort)
        problems.push(`${w.where}: ${kind} must be a gRPC health check on port ${service.grpcPort}`);
    }
  }
  return problems;
}

function resourceProblems(where: string, c: IContainer): string[] {
  const problems: string[] = [];
  for (const resource of ['cpu', 'memory'] as const) {
    const request = parseQuantity(c.resources?.requests?.[resource]);
    const limit = parseQuantity(c.resources?.limits?.[resource]);
    if (request === undefined) problems.push(`${where}: container ${c.name} has no ${resource} request`);
    if (limit === undefined) problems.push(`${where}: container ${c.name} has no ${resource} limit`);
    if (request !== undefined && limit !== undefined && request > limit) {
      problems.push(`${where}: container ${c.name} requests more ${resource} than its limit`);
    }
  }
  return problems;
}

function securityProblems(w: Workload, c: IContainer): string[] {
  const problems: string[] = [];
  const pod = w.spec.securityContext;
  const sc = c.securityContext;
  const say = (what: string): number => problems.push(`${w.where}: container ${c.name} ${what}`);
  if ((sc?.runAsNonRoot ?? pod?.runAsNonRoot) !== true) say('does not set runAsNonRoot: true');
  if ((sc?.runAsUser ?? pod?.runAsUser) === 0) say('runs as user 0');
  if (sc?.readOnlyRootFilesystem !== true) say('does not set readOnlyRootFilesystem: true');
  if (sc?.allowPrivilegeEscalation !== false) say('does not set allowPrivilegeEscalation: false');
  if (sc?.privileged === true) say('is privileged');
  if (!(sc?.capabilities?.drop ?? []).includes('ALL')) say('does not drop ALL capabilities');
  if ((sc?.capabilities?.add ?? []).length > 0) say('adds capabilities');
  if ((sc?.seccompProfile?.type ?? pod?.seccompProfile?.type) !== 'RuntimeDefault')
    say('has no RuntimeDefault seccomp profile');
  return problems;
}

/** With a read-only root, the service writes only to QUANTA_HOME and /tmp: both must be emptyDir mounts. */
function writablePathProblems(w: Workload, c: IContainer): string[] {
  const emptyDirs = new Set((w.spec.volumes ?? []).filter((v) => v.emptyDir !== undefined).map((v) => v.name));
  const writable = new Set(
    (c.volumeMounts ?? []).filter((m) => emptyDirs.has(m.name) && m.readOnly !== true).map((m) => m.mountPath),
  );
  const home = c.env?.find((e) => e.name === 'QUANTA_HOME')?.value;
  const problems: string[] = [];
  if (home === undefined) problems.push(`${w.where}: container ${c.name} does not set QUANTA_HOME`);
  for (const path of [home, '/tmp']) {
    if (path !== undefined && !writable.has(path))
      problems.push(`${w.where}: container ${c.name} cannot write ${path} (no emptyDir mounted there)`);
  }
  return problems;
}

function imageProblems(where: string, c: IContainer): string[] {
  const image = c.image ?? '';
  const tag = image.slice(image.lastIndexOf('/') + 1).split(':')[1];
  if (tag === undefined && !image.includes('@')) return [`${where}: container ${c.name}'s image ${image} has no tag`];
  return tag === 'latest' ? [`${where}: container ${c.name}'s image ${image} is tagged latest`] : [];
}

function workloadProblems(w: Workload): string[] {
  const problems: string[] = [];
  if (w.spec.automountServiceAccountToken !== false)
    problems.push(`${w.where}: mounts a service account token it does not use`);
  for (const c of [...(w.spec.initContainers ?? []), ...w.spec.containers]) {
    problems.push(
      ...probeProblems(w.where, 'readinessProbe', c.readinessProbe, c),
      ...probeProblems(w.where, 'livenessProbe', c.livenessProbe, c),
      ...expectedProbeProblems(w, c),
      ...resourceProblems(w.where, c),
      ...securityProblems(w, c),
      ...writablePathProblems(w, c),
      ...imageProblems(w.where, c),
    );
  }
  return problems;
}

function deploymentSelectorProblems(objects: readonly K8sObject[]): string[] {
  return objects
    .filter((o): o is K8sObject & IDeployment => Deployment.is(o))
    .filter(
      (d) => !selects(d.spec?.selector, d.spec?.template.metadata?.labels ?? {}) || selectorIsEmpty(d.spec?.selector),
    )
    .map((d) => `Deployment ${d.metadata.name}: its selector does not select its own pod template`);
}

function serviceProblems(services: readonly (K8sObject & IService)[], workloads: readonly Workload[]): string[] {
  const problems: string[] = [];
  for (const s of services) {
    const where = `Service ${s.metadata.name}`;
    const selector = s.spec?.selector ?? {};
    if (Object.keys(selector).length === 0) {
      problems.push(`${where}: has no selector`);
      continue;
    }
    const targets = workloads.filter((w) => selects({ matchLabels: selector }, w.labels));
    if (targets.length === 0)
      problems.push(`${where}: its selector ${JSON.stringify(selector)} matches no Deployment's pods`);
    for (const port of s.spec?.ports ?? []) {
      const target = port.targetPort ?? port.port;
      for (const w of targets) {
        const declared = w.spec.containers.some((c) =>
          (c.ports ?? []).some((p) => (typeof target === 'number' ? p.containerPort === target : p.name === target)),
        );
        if (!declared)
          problems.push(
            `${where}: port ${port.name ?? port.port} targets ${target}, which no container of ${w.where} declares`,
          );
      }
    }
  }
  return problems;
}

function podsOf(selector: LabelSelector | undefined, workloads: readonly Workload[]): Workload[] {
  return selectorIsEmpty(selector) ? [] : workloads.filter((w) => selects(selector, w.labels));
}

function pdbProblems(
  pdbs: readonly (K8sObject & IPodDisruptionBudget)[],
  workloads: readonly Workload[],
  hpas: readonly (K8sObject & IHorizontalPodAutoscaler)[],
): string[] {
  const problems: string[] = [];
  for (const pdb of pdbs) {
    const where = `PodDisruptionBudget ${pdb.metadata.name}`;
    const targets = podsOf(pdb.spec?.selector, workloads);
    if (targets.length !== 1) {
      problems.push(`${where}: its selector matches ${targets.length} Deployments' pods, not one`);
      continue;
    }
    const [w] = targets as [Workload];
    const hpa = hpas.find((h) => h.spec?.scaleTargetRef.kind === 'Deployment' && h.spec.scaleTargetRef.name === w.name);
    const replicas = hpa?.spec?.minReplicas ?? w.replicas ?? 1;
    const { minAvailable, maxUnavailable } = pdb.spec ?? {};
    if (
      (typeof minAvailable === 'number' && minAvailable >= replicas) ||
      maxUnavailable === 0 ||
      minAvailable === '100%' ||
      maxUnavailable === '0%'
    ) {
      problems.push(
        `${where}: with ${replicas} replica(s) of ${w.where} it blocks every voluntary eviction (node drains hang)`,
      );
    }
  }
  return problems;
}

function hpaProblems(hpas: readonly (K8sObject & IHorizontalPodAutoscaler)[], objects: readonly K8sObject[]): string[] {
  const problems: string[] = [];
  for (const hpa of hpas) {
    const where = `HorizontalPodAutoscaler ${hpa.metadata.name}`;
    const ref = hpa.spec?.scaleTargetRef;
    const target = objects.find((o): o is K8sObject & IDeployment => Deployment.is(o) && o.metadata.name === ref?.name);
    if (ref?.kind !== 'Deployment' || ref.apiVersion !== 'apps/v1' || target === undefined) {
      problems.push(
        `${where}: scaleTargetRef ${ref?.apiVersion ?? '?'} ${ref?.kind ?? '?'} ${ref?.name ?? '?'} ` +
          'is not a Deployment of these manifests',
      );
      continue;
    }
    // `kubectl apply` would set the Deployment back to its replicas on every apply, against the HPA.
    if (target.spec?.replicas !== undefined)
      problems.push(`${where}: Deployment ${target.metadata.name} sets replicas, which the autoscaler owns`);
    if ((hpa.spec?.minReplicas ?? 1) > (hpa.spec?.maxReplicas ?? 0))
      problems.push(`${where}: minReplicas is above maxReplicas`);
  }
  return problems;
}

/**
 * Which Deployments' pods the NetworkPolicies admit to the pods of `target`, on `port`; problems for
 * what cannot be reduced to a set of Deployments (no policy at all, any source, IP blocks, other
 * namespaces).
 */
function admittedTo(
  target: Workload,
  port: number,
  policies: readonly (K8sObject & INetworkPolicy)[],
  workloads: readonly Workload[],
): { admitted: Set<string>; problems: string[] } {
  const admitted = new Set<string>();
  const problems: string[] = [];
  const applying = policies.filter((p) => {
    const types = p.spec?.policyTypes ?? ['Ingress'];
    return selects(p.spec?.podSelector, target.labels) && types.includes('Ingress');
  });
  if (applying.length === 0)
    return { admitted, problems: [`${target.where}: no NetworkPolicy selects its pods, so every pod reaches them`] };
  for (const policy of applying) {
    const where = `NetworkPolicy ${policy.metadata.name}`;
    for (const rule of policy.spec?.ingress ?? []) {
      const onPort =
        (rule.ports ?? []).length === 0 || (rule.ports ?? []).some((p) => p.port === port || p.port === undefined);
      if (!onPort) continue;
      if ((rule.from ?? []).length === 0)
        problems.push(`${where}: an ingress rule without \`from\` admits every source`);
      for (const peer of rule.from ?? []) {
        if (peer.ipBlock !== undefined) problems.push(`${where}: admits the IP block ${peer.ipBlock.cidr}`);
        else if (peer.namespaceSelector !== undefined) problems.push(`${where}: admits pods of other namespaces`);
        else for (const w of workloads) if (selects(peer.podSelector ?? {}, w.labels)) admitted.add(w.name);
      }
    }
  }
  return { admitted, problems };
}

function cryptoPolicyProblems(
  policies: readonly (K8sObject & INetworkPolicy)[],
  workloads: readonly Workload[],
): string[] {
  const crypto = workloads.find((w) => w.name === 'crypto');
  if (crypto === undefined) return [];
  const { admitted, problems } = admittedTo(crypto, QUANTA_SERVICES.crypto.grpcPort, policies, workloads);
  const want = [...CRYPTO_CLIENTS].sort();
  const got = [...admitted].sort();
  if (problems.length === 0 && got.join() !== want.join()) {
    problems.push(
      `NetworkPolicy: crypto admits ${got.join(', ') || 'no Deployment'}; it must admit exactly ${want.join(', ')}`,
    );
  }
  return problems;
}

function referenceProblems(objects: readonly K8sObject[], workloads: readonly Workload[]): string[] {
  const keysOf = (kind: 'Secret' | 'ConfigMap', name: string): Set<string> | undefined => {
    const found = objects.find((o) => (kind === 'Secret' ? Secret.is(o) : ConfigMap.is(o)) && o.metadata.name === name);
    if (found === undefined) return undefined;
    return new Set([
      ...Object.keys((found['data'] as object | undefined) ?? {}),
      ...Object.keys((found['stringData'] as object | undefined) ?? {}),
    ]);
  };
  const problems: string[] = [];
  for (const w of workloads) {
    for (const c of w.spec.containers) {
      for (const e of c.env ?? []) {
        const refs = [
          ['Secret', e.valueFrom?.secretKeyRef],
          ['ConfigMap', e.valueFrom?.configMapKeyRef],
        ] as const;
        for (const [kind, ref] of refs) {
          if (ref === undefined) continue;
          const keys = keysOf(kind, ref.name ?? '');
          if (keys === undefined)
            problems.push(
              `${w.where}: ${e.name} comes from ${kind} ${ref.name ?? '?'}, which the manifests do not define`,
            );
          else if (!keys.has(ref.key))
            problems.push(
              `${w.where}: ${e.name} comes from key ${ref.key} of ${kind} ${ref.name ?? '?'}, which it does not define`,
            );
        }
      }
      for (const from of c.envFrom ?? []) {
        const name = from.secretRef?.name ?? from.configMapRef?.name ?? '';
        if (keysOf(from.secretRef === undefined ? 'ConfigMap' : 'Secret', name) === undefined)
          problems.push(`${w.where}: envFrom names ${name}, which the manifests do not define`);
      }
    }
  }
  return problems;
}

function namespaceProblems(objects: readonly K8sObject[]): string[] {
  const namespaces = objects.filter((o) => Namespace.is(o));
  if (namespaces.length !== 1) return [`the manifests hold ${namespaces.length} Namespaces, not one`];
  const name = namespaces[0]?.metadata.name;
  return objects
    .filter((o) => !Namespace.is(o) && o.metadata.namespace !== name)
    .map((o) => `${o.kind} ${o.metadata.name}: is in namespace ${o.metadata.namespace ?? '(none)'}, not ${name ?? ''}`);
}

function inferenceServiceProblems(
  services: readonly (K8sObject & IService)[],
  workloads: readonly Workload[],
): string[] {
  const inference = workloads.find((w) => w.name === 'inference');
  if (inference === undefined) return [];
  const toInference = services.filter(
    (s) =>
      selects({ matchLabels: s.spec?.selector ?? {} }, inference.labels) &&
      Object.keys(s.spec?.selector ?? {}).length > 0,
  );
  const problems: string[] = [];
  const headless = toInference.some(
    (s) =>
      s.spec?.clusterIP === 'None' && (s.spec.ports ?? []).some((p) => p.port === QUANTA_SERVICES.inference.grpcPort),
  );
  if (!headless)
    problems.push(
      `Service: no headless Service (clusterIP: None) for inference gRPC on ${QUANTA_SERVICES.inference.grpcPort}, ` +
        'so clients cannot balance per call',
    );
  const scraped = toInference.some((s) => {
    const a = s.metadata.annotations ?? {};
    const port = String(INFERENCE_METRICS_PORT);
    return (
      a['prometheus.io/scrape'] === 'true' &&
      a['prometheus.io/port'] === port &&
      (s.spec?.ports ?? []).some((p) => p.port === INFERENCE_METRICS_PORT)
    );
  });
  if (!scraped)
    problems.push(
      `Service: no Service exposes inference's metrics on ${INFERENCE_METRICS_PORT} ` +
        'with prometheus.io/scrape annotations',
    );
  return problems;
}

/** Every rule the Quanta manifests break, one line each; [] when they keep them all. */
export function checkManifests(objects: readonly K8sObject[]): string[] {
  const workloads = workloadsOf(objects);
  const services = objects.filter((o): o is K8sObject & IService => Service.is(o));
  const pdbs = objects.filter((o): o is K8sObject & IPodDisruptionBudget => PodDisruptionBudget.is(o));
  const hpas = objects.filter((o): o is K8sObject & IHorizontalPodAutoscaler => HorizontalPodAutoscaler.is(o));
  const policies = objects.filter((o): o is K8sObject & INetworkPolicy => NetworkPolicy.is(o));
  const problems: string[] = [];
  for (const name of Object.keys(QUANTA_SERVICES)) {
    if (!workloads.some((w) => w.name === name)) problems.push(`Deployment ${name}: missing`);
  }
  if (!hpas.some((h) => h.spec?.scaleTargetRef.name === 'inference'))
    problems.push('HorizontalPodAutoscaler: none scales Deployment inference');
  if (pdbs.length === 0) problems.push('PodDisruptionBudget: none');
  problems.push(
    ...namespaceProblems(objects),
    ...deploymentSelectorProblems(objects),
    ...workloads.flatMap(workloadProblems),
    ...serviceProblems(services, workloads),
    ...inferenceServiceProblems(services, workloads),
    ...pdbProblems(pdbs, workloads, hpas),
    ...hpaProblems(hpas, objects),
    ...cryptoPolicyProblems(policies, workloads),
    ...referenceProblems(objects, workloads),
  );
  return problems;
}
