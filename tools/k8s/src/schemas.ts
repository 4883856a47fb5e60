import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import type { K8sObject } from './manifests.js';
import { describeObject } from './manifests.js';

/** A kubernetes-models class: its apiVersion and kind, and a constructor whose instance validates. */
interface ModelClass {
  readonly apiVersion: string;
  readonly kind: string;
  new (data: object): { validate(): void };
}

/**
 * The kinds the manifests may hold. kubernetes-models compiles the Kubernetes OpenAPI schema of
 * each (types, formats, enums, required fields), so validation needs no cluster. A kind missing
 * here is an error, not a pass: add its class when the manifests start using it.
 */
const MODELS: readonly ModelClass[] = [
  Namespace,
  Secret,
  ConfigMap,
  Service,
  Deployment,
  PodDisruptionBudget,
  HorizontalPodAutoscaler,
  NetworkPolicy,
];

const BY_TYPE = new Map(MODELS.map((m) => [`${m.apiVersion} ${m.kind}`, m]));

/** The kinds with a schema, as `apiVersion kind`. */
export const KNOWN_KINDS: readonly string[] = [...BY_TYPE.keys()];

/** What is wrong with the object against its kind's schema: [] when it is valid. */
export function validateObject(object: K8sObject): string[] {
  const model = BY_TYPE.get(`${object.apiVersion} ${object.kind}`);
  if (model === undefined) {
    return [
      `${describeObject(object)}: no schema for ${object.kind} in ${object.apiVersion} ` +
        `(known: ${KNOWN_KINDS.join(', ')})`,
    ];
  }
  try {
    new model(object).validate();
    return [];
  } catch (error: unknown) {
    // kubernetes-models throws ajv's ValidationError: `errors` holds one entry per failed check.
    const errors = (error as { errors?: unknown }).errors;
    if (!Array.isArray(errors))
      return [`${describeObject(object)}: ${error instanceof Error ? error.message : String(error)}`];
    return errors.map(
      (e: { instancePath?: string; message?: string }) =>
        `${describeObject(object)}: ${e.instancePath || '/'} ${e.message ?? 'is invalid'}`,
    );
  }
}
