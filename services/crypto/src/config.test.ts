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

  it('reads QUANTA_* variables, and flags win over them', () => {
    const env = { QUANTA_HOME: '/srv/quanta', QUANTA_CRYPTO_PORT: '7000', QUANTA_DATABASE_URL: 'postgres://db/quanta' };
    expect(loadCryptoConfig({ argv: ['--port', '7001'], env })).toMatchObject({ home: '/srv/quanta', port: 7001, databaseUrl: 'postgres://db/quanta' });
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
