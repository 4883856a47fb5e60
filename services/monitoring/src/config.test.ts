import { ConfigError } from '@quanta/service-kit';
import { describe, expect, it } from 'vitest';
import { healthTargets, loadMonitoringConfig } from './config.js';

describe('monitoring config', () => {
  it('has working defaults and reads flags and QUANTA_* variables', () => {
    const c = loadMonitoringConfig({ argv: [], env: {} });
    expect(c).toMatchObject({
      port: 9003,
      httpPort: 9400,
      horizon: 3_600_000,
      healthInterval: 5000,
      dashboardPublic: false,
    });
    const d = loadMonitoringConfig({
      argv: ['--http-port', '0', '--horizon', '10m'],
      env: { QUANTA_MONITORING_TARGETS: 'crypto=127.0.0.1:9002, registry=10.0.0.2:9001' },
    });
    expect(d.httpPort).toBe(0);
    expect(d.horizon).toBe(600_000);
    // Alert rules: the embedded database under QUANTA_HOME, or PostgreSQL from QUANTA_DATABASE_URL.
    expect([c.home, c.databaseUrl]).toEqual(['.quanta', undefined]);
    const e = loadMonitoringConfig({
      argv: [],
      env: { QUANTA_HOME: '/srv/quanta', QUANTA_DATABASE_URL: 'postgres://db/quanta' },
    });
    expect([e.home, e.databaseUrl]).toEqual(['/srv/quanta', 'postgres://db/quanta']);
    expect(healthTargets(d)).toEqual([
      { name: 'crypto', address: '127.0.0.1:9002' },
      { name: 'registry', address: '10.0.0.2:9001' },
    ]);
  });

  it("takes the health targets from the other services' addresses by default", () => {
    const c = loadMonitoringConfig({ argv: [], env: {} });
    expect(healthTargets(c, { QUANTA_INFERENCE_ADDR: '127.0.0.1:18001' })).toEqual([
      { name: 'crypto', address: '127.0.0.1:9002' },
      { name: 'inference', address: '127.0.0.1:18001' },
      { name: 'registry', address: '127.0.0.1:9001' },
    ]);
  });

  it('refuses a public dashboard off loopback, a bad target and a fractional horizon, all at once', () => {
    let error: unknown;
    try {
      loadMonitoringConfig({
        argv: ['--http-host', '0.0.0.0', '--horizon', '1500ms'],
        env: { QUANTA_MONITORING_DASHBOARD_PUBLIC: '1', QUANTA_MONITORING_TARGETS: 'crypto' },
      });
    } catch (e: unknown) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    expect(problems).toMatch(/DASHBOARD_PUBLIC needs a loopback --http-host/);
    expect(problems).toMatch(/"crypto" is not name=host:port/);
    expect(problems).toMatch(/--horizon must be a whole number of seconds/);
  });
});
