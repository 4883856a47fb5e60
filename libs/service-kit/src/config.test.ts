import { describe, expect, expectTypeOf, it } from 'vitest';
import { ConfigError, HelpRequested, fields, formatDuration, loadConfig, parseDuration, renderHelp } from './config.js';
import { checkServiceConfig, serviceConfigFields, serviceOptionsFromConfig } from './service-config.js';

const schema = {
  ...serviceConfigFields({ envPrefix: 'QUANTA_CRYPTO', port: 9002 }),
  logLevel: fields.enum({
    env: 'QUANTA_LOG_LEVEL',
    values: ['debug', 'info', 'warn'],
    default: 'info',
    doc: 'log level',
  }),
  home: fields.string({ env: 'QUANTA_HOME', default: '.quanta', doc: 'data folder' }),
  databaseUrl: fields.string({ env: 'QUANTA_DATABASE_URL', doc: 'postgres://… (embedded database when unset)' }),
  peers: fields.list({ env: 'QUANTA_CRYPTO_PEERS', default: [], doc: 'peer addresses' }),
  batch: fields.int({ env: 'QUANTA_CRYPTO_BATCH', default: 100, min: 1, max: 1000, doc: 'batch size' }),
};
const load = (argv: string[] = [], env: NodeJS.ProcessEnv = {}) =>
  loadConfig(schema, { argv, env, check: checkServiceConfig });

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (error: unknown) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('gives laptop defaults when nothing is set', () => {
    const config = load();
    expect(config).toEqual({
      host: '127.0.0.1',
      port: 9002,
      tlsCert: undefined,
      tlsKey: undefined,
      tlsCa: undefined,
      tlsRequireClientCert: false,
      maxReceiveMessageBytes: 4 * 1024 * 1024,
      shutdownGrace: 10_000,
      flowControlWindow: 1 << 20,
      logLevel: 'info',
      home: '.quanta',
      databaseUrl: undefined,
      peers: [],
      batch: 100,
    });
    expectTypeOf(config.port).toEqualTypeOf<number>();
    expectTypeOf(config.databaseUrl).toEqualTypeOf<string | undefined>();
    expectTypeOf(config.logLevel).toEqualTypeOf<'debug' | 'info' | 'warn'>();
    expectTypeOf(config.peers).toEqualTypeOf<readonly string[]>();
  });

  it('reads QUANTA_* variables and lets flags win over them', () => {
    const env = {
      QUANTA_CRYPTO_PORT: '7000',
      QUANTA_LOG_LEVEL: 'debug',
      QUANTA_CRYPTO_PEERS: ' a:1 , b:2 ,',
      QUANTA_CRYPTO_SHUTDOWN_GRACE: '1m30s',
    };
    const config = load(['--port', '7001', '--home=/var/quanta', '--batch', '5'], env);
    expect(config.port).toBe(7001);
    expect(config.logLevel).toBe('debug');
    expect(config.peers).toEqual(['a:1', 'b:2']);
    expect(config.shutdownGrace).toBe(90_000);
    expect(config.home).toBe('/var/quanta');
    expect(config.batch).toBe(5);
  });

  it('reads booleans as bare flags, --no- flags, and words', () => {
    const withCa = ['--tls-cert', 'c.pem', '--tls-key', 'k.pem', '--tls-ca', 'ca.pem'];
    expect(load([...withCa, '--tls-require-client-cert']).tlsRequireClientCert).toBe(true);
    expect(load([...withCa, '--tls-require-client-cert=false']).tlsRequireClientCert).toBe(false);
    expect(
      load([...withCa, '--no-tls-require-client-cert'], { QUANTA_CRYPTO_TLS_REQUIRE_CLIENT_CERT: 'yes' })
        .tlsRequireClientCert,
    ).toBe(false);
    expect(load(withCa, { QUANTA_CRYPTO_TLS_REQUIRE_CLIENT_CERT: '1' }).tlsRequireClientCert).toBe(true);
  });

  it('treats an empty variable as unset', () => {
    expect(load([], { QUANTA_CRYPTO_PORT: '' }).port).toBe(9002);
  });

  it('lists every problem at once, each naming where the value came from', () => {
    const problems = problemsOf(() =>
      load(
        [
          '--batch',
          '0',
          '--log-level',
          'loud',
          '--shutdown-grace',
          'soon',
          '--bogus',
          'x',
          'stray',
          '--max-receive-message-bytes=1.5',
        ],
        {
          QUANTA_CRYPTO_PORT: 'abc',
          QUANTA_CRYPTO_TLS_REQUIRE_CLIENT_CERT: 'maybe',
        },
      ),
    );
    expect(problems).toEqual([
      'unknown flag --bogus',
      'unexpected argument "stray"',
      'QUANTA_CRYPTO_PORT: "abc" is not a port number (0-65535)',
      'QUANTA_CRYPTO_TLS_REQUIRE_CLIENT_CERT: "maybe" is not a boolean (true/false)',
      '--max-receive-message-bytes: "1.5" is not an integer',
      '--shutdown-grace: "soon" is not a duration (like 500ms, 30s, 5m, 1h)',
      '--log-level: "loud" is not one of debug, info, warn',
      '--batch: "0" is out of range (1-1000)',
    ]);
  });

  it('reports out-of-range ports, missing values and empty strings', () => {
    expect(problemsOf(() => load(['--port', '70000']))).toEqual(['--port: "70000" is not a port number (0-65535)']);
    expect(problemsOf(() => load(['--port']))).toEqual(['--port needs a value <port>']);
    expect(problemsOf(() => load(['--home=']))).toEqual(['--home: "" is empty']);
  });

  it('reports required fields that are missing', () => {
    const required = { token: fields.string({ env: 'QUANTA_TOKEN', required: true, doc: 'access token' }) };
    expect(problemsOf(() => loadConfig(required, { argv: [], env: {} }))).toEqual([
      'QUANTA_TOKEN or --token is required: access token',
    ]);
    expect(loadConfig(required, { argv: [], env: { QUANTA_TOKEN: 't' } }).token).toBe('t');
  });

  it('checks the TLS fields together', () => {
    expect(problemsOf(() => load(['--tls-cert', 'c.pem']))).toEqual([
      '--tls-cert and --tls-key go together: give both or neither',
    ]);
    expect(problemsOf(() => load(['--tls-cert', 'c.pem', '--tls-key', 'k.pem', '--tls-require-client-cert']))).toEqual([
      '--tls-require-client-cert needs --tls-ca, the CA that client certificates are checked against',
    ]);
  });

  it('maps the shared fields to createService options', () => {
    expect(serviceOptionsFromConfig(load())).toEqual({
      host: '127.0.0.1',
      port: 9002,
      maxReceiveMessageLength: 4194304,
      shutdownGraceMs: 10_000,
      flowControlWindow: 1 << 20,
    });
    const tls = serviceOptionsFromConfig(
      load(['--tls-cert', 'c.pem', '--tls-key', 'k.pem', '--tls-ca', 'ca.pem', '--tls-require-client-cert']),
    );
    expect(tls.tls).toEqual({ certFile: 'c.pem', keyFile: 'k.pem', caFile: 'ca.pem', requireClientCert: true });
  });

  it('answers --help with the rendered schema', () => {
    let help = '';
    try {
      loadConfig(schema, { argv: ['--port', '1', '--help'], env: {}, program: 'quanta-crypto' });
    } catch (error: unknown) {
      if (error instanceof HelpRequested) help = error.help;
    }
    expect(help).toBe(renderHelp(schema, { program: 'quanta-crypto' }));
    expect(help).toMatch(/^Usage: quanta-crypto \[flags\]/);
    expect(help).toMatch(/--port <port> +QUANTA_CRYPTO_PORT +gRPC port \(0 picks a free one\) \(default 9002\)/);
    expect(help).toMatch(/--shutdown-grace <duration> +QUANTA_CRYPTO_SHUTDOWN_GRACE +.* \(default 10s\)/);
    expect(help).toMatch(/--log-level <debug\|info\|warn> +QUANTA_LOG_LEVEL +log level \(default info\)/);
    expect(help).toMatch(/--tls-require-client-cert +QUANTA_CRYPTO_TLS_REQUIRE_CLIENT_CERT/);
  });
});

describe('durations', () => {
  it('parses Go-style durations to milliseconds', () => {
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('7d')).toBe(604_800_000);
    expect(parseDuration('0')).toBe(0);
    expect(parseDuration('30')).toBeUndefined();
    expect(parseDuration('-1s')).toBeUndefined();
    expect(parseDuration('1 h')).toBeUndefined();
  });

  it('formats what it parses', () => {
    for (const text of ['250ms', '30s', '90m', '2h', '7d'])
      expect(formatDuration(parseDuration(text) ?? -1)).toBe(text);
  });
});
