// @quanta/sdk: what a partner installs to call Quanta from TypeScript. One createQuantaClient for
// every service (typed promise methods, bearer token, deadline, safe retries), tensor helpers for
// ModelInfer, and the generated contracts for the message types.
export {
  createQuantaClient,
  DEFAULT_DEADLINE_MS,
  type CallOptions,
  type MethodClient,
  type Pem,
  type QuantaClient,
  type QuantaClientOptions,
  type RequestInput,
  type RequestSource,
  type RetryEvent,
  type ServiceClient,
  type ServiceName,
  type TlsConfig,
  type TokenSource,
} from './client.js';
export { QuantaClientError } from './errors.js';
export {
  backoffMs,
  DEFAULT_RETRY,
  IDEMPOTENT_METHODS,
  isRetryable,
  neverSent,
  RETRY_POLICY,
  retryAfterMs,
  type RetryOptions,
  type RetryRule,
} from './retry.js';
export {
  inferRequest,
  outputTensor,
  outputTensors,
  tensorValues,
  toTensor,
  type InferRequestOptions,
  type InputSpec,
  type TensorData,
} from './tensors.js';
export { crypto, health, inference, monitoring, registry } from '@quanta/contracts';
export type { Datatype, Tensor } from '@quanta/tensor/core';
export * from './batch/index.js';
