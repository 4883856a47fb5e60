import { parseAllDocuments } from 'yaml';

/** The fields every Kubernetes object has; the rest is checked against its schema (schemas.ts). */
export interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: {
    readonly name: string;
    readonly namespace?: string;
    readonly labels?: Readonly<Record<string, string>>;
  };
  readonly [field: string]: unknown;
}

/** One object of a rendered stream, with its YAML text as kubectl wrote it. */
export interface RenderedObject {
  readonly object: K8sObject;
  readonly yaml: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function asK8sObject(value: unknown, where: string): K8sObject {
  if (!isRecord(value)) throw new Error(`${where} is not a mapping`);
  const { apiVersion, kind, metadata } = value;
  if (typeof apiVersion !== 'string' || apiVersion === '') throw new Error(`${where} has no apiVersion`);
  if (typeof kind !== 'string' || kind === '') throw new Error(`${where} has no kind`);
  if (!isRecord(metadata) || typeof metadata['name'] !== 'string' || metadata['name'] === '') {
    throw new Error(`${where} (${kind}) has no metadata.name`);
  }
  return value as unknown as K8sObject;
}

/** Splits a multi-document YAML stream (kubectl kustomize's output) into its objects, in order. */
export function parseManifests(text: string): RenderedObject[] {
  const out: RenderedObject[] = [];
  parseAllDocuments(text).forEach((doc, i) => {
    const where = `document ${i + 1}`;
    if (doc.errors.length > 0) throw new Error(`${where} is not valid YAML: ${doc.errors[0]?.message ?? ''}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return; // an empty document between two `---`
    const object = asK8sObject(value, where);
    // Without the `---` that separated it in the stream: each object gets a file of its own.
    out.push({ object, yaml: doc.toString({ lineWidth: 0 }).replace(/^---\r?\n/, '') });
  });
  return out;
}

/** `Deployment crypto`: how messages name an object. */
export function describeObject(object: K8sObject): string {
  return `${object.kind} ${object.metadata.name}`;
}

/**
 * `07-deployment-crypto.yaml`: the position in the stream first, so that `kubectl apply -f DIR`,
 * which takes files in name order, creates them in kustomize's order (the Namespace first).
 */
export function fileNameOf(object: K8sObject, index: number, count: number): string {
  const width = Math.max(2, String(count).length);
  const slug = (s: string): string => s.toLowerCase().replace(/[^a-z0-9.-]+/g, '-');
  return `${String(index + 1).padStart(width, '0')}-${slug(object.kind)}-${slug(object.metadata.name)}.yaml`;
}
