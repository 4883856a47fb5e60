import { checkServiceConfig, fields, loadConfig, loadConfigOrExit, serviceConfigFields } from '@quanta/service-kit';
import type { ConfigOf, ConfigSource, OptionalKey } from '@quanta/service-kit';

/**
 * Optional in InferenceConfig: a config without `metricsPort` opens no metrics listener, which is
 * what a server started in-process (a test, a benchmark) usually wants; loadConfig always gives
 * one (8002).
 */
const optionalKey: OptionalKey = { optionalKey: true };

/** The inference service's settings: flags (`--port 8001`) or QUANTA_* environment variables. */
export const inferenceConfigSchema = {
  home: fields.string({
    env: 'QUANTA_HOME',
    default: '.quanta',
    doc: 'data folder, where the admin token that crypto writes is read from ($QUANTA_HOME/admin.token)',
  }),
  // Model inputs are large (an image batch is megabytes): 64 MiB like the REST body limit.
  ...serviceConfigFields({ envPrefix: 'QUANTA_INFERENCE', port: 8001, maxReceiveMessageLength: 64 * 1024 * 1024 }),
  httpHost: fields.string({
    env: 'QUANTA_INFERENCE_HTTP_HOST',
    default: '127.0.0.1',
    doc: 'address of the KServe v2 REST listener',
  }),
  httpPort: fields.port({
    env: 'QUANTA_INFERENCE_HTTP_PORT',
    default: 8000,
    doc: 'KServe v2 REST port (0 picks a free one)',
  }),
  metrics: {
    ...fields.bool({
      env: 'QUANTA_INFERENCE_METRICS',
      default: true,
      doc:
        "serve Prometheus metrics in Triton's format (nv_inference_*) at /metrics on --metrics-port " +
        "(--no-metrics: none, as Triton's --allow-metrics=false)",
    }),
    ...optionalKey,
  },
  metricsHost: {
    ...fields.string({
      env: 'QUANTA_INFERENCE_METRICS_HOST',
      doc: "address of the metrics listener; default: --http-host's (as Triton's metrics follow its --http-address)",
    }),
    ...optionalKey,
  },
  metricsPort: {
    ...fields.port({
      env: 'QUANTA_INFERENCE_METRICS_PORT',
      default: 8002,
      doc: 'port of the metrics listener (0 picks a free one)',
    }),
    ...optionalKey,
  },
  metricsPublic: {
    ...fields.bool({
      env: 'QUANTA_INFERENCE_METRICS_PUBLIC',
      default: false,
      doc:
        "serve every tenant's metrics without a token (only allowed on a loopback metrics host); " +
        "otherwise a token with monitoring:read sees its tenant's, an admin token every tenant's",
    }),
    ...optionalKey,
  },
  maxBodyBytes: fields.int({
    env: 'QUANTA_INFERENCE_MAX_BODY_BYTES',
    default: 64 * 1024 * 1024,
    min: 1024,
    max: 2 ** 31 - 1,
    doc: 'largest REST request body, in bytes (larger ones get 413)',
  }),
  cryptoAddr: fields.string({
    env: 'QUANTA_CRYPTO_ADDR',
    default: '127.0.0.1:9002',
    doc: 'crypto service: public keys that check tokens, data keys of model files',
  }),
  registryAddr: fields.string({
    env: 'QUANTA_REGISTRY_ADDR',
    default: '127.0.0.1:9001',
    doc: 'model registry, whose deployments this replica serves (with --watch)',
  }),
  monitoringAddr: fields.string({
    env: 'QUANTA_MONITORING_ADDR',
    doc: 'monitoring service that receives a record of every request; none when unset',
  }),
  driftSampleRate: fields.int({
    env: 'QUANTA_DRIFT_SAMPLE_RATE',
    default: 10_000,
    min: 0,
    max: 100_000_000,
    doc:
      'input values sampled per second per model version for drift detection (summaries sent to ' +
      'monitoring with the records; 0: none); a request is sampled while the budget lasts',
  }),
  driftMaxValues: fields.int({
    env: 'QUANTA_DRIFT_MAX_VALUES',
    default: 1024,
    min: 1,
    max: 100_000_000,
    doc: 'most values sampled from one input of one request (spread over the tensor)',
  }),
  driftFlushInterval: fields.duration({
    env: 'QUANTA_DRIFT_FLUSH_INTERVAL',
    default: 5000,
    doc: 'how often the sampled input summaries are sent to monitoring',
  }),
  serviceToken: fields.string({
    env: 'QUANTA_INFERENCE_SERVICE_TOKEN',
    doc: 'token for calls to the registry, crypto and monitoring; default: $QUANTA_HOME/admin.token',
  }),
  threadsPerInstance: fields.int({
    env: 'QUANTA_INFERENCE_THREADS_PER_INSTANCE',
    default: 0,
    min: 0,
    max: 1024,
    doc: 'onnxruntime intra-op threads per session when a deployment does not say (0: onnxruntime decides)',
  }),
  execution: fields.enum({
    env: 'QUANTA_INFERENCE_EXECUTION',
    values: ['auto', 'worker', 'inline'] as const,
    default: 'auto',
    doc:
      "where each instance's onnxruntime session runs: worker (a worker thread per instance: requests keep " +
      'being taken while a batch runs, instances run in parallel), inline (on the event loop: less latency ' +
      'for models of tens of µs on small machines) or auto (decided per model at load: inline when ' +
      "onnxruntime's time for one row is shorter than the hand-off to a worker and the model's dims are " +
      'fixed but the batch dim, worker otherwise)',
  }),
  watch: fields.bool({
    env: 'QUANTA_INFERENCE_WATCH',
    default: false,
    doc: "serve the registry's deployments (watch them, download, load, swap); off: only what is loaded by hand",
  }),
};

export type InferenceConfig = ConfigOf<typeof inferenceConfigSchema>;

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

function checkInferenceConfig(config: Record<string, unknown>): string[] {
  const problems = [...checkServiceConfig(config)];
  if (typeof config['driftFlushInterval'] === 'number' && config['driftFlushInterval'] < 100)
    problems.push(`QUANTA_DRIFT_FLUSH_INTERVAL must be at least 100ms, got ${config['driftFlushInterval']}ms`);
  const metricsHost = String(config['metricsHost'] ?? config['httpHost']);
  if (config['metrics'] !== false && config['metricsPublic'] === true && !LOOPBACK.has(metricsHost)) {
    problems.push(
      'QUANTA_INFERENCE_METRICS_PUBLIC needs the metrics listener on a loopback address ' +
        `(127.0.0.1 or ::1; --metrics-host, else --http-host), not ${metricsHost}: ` +
        "it shows every tenant's metrics without a token",
    );
  }
  return problems;
}

/** Throws service-kit's ConfigError listing every problem. */
export function loadInferenceConfig(source: ConfigSource = {}): InferenceConfig {
  return loadConfig(inferenceConfigSchema, { check: checkInferenceConfig, ...source });
}

/** For main: help on --help, a clear message and exit 2 on bad settings. */
export function loadInferenceConfigOrExit(source: ConfigSource = {}): InferenceConfig {
  return loadConfigOrExit(inferenceConfigSchema, { program: 'inference', check: checkInferenceConfig, ...source });
}

/**
 * A whole config from the schema's defaults with `overrides` on top, for a server started
 * in-process (tests, benchmarks): no flags or environment are read, and a field added to the
 * schema reaches every such caller with its default. The defaults open a metrics listener on
 * 8002; pass `metricsPort: undefined` for none, or 0 for a free port.
 */
export function inferenceConfig(overrides: Partial<InferenceConfig> = {}): InferenceConfig {
  return { ...loadInferenceConfig({ argv: [], env: {} }), ...overrides };
}
