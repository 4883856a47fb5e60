import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { health } from './index.js';
import { unaryCaller } from './unary.js';

describe('unaryCaller', () => {
  let server: grpc.Server;
  let client: health.HealthClient;
  const seen: string[] = [];

  beforeAll(async () => {
    server = new grpc.Server();
    server.addService(health.HealthService, {
      check: (
        call: grpc.ServerUnaryCall<health.HealthCheckRequest, health.HealthCheckResponse>,
        callback: grpc.sendUnaryData<health.HealthCheckResponse>,
      ) => {
        seen.push(call.metadata.get('x-probe')[0]?.toString() ?? '');
        if (call.request.service === 'slow')
          return void setTimeout(
            () => callback(null, { status: health.HealthCheckResponse_ServingStatus.SERVING }),
            2000,
          );
        if (call.request.service !== '')
          return callback({ code: grpc.status.NOT_FOUND, details: `unknown service "${call.request.service}"` });
        callback(null, { status: health.HealthCheckResponse_ServingStatus.SERVING });
      },
      watch: (call: grpc.ServerWritableStream<health.HealthCheckRequest, health.HealthCheckResponse>) => call.end(),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, p) =>
        error ? reject(error) : resolve(p),
      ),
    );
    client = new health.HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  afterAll(() => {
    client.close();
    server.forceShutdown();
  });

  it('calls a unary method by name, with metadata, and decodes the reply', async () => {
    const call = unaryCaller(client, health.HealthService);
    const metadata = new grpc.Metadata();
    metadata.set('x-probe', 'p1');
    await expect(call('check', { service: '' }, { metadata })).resolves.toEqual({
      status: health.HealthCheckResponse_ServingStatus.SERVING,
    });
    expect(seen).toContain('p1');
  });

  it('rejects with the status the server sent', async () => {
    const call = unaryCaller(client, health.HealthService);
    await expect(call('check', { service: 'nope' })).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
      details: 'unknown service "nope"',
    });
  });

  it('applies the default deadline to calls that give none', async () => {
    const call = unaryCaller(client, health.HealthService, { deadlineMs: 200 });
    await expect(call('check', { service: 'slow' })).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
  });
});
