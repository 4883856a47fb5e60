export { DEFAULT_OVERLAY, kustomize, MANIFESTS_DIR, overlayDir, RenderError } from './kustomize.js';
export type { KustomizeOptions } from './kustomize.js';
export { describeObject, fileNameOf, parseManifests } from './manifests.js';
export type { K8sObject, RenderedObject } from './manifests.js';
export { RENDERED_HEADER, renderOverlay, writeRendered } from './render.js';
export { checkManifests, CRYPTO_CLIENTS, parseQuantity, QUANTA_SERVICES } from './rules.js';
export { KNOWN_KINDS, validateObject } from './schemas.js';
