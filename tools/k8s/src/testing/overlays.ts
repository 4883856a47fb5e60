import { kustomize, overlayDir } from '../kustomize.js';
import type { K8sObject } from '../manifests.js';
import { parseManifests } from '../manifests.js';

/** The overlays the repository ships; every test runs on each. */
export const OVERLAYS = ['default', 'production'] as const;

/** What every overlay renders, in kustomize's order: the count the README gives. */
export const EXPECTED_OBJECTS = [
  'Namespace quanta',
  'ConfigMap quanta-config',
  'Secret quanta-secrets',
  'Service crypto',
  'Service inference',
  'Service inference-grpc',
  'Service inference-metrics',
  'Service model-registry',
  'Service monitoring',
  'Deployment crypto',
  'Deployment inference',
  'Deployment model-registry',
  'Deployment monitoring',
  'PodDisruptionBudget crypto',
  'PodDisruptionBudget inference',
  'PodDisruptionBudget model-registry',
  'HorizontalPodAutoscaler inference',
  'NetworkPolicy crypto',
] as const;

/** The overlay's objects, rendered by kubectl without the schema check (the tests make that). */
export async function renderObjects(overlay: string): Promise<K8sObject[]> {
  return parseManifests(await kustomize(overlayDir(overlay))).map((r) => r.object);
}
