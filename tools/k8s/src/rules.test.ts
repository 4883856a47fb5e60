import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IService } from 'kubernetes-models/v1/Service';
import { beforeAll, describe, expect, it } from 'vitest';
import type { K8sObject } from './manifests.js';
import { checkManifests, parseQuantity } from './rules.js';
import { OVERLAYS, renderObjects } from './testing/overlays.js';

describe.each(OVERLAYS)('overlay %s', (overlay) => {
  it('keeps every rule', async () => {
    expect(checkManifests(await renderObjects(overlay))).toEqual([]);
  });
});

describe('checkManifests finds each broken rule', () => {
  let rendered: K8sObject[];
  beforeAll(async () => {
    rendered = await renderObjects('default');
  });

  /** The default overlay with one change, and the problems checkManifests finds in it. */
  function problemsAfter(change: (objects: K8sObject[]) => void): string[] {
    const objects = structuredClone(rendered);
    change(objects);
    return checkManifests(objects);
  }
  function find<T>(objects: K8sObject[], kind: string, name: string): T {
    const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
    if (found === undefined) throw new Error(`no ${kind} ${name}`);
    return found as unknown as T;
  }
  const container = (objects: K8sObject[], name: string): IContainer =>
    find<IDeployment>(objects, 'Deployment', name).spec!.template.spec!.containers[0]!;
  const drop = (objects: K8sObject[], kind: string, name: string): void => {
    objects.splice(
      objects.findIndex((o) => o.kind === kind && o.metadata.name === name),
      1,
    );
  };

  it('a container without a readiness or liveness probe', () => {
    expect(problemsAfter((o) => delete container(o, 'crypto').readinessProbe)).toContain(
      'Deployment crypto: container crypto has no readinessProbe',
    );
    expect(problemsAfter((o) => delete container(o, 'inference').livenessProbe)).toContain(
      'Deployment inference: container inference has no livenessProbe',
    );
  });

  it('a probe of the wrong kind, path or port', () => {
    expect(
      problemsAfter((o) => (container(o, 'model-registry').livenessProbe = { tcpSocket: { port: 9001 } })),
    ).toContain('Deployment model-registry: livenessProbe must be a gRPC health check on port 9001');
    expect(
      problemsAfter(
        (o) => (container(o, 'inference').readinessProbe = { httpGet: { path: '/v2/health/live', port: 'http' } }),
      ),
    ).toContain('Deployment inference: readinessProbe must be GET /v2/health/ready on port 8000');
    expect(problemsAfter((o) => (container(o, 'monitoring').readinessProbe = { grpc: { port: 9999 } }))).toContain(
      "Deployment monitoring: container monitoring's readinessProbe uses port 9999, " +
        'which the container does not declare',
    );
  });

  it('a container without requests or limits, or asking more than its limit', () => {
    expect(problemsAfter((o) => delete container(o, 'model-registry').resources!.limits!['memory'])).toContain(
      'Deployment model-registry: container model-registry has no memory limit',
    );
    expect(problemsAfter((o) => delete container(o, 'crypto').resources!.requests)).toEqual(
      expect.arrayContaining([
        'Deployment crypto: container crypto has no cpu request',
        'Deployment crypto: container crypto has no memory request',
      ]),
    );
    expect(problemsAfter((o) => (container(o, 'inference').resources!.requests!['cpu'] = '8'))).toContain(
      'Deployment inference: container inference requests more cpu than its limit',
    );
  });

  it('a container that may run as root, write its root filesystem or escalate', () => {
    const after = problemsAfter((o) => {
      const d = find<IDeployment>(o, 'Deployment', 'monitoring');
      d.spec!.template.spec!.securityContext!.runAsNonRoot = false;
      const sc = container(o, 'monitoring').securityContext!;
      delete sc.runAsNonRoot;
      sc.readOnlyRootFilesystem = false;
      sc.allowPrivilegeEscalation = true;
      sc.capabilities = { drop: ['NET_RAW'] };
    });
    expect(after).toEqual(
      expect.arrayContaining([
        'Deployment monitoring: container monitoring does not set runAsNonRoot: true',
        'Deployment monitoring: container monitoring does not set readOnlyRootFilesystem: true',
        'Deployment monitoring: container monitoring does not set allowPrivilegeEscalation: false',
        'Deployment monitoring: container monitoring does not drop ALL capabilities',
      ]),
    );
  });

  it('QUANTA_HOME or /tmp without an emptyDir under it', () => {
    expect(
      problemsAfter(
        (o) =>
          (container(o, 'crypto').volumeMounts = container(o, 'crypto').volumeMounts!.filter(
            (m) => m.mountPath !== '/tmp',
          )),
      ),
    ).toContain('Deployment crypto: container crypto cannot write /tmp (no emptyDir mounted there)');
    expect(
      problemsAfter((o) => (container(o, 'inference').env!.find((e) => e.name === 'QUANTA_HOME')!.value = '/data')),
    ).toContain('Deployment inference: container inference cannot write /data (no emptyDir mounted there)');
  });

  it('no headless Service for inference gRPC, or no scraped metrics port', () => {
    expect(problemsAfter((o) => delete find<IService>(o, 'Service', 'inference-grpc').spec!.clusterIP)).toContain(
      'Service: no headless Service (clusterIP: None) for inference gRPC on 8001, so clients cannot balance per call',
    );
    expect(
      problemsAfter((o) => delete find<IService>(o, 'Service', 'inference-metrics').metadata!.annotations),
    ).toContain("Service: no Service exposes inference's metrics on 8002 with prometheus.io/scrape annotations");
  });

  it('a Service whose selector or target port matches no pods', () => {
    expect(
      problemsAfter(
        (o) => (find<IService>(o, 'Service', 'crypto').spec!.selector = { 'app.kubernetes.io/name': 'krypto' }),
      ),
    ).toContain('Service crypto: its selector {"app.kubernetes.io/name":"krypto"} matches no Deployment\'s pods');
    expect(
      problemsAfter((o) => (find<IService>(o, 'Service', 'monitoring').spec!.ports![1]!.targetPort = 'dashboard')),
    ).toContain(
      'Service monitoring: port http targets dashboard, which no container of Deployment monitoring declares',
    );
  });

  it('a PodDisruptionBudget that selects no Deployment, or blocks every eviction', () => {
    expect(
      problemsAfter(
        (o) =>
          (find<IPodDisruptionBudget>(o, 'PodDisruptionBudget', 'crypto').spec!.selector = {
            matchLabels: { 'app.kubernetes.io/name': 'kms' },
          }),
      ),
    ).toContain("PodDisruptionBudget crypto: its selector matches 0 Deployments' pods, not one");
    expect(
      problemsAfter(
        (o) => (find<IPodDisruptionBudget>(o, 'PodDisruptionBudget', 'model-registry').spec!.minAvailable = 2),
      ),
    ).toContain(
      'PodDisruptionBudget model-registry: with 2 replica(s) of Deployment model-registry ' +
        'it blocks every voluntary eviction (node drains hang)',
    );
  });

  it('an autoscaler aimed elsewhere, or fighting the replicas of its Deployment', () => {
    expect(
      problemsAfter(
        (o) =>
          (find<IHorizontalPodAutoscaler>(o, 'HorizontalPodAutoscaler', 'inference').spec!.scaleTargetRef.name =
            'inferense'),
      ),
    ).toEqual(
      expect.arrayContaining([
        'HorizontalPodAutoscaler inference: scaleTargetRef apps/v1 Deployment inferense ' +
          'is not a Deployment of these manifests',
        'HorizontalPodAutoscaler: none scales Deployment inference',
      ]),
    );
    expect(problemsAfter((o) => (find<IDeployment>(o, 'Deployment', 'inference').spec!.replicas = 3))).toContain(
      'HorizontalPodAutoscaler inference: Deployment inference sets replicas, which the autoscaler owns',
    );
  });

  it('a NetworkPolicy that admits other pods to crypto than its clients, or none at all', () => {
    const fromExpression = (o: K8sObject[]): string[] =>
      find<INetworkPolicy>(o, 'NetworkPolicy', 'crypto').spec!.ingress![0]!.from![0]!.podSelector!.matchExpressions![0]!
        .values!;
    expect(problemsAfter((o) => fromExpression(o).splice(fromExpression(o).indexOf('monitoring'), 1))).toContain(
      'NetworkPolicy: crypto admits inference, model-registry; ' +
        'it must admit exactly inference, model-registry, monitoring',
    );
    expect(problemsAfter((o) => fromExpression(o).push('crypto'))).toContain(
      'NetworkPolicy: crypto admits crypto, inference, model-registry, monitoring; ' +
        'it must admit exactly inference, model-registry, monitoring',
    );
    expect(
      problemsAfter((o) =>
        find<INetworkPolicy>(o, 'NetworkPolicy', 'crypto').spec!.ingress![0]!.from!.push({ namespaceSelector: {} }),
      ),
    ).toContain('NetworkPolicy crypto: admits pods of other namespaces');
    expect(
      problemsAfter((o) => delete find<INetworkPolicy>(o, 'NetworkPolicy', 'crypto').spec!.ingress![0]!.from),
    ).toContain('NetworkPolicy crypto: an ingress rule without `from` admits every source');
    expect(problemsAfter((o) => drop(o, 'NetworkPolicy', 'crypto'))).toContain(
      'Deployment crypto: no NetworkPolicy selects its pods, so every pod reaches them',
    );
  });

  it('an environment variable from a Secret key or ConfigMap key that is not there', () => {
    expect(
      problemsAfter(
        (o) =>
          (container(o, 'crypto').env!.find((e) => e.name === 'QUANTA_MASTER_KEY')!.valueFrom!.secretKeyRef!.key =
            'master_key'),
      ),
    ).toContain(
      'Deployment crypto: QUANTA_MASTER_KEY comes from key master_key of Secret quanta-secrets, ' +
        'which it does not define',
    );
    expect(problemsAfter((o) => drop(o, 'ConfigMap', 'quanta-config'))).toContain(
      'Deployment model-registry: QUANTA_BLOB_URL comes from ConfigMap quanta-config, ' +
        'which the manifests do not define',
    );
  });

  it('an object outside the namespace, or an image without a tag', () => {
    expect(
      problemsAfter(
        (o) => ((find<IService>(o, 'Service', 'crypto').metadata as { namespace?: string }).namespace = 'default'),
      ),
    ).toContain('Service crypto: is in namespace default, not quanta');
    expect(problemsAfter((o) => (container(o, 'crypto').image = 'quanta'))).toContain(
      "Deployment crypto: container crypto's image quanta has no tag",
    );
  });
});

describe('parseQuantity', () => {
  it('reads CPU and memory quantities', () => {
    expect(parseQuantity('500m')).toBe(0.5);
    expect(parseQuantity('2')).toBe(2);
    expect(parseQuantity(4)).toBe(4);
    expect(parseQuantity('1Gi')).toBe(2 ** 30);
    expect(parseQuantity('256Mi')).toBe(256 * 2 ** 20);
    expect(parseQuantity('1G')).toBe(1e9);
    expect(parseQuantity('lots')).toBeUndefined();
  });
});
