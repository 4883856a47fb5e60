import { ConfigError } from '@quanta/service-kit';
import { describe, expect, it } from 'vitest';
import { loadInferenceConfig } from './config.js';

describe('inference config', () => {
  it('has working defaults (gRPC 8001, REST 8000, metrics 8002, no registry watch)', () => {
    const c = loadInferenceConfig({ argv: [], env: {} });
    expect(c).toMatchObject({
      home: '.quanta',
      port: 8001,
      httpHost: '127.0.0.1',
      httpPort: 8000,
      metrics: true,
      metricsHost: undefined,
      metricsPort: 8002,
      metricsPublic: false,
      maxBodyBytes: 64 * 1024 * 1024,
      maxReceiveMessageBytes: 64 * 1024 * 1024,
      cryptoAddr: '127.0.0.1:9002',
      registryAddr: '127.0.0.1:9001',
      monitoringAddr: undefined,
      serviceToken: undefined,
      threadsPerInstance: 0,
      execution: 'auto',
      watch: false,
    });
  });

  it('reads flags and QUANTA_* variables, flags first', () => {
    const c = loadInferenceConfig({
      argv: ['--http-port', '0', '--threads-per-instance', '2', '--execution', 'inline'],
      env: {
        QUANTA_INFERENCE_PORT: '18001',
        QUANTA_INFERENCE_HTTP_PORT: '18000',
        QUANTA_REGISTRY_ADDR: 'registry:9001',
        QUANTA_MONITORING_ADDR: 'monitoring:9003',
        QUANTA_INFERENCE_SERVICE_TOKEN: 'tok',
        QUANTA_INFERENCE_WATCH: 'true',
        QUANTA_INFERENCE_MAX_BODY_BYTES: '1048576',
      },
    });
    expect(c).toMatchObject({
      port: 18001,
      httpPort: 0,
      threadsPerInstance: 2,
      execution: 'inline',
      registryAddr: 'registry:9001',
      monitoringAddr: 'monitoring:9003',
      serviceToken: 'tok',
      watch: true,
      maxBodyBytes: 1048576,
    });
  });

  it('metrics: a port (0 picks one), off by --no-metrics or QUANTA_INFERENCE_METRICS=false, public on loopback', () => {
    expect(loadInferenceConfig({ argv: ['--metrics-port', '0'], env: {} }).metricsPort).toBe(0);
    expect(loadInferenceConfig({ argv: [], env: { QUANTA_INFERENCE_METRICS_PORT: '9102' } }).metricsPort).toBe(9102);
    expect(loadInferenceConfig({ argv: ['--no-metrics'], env: {} }).metrics).toBe(false);
    expect(loadInferenceConfig({ argv: [], env: { QUANTA_INFERENCE_METRICS: 'false' } }).metrics).toBe(false);
    expect(loadInferenceConfig({ argv: ['--metrics-public'], env: {} }).metricsPublic).toBe(true);
    expect(() => loadInferenceConfig({ argv: ['--metrics-port', '-1'], env: {} })).toThrow(
      /--metrics-port: "-1" is not a port number/,
    );
    expect(() => loadInferenceConfig({ argv: ['--metrics-public', '--http-host', '0.0.0.0'], env: {} })).toThrow(
      /QUANTA_INFERENCE_METRICS_PUBLIC needs the metrics listener on a loopback address .* not 0\.0\.0\.0/,
    );
    expect(() =>
      loadInferenceConfig({ argv: ['--metrics-public'], env: { QUANTA_INFERENCE_METRICS_HOST: '0.0.0.0' } }),
    ).toThrow(/not 0\.0\.0\.0/);
    // Metrics on loopback while REST faces the network (a scraper beside the process).
    expect(
      loadInferenceConfig({
        argv: ['--metrics-public', '--metrics-host', '127.0.0.1', '--http-host', '0.0.0.0'],
        env: {},
      }),
    ).toMatchObject({
      metricsHost: '127.0.0.1',
      metricsPublic: true,
    });
    // Off, the public setting has nothing to expose.
    expect(
      loadInferenceConfig({ argv: ['--no-metrics', '--metrics-public', '--http-host', '0.0.0.0'], env: {} }).metrics,
    ).toBe(false);
  });

  it('refuses bad values, naming each', () => {
    let error: unknown;
    try {
      loadInferenceConfig({
        argv: ['--http-port', 'eighty'],
        env: { QUANTA_INFERENCE_THREADS_PER_INSTANCE: '-1', QUANTA_INFERENCE_EXECUTION: 'gpu' },
      });
    } catch (e: unknown) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    expect(problems).toMatch(/http-port/);
    expect(problems).toMatch(/THREADS_PER_INSTANCE|threads-per-instance/);
    expect(problems).toMatch(/(EXECUTION|execution).*is not one of auto, worker, inline/);
    expect(() => loadInferenceConfig({ argv: [], env: { QUANTA_INFERENCE_TLS_CERT: 'cert.pem' } })).toThrow(
      /--tls-cert and --tls-key go together/,
    );
  });
});
