import { ConfigError } from '@quanta/service-kit';
import { describe, expect, it } from 'vitest';
import { loadCryptoConfig } from './config.js';

describe('crypto config', () => {
  it('has laptop defaults: .quanta, 127.0.0.1:9002, embedded store, 2 MiB unary payloads', () => {
    expect(loadCryptoConfig({ argv: [], env: {} })).toMatchObject({
      home: '.quanta',
      host: '127.0.0.1',
      port: 9002,
      databaseUrl: undefined,
      maxPayloadBytes: 2 * 1024 * 1024,
      maxMessageBytes: 64 * 1024 * 1024,
    });
  });

  it('reads the longest token lifetime and the signing-key rotation period', () => {
    expect(loadCryptoConfig({ argv: [], env: {} })).toMatchObject({
      maxTokenTtl: 365 * 24 * 3600_000,
      signingKeyRotationPeriod: undefined,
    });
    const env = { QUANTA_CRYPTO_MAX_TOKEN_TTL: '12h', QUANTA_CRYPTO_SIGNING_KEY_ROTATION_PERIOD: '30d' };
    expect(loadCryptoConfig({ argv: [], env })).toMatchObject({
      maxTokenTtl: 12 * 3600_000,
      signingKeyRotationPeriod: 30 * 24 * 3600_000,
    });
    expect(() => loadCryptoConfig({ argv: ['--signing-key-rotation-period', 'monthly'], env: {} })).toThrow(
      ConfigError,
    );
  });

  it('reads QUANTA_* variables, and flags win over them', () => {
    const env = { QUANTA_HOME: '/srv/quanta', QUANTA_CRYPTO_PORT: '7000', QUANTA_DATABASE_URL: 'postgres://db/quanta' };
    expect(loadCryptoConfig({ argv: ['--port', '7001'], env })).toMatchObject({
      home: '/srv/quanta',
      port: 7001,
      databaseUrl: 'postgres://db/quanta',
    });
  });

  it('takes TLS files from QUANTA_CRYPTO_TLS_* like the other services, and still from QUANTA_TLS_*', () => {
    const old = { QUANTA_TLS_CERT: '/old.crt', QUANTA_TLS_KEY: '/old.key', QUANTA_TLS_CA: '/old-ca.crt' };
    expect(loadCryptoConfig({ argv: [], env: old })).toMatchObject({
      tlsCert: '/old.crt',
      tlsKey: '/old.key',
      tlsCa: '/old-ca.crt',
    });
    const named = {
      ...old,
      QUANTA_CRYPTO_TLS_CERT: '/s.crt',
      QUANTA_CRYPTO_TLS_KEY: '/s.key',
      QUANTA_CRYPTO_TLS_CA: '/ca.crt',
    };
    expect(loadCryptoConfig({ argv: [], env: named })).toMatchObject({
      tlsCert: '/s.crt',
      tlsKey: '/s.key',
      tlsCa: '/ca.crt',
    });
    expect(loadCryptoConfig({ argv: ['--tls-cert', '/flag.crt'], env: named }).tlsCert).toBe('/flag.crt');
  });

  it('reports every bad setting at once', () => {
    let error: unknown;
    try {
      loadCryptoConfig({ argv: [], env: { QUANTA_CRYPTO_PORT: 'ninety', QUANTA_CRYPTO_MAX_PAYLOAD_BYTES: '10' } });
    } catch (e: unknown) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    expect(problems).toMatch(/QUANTA_CRYPTO_PORT/);
    expect(problems).toMatch(/QUANTA_CRYPTO_MAX_PAYLOAD_BYTES/);
  });
});
