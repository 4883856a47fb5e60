import { describe, expect, it } from 'vitest';
import { describeObject } from './manifests.js';
import type { K8sObject } from './manifests.js';
import { validateObject } from './schemas.js';
import { EXPECTED_OBJECTS, OVERLAYS, renderObjects } from './testing/overlays.js';

describe.each(OVERLAYS)('overlay %s against the Kubernetes schemas', (overlay) => {
  it('renders the expected objects, each valid for its kind', async () => {
    const objects = await renderObjects(overlay);
    expect(objects.map(describeObject)).toEqual([...EXPECTED_OBJECTS]);
    for (const object of objects) expect(validateObject(object), describeObject(object)).toEqual([]);
  });
});

describe('validateObject', () => {
  const deployment = async (): Promise<Record<string, unknown>> => {
    const objects = await renderObjects('default');
    const found = objects.find((o) => o.kind === 'Deployment');
    if (found === undefined) throw new Error('the default overlay has no Deployment');
    return structuredClone(found);
  };

  it('refuses a kind it has no schema for, and a known kind under another apiVersion', () => {
    const pod: K8sObject = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { containers: [] } };
    expect(validateObject(pod)).toEqual([
      expect.stringMatching(/^Pod p: no schema for Pod in v1 \(known: v1 Namespace, /),
    ]);
    const hpa: K8sObject = { apiVersion: 'autoscaling/v1', kind: 'HorizontalPodAutoscaler', metadata: { name: 'h' } };
    expect(validateObject(hpa)).toEqual([
      expect.stringContaining('no schema for HorizontalPodAutoscaler in autoscaling/v1'),
    ]);
  });

  it('reports a field of the wrong type and a missing required field, with their paths', async () => {
    const d = await deployment();
    const spec = d['spec'] as Record<string, unknown>;
    spec['replicas'] = 'two';
    delete spec['template'];
    const problems = validateObject(d as unknown as K8sObject);
    expect(problems).toContainEqual(expect.stringMatching(/: \/spec\/replicas must be integer$/));
    expect(problems).toContainEqual(expect.stringMatching(/: \/spec must have required property template$/));
  });

  it('reports a probe whose port is not a port', async () => {
    const d = await deployment();
    const container = (d['spec'] as { template: { spec: { containers: Record<string, unknown>[] } } }).template.spec
      .containers[0]!;
    container['readinessProbe'] = { grpc: { port: 'grpc' } };
    expect(validateObject(d as unknown as K8sObject)).toContainEqual(
      expect.stringMatching(/containers\/0\/readinessProbe\/grpc\/port must be integer$/),
    );
  });
});
