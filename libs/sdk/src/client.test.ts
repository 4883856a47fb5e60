import * as grpc from '@grpc/grpc-js';
import { health, inference, registry } from '@quanta/contracts';
import { afterEach, describe, expect, it } from 'vitest';
import { createQuantaClient, type QuantaClient, type QuantaClientOptions, type RetryEvent } from './client.js';
import { QuantaClientError } from './errors.js';
import { inferRequest, outputTensor, tensorValues } from './tensors.js';

type Handler = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => void;

/** What the in-test server saw of each call. */
interface Seen {
  readonly method: string;
  readonly authorization: string | undefined;
  /** Milliseconds from arrival to the deadline the client sent; undefined without one. */
  readonly deadlineInMs: number | undefined;
}

/** A real grpc-js server with parts of GRPCInferenceService, RegistryService and Health. */
class TestServer {
  readonly server = new grpc.Server();
  readonly seen: Seen[] = [];
  port = 0;

  constructor(handlers: {
    getModel?: Handler;
    modelInfer?: Handler;
    modelMetadata?: Handler;
    watch?: (call: grpc.ServerWritableStream<unknown, unknown>) => void;
  }) {
    const record =
      (method: string, handler: Handler | undefined): Handler =>
      (call, callback) => {
        const deadline = call.getDeadline();
        const at = deadline instanceof Date ? deadline.getTime() : deadline;
        this.seen.push({
          method,
          authorization: call.metadata.get('authorization')[0]?.toString(),
          deadlineInMs: Number.isFinite(at) ? at - Date.now() : undefined,
        });
        if (handler === undefined) callback({ code: grpc.status.UNIMPLEMENTED, details: method });
        else handler(call, callback);
      };
    this.server.addService(inference.GRPCInferenceServiceService, {
      modelInfer: record('ModelInfer', handlers.modelInfer),
      modelMetadata: record('ModelMetadata', handlers.modelMetadata),
    });
    this.server.addService(registry.RegistryServiceService, { getModel: record('GetModel', handlers.getModel) });
    this.server.addService(health.HealthService, {
      watch: (call: grpc.ServerWritableStream<unknown, unknown>) => {
        this.seen.push({
          method: 'Watch',
          authorization: call.metadata.get('authorization')[0]?.toString(),
          deadlineInMs: undefined,
        });
        handlers.watch?.(call);
      },
    });
  }

  async listen(port = 0): Promise<string> {
    this.port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (error, p) =>
        error ? reject(error) : resolve(p),
      ),
    );
    return `127.0.0.1:${this.port}`;
  }

  calls(method: string): Seen[] {
    return this.seen.filter((s) => s.method === method);
  }
}

const fail = (code: grpc.status, details: string): Partial<grpc.StatusObject> => ({ code, details });

/** A handler that fails `times` times with `code`, then answers `reply`. */
function flaky(times: number, code: grpc.status, reply: unknown): Handler {
  let failures = 0;
  return (_call, callback) => {
    if (failures < times) {
      failures++;
      callback(fail(code, `failure ${failures} of ${times}`));
    } else callback(null, reply);
  };
}

const servers: TestServer[] = [];
const clients: QuantaClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) s.server.forceShutdown();
});

async function start(
  handlers: ConstructorParameters<typeof TestServer>[0],
  port = 0,
): Promise<{ server: TestServer; address: string }> {
  const server = new TestServer(handlers);
  servers.push(server);
  return { server, address: await server.listen(port) };
}

function connect(options: QuantaClientOptions): QuantaClient {
  const client = createQuantaClient(options);
  clients.push(client);
  return client;
}

const fast = { initialBackoffMs: 5, maxBackoffMs: 20 };
const model = { name: 'cifar', description: '', tags: {}, latestVersion: 3, aliases: {}, versionCount: 3 };

async function rejection(promise: Promise<unknown>): Promise<QuantaClientError> {
  try {
    await promise;
  } catch (error: unknown) {
    expect(error).toBeInstanceOf(QuantaClientError);
    return error as QuantaClientError;
  }
  throw new Error('the call succeeded');
}

describe('createQuantaClient against a real grpc-js server', () => {
  it('retries an idempotent read through 3 UNAVAILABLE answers, with the token and a deadline each time', async () => {
    const { server, address } = await start({ getModel: flaky(3, grpc.status.UNAVAILABLE, { model }) });
    const retries: RetryEvent[] = [];
    const client = connect({ address, token: 'tok-1', deadlineMs: 5000, retry: fast, onRetry: (e) => retries.push(e) });
    const reply = await client.registry.getModel({ name: 'cifar' });
    expect(reply.model).toMatchObject({ name: 'cifar', latestVersion: 3 });
    const calls = server.calls('GetModel');
    expect(calls).toHaveLength(4);
    expect(retries.map((r) => [r.attempt, r.error.code])).toEqual([
      [1, grpc.status.UNAVAILABLE],
      [2, grpc.status.UNAVAILABLE],
      [3, grpc.status.UNAVAILABLE],
    ]);
    for (const call of calls) {
      expect(call.authorization).toBe('Bearer tok-1');
      // One deadline covers every attempt: it arrives finite, at most 5 s away, shrinking.
      expect(call.deadlineInMs).toBeGreaterThan(0);
      expect(call.deadlineInMs).toBeLessThanOrEqual(5000);
    }
  });

  it('gives up after maxAttempts and says how many attempts it made', async () => {
    const { server, address } = await start({ getModel: flaky(100, grpc.status.UNAVAILABLE, { model }) });
    const client = connect({ address, retry: { ...fast, maxAttempts: 3 } });
    const error = await rejection(client.registry.getModel({ name: 'cifar' }));
    expect([error.code, error.attempts, error.method]).toEqual([
      grpc.status.UNAVAILABLE,
      3,
      '/quanta.registry.v1.RegistryService/GetModel',
    ]);
    expect(error.details).toBe('failure 3 of 100');
    expect(server.calls('GetModel')).toHaveLength(3);
  });

  it('does not retry a code the policy says never to (INVALID_ARGUMENT, NOT_FOUND)', async () => {
    for (const code of [grpc.status.INVALID_ARGUMENT, grpc.status.NOT_FOUND]) {
      const { server, address } = await start({ getModel: flaky(1, code, { model }) });
      const client = connect({ address, retry: fast });
      const error = await rejection(client.registry.getModel({ name: 'cifar' }));
      expect([error.code, error.attempts]).toEqual([code, 1]);
      expect(server.calls('GetModel')).toHaveLength(1);
    }
  });

  it('does not retry ModelInfer that reached the server, even on UNAVAILABLE', async () => {
    const { server, address } = await start({ modelInfer: flaky(1, grpc.status.UNAVAILABLE, {}) });
    const client = connect({ address, retry: fast });
    const error = await rejection(client.inference.modelInfer(inferRequest('cifar', [{ name: 'x', data: [1, 2, 3] }])));
    expect([error.code, error.attempts]).toEqual([grpc.status.UNAVAILABLE, 1]);
    expect(server.calls('ModelInfer')).toHaveLength(1);
  });

  it('retries a RESOURCE_EXHAUSTED with retry-after-ms (ModelInfer too), no sooner than the server asked', async () => {
    const arrivals: number[] = [];
    const { server, address } = await start({
      modelInfer: (_call, callback) => {
        arrivals.push(performance.now());
        if (arrivals.length > 1)
          return callback(null, inference.ModelInferResponse.fromPartial({ modelName: 'cifar' }));
        const trailers = new grpc.Metadata();
        trailers.set('retry-after-ms', '300');
        callback({
          code: grpc.status.RESOURCE_EXHAUSTED,
          details: 'caller "app" is over its limit',
          metadata: trailers,
        });
      },
    });
    const retries: RetryEvent[] = [];
    const client = connect({ address, retry: fast, onRetry: (e) => retries.push(e) });
    const reply = await client.inference.modelInfer(inferRequest('cifar', [{ name: 'x', data: [1] }]));
    expect(reply.modelName).toBe('cifar');
    expect(server.calls('ModelInfer')).toHaveLength(2);
    expect(retries.map((r) => r.delayMs)).toEqual([300]);
    // Timers never fire early; a millisecond of slack for the clocks' rounding.
    expect(arrivals[1]! - arrivals[0]!).toBeGreaterThanOrEqual(299);
  });

  it('gives up at once when retry-after-ms would pass the deadline, and without it does not retry', async () => {
    const refuse =
      (ms: string | undefined): Handler =>
      (_call, callback) => {
        const trailers = new grpc.Metadata();
        if (ms !== undefined) trailers.set('retry-after-ms', ms);
        callback({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'over its limit', metadata: trailers });
      };
    const late = await start({ modelInfer: refuse('60000') });
    const started = performance.now();
    const error = await rejection(
      connect({ address: late.address, retry: fast, deadlineMs: 2000 }).inference.modelInfer(
        inferRequest('cifar', [{ name: 'x', data: [1] }]),
      ),
    );
    expect([error.code, error.attempts]).toEqual([grpc.status.RESOURCE_EXHAUSTED, 1]);
    expect(error.metadata.get('retry-after-ms')).toEqual(['60000']);
    expect(performance.now() - started).toBeLessThan(1500);
    expect(late.server.calls('ModelInfer')).toHaveLength(1);

    const full = await start({ modelInfer: refuse(undefined) });
    const queueFull = await rejection(
      connect({ address: full.address, retry: fast }).inference.modelInfer(
        inferRequest('cifar', [{ name: 'x', data: [1] }]),
      ),
    );
    expect([queueFull.code, queueFull.attempts]).toEqual([grpc.status.RESOURCE_EXHAUSTED, 1]);
  });

  it('retries ModelInfer that never reached a server, and it runs exactly once when the server comes up', async () => {
    // A port that nothing listens on yet: take a free one and let it go.
    const probe = new TestServer({});
    const port = Number((await probe.listen()).split(':')[1]);
    probe.server.forceShutdown();

    let serverStarted: Promise<unknown> | undefined;
    let server: TestServer | undefined;
    const retries: RetryEvent[] = [];
    const client = connect({
      address: `127.0.0.1:${port}`,
      retry: { initialBackoffMs: 20, maxBackoffMs: 100, maxAttempts: 40 },
      channelOptions: { 'grpc.initial_reconnect_backoff_ms': 20, 'grpc.max_reconnect_backoff_ms': 100 },
      onRetry: (event) => {
        retries.push(event);
        // The first failure (nothing listening) brings the server up on that port.
        serverStarted ??= start(
          {
            modelInfer: (_call, callback) =>
              callback(null, {
                modelName: 'cifar',
                modelVersion: '1',
                id: '',
                parameters: {},
                outputs: [],
                rawOutputContents: [],
              }),
          },
          port,
        ).then((s) => (server = s.server));
      },
    });
    const reply = await client.inference.modelInfer(inferRequest('cifar', [{ name: 'x', data: [1] }]));
    await serverStarted;
    expect(reply.modelName).toBe('cifar');
    expect(retries[0]?.error.details).toMatch(/No connection established/);
    expect(server?.calls('ModelInfer')).toHaveLength(1);
  });

  it('ends a call at its deadline with DEADLINE_EXCEEDED and does not retry it', async () => {
    const { server, address } = await start({ modelMetadata: () => undefined }); // never answers
    const client = connect({ address, retry: fast });
    const started = Date.now();
    const error = await rejection(client.inference.modelMetadata({ name: 'cifar' }, { deadlineMs: 300 }));
    expect(error.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(server.calls('ModelMetadata')).toHaveLength(1);
    expect(server.calls('ModelMetadata')[0]?.deadlineInMs).toBeLessThanOrEqual(300);
  });

  it('cancels a call when its AbortSignal fires', async () => {
    const { address } = await start({ modelMetadata: () => undefined });
    const client = connect({ address });
    const abort = new AbortController();
    const pending = rejection(client.inference.modelMetadata({ name: 'cifar' }, { signal: abort.signal }));
    abort.abort();
    expect((await pending).code).toBe(grpc.status.CANCELLED);
  });

  it('reads a server stream as an async iterable and cancels it when the reader stops', async () => {
    let cancelled: Promise<void> | undefined;
    const { address } = await start({
      watch: (call) => {
        cancelled = new Promise((resolve) => call.on('cancelled', () => resolve()));
        call.write({ status: health.HealthCheckResponse_ServingStatus.NOT_SERVING });
        call.write({ status: health.HealthCheckResponse_ServingStatus.SERVING });
      },
    });
    const client = connect({ address, token: () => Promise.resolve('from-fn') });
    const statuses: health.HealthCheckResponse_ServingStatus[] = [];
    for await (const reply of client.health.watch({ service: '' })) {
      statuses.push(reply.status);
      if (statuses.length === 2) break;
    }
    expect(statuses).toEqual([
      health.HealthCheckResponse_ServingStatus.NOT_SERVING,
      health.HealthCheckResponse_ServingStatus.SERVING,
    ]);
    await cancelled; // the server saw the cancellation
  });

  it('sends tensors built from plain arrays (raw and typed) and reads the outputs back', async () => {
    // The server doubles input "x" reading the wire by hand (not through @quanta/tensor).
    const { address } = await start({
      modelInfer: (call, callback) => {
        const request = call.request as inference.ModelInferRequest;
        const input = request.inputs[0];
        const raw = request.rawInputContents[0];
        const values =
          raw !== undefined
            ? Array.from(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)))
            : (input?.contents?.fp32Contents ?? []);
        const doubled = Buffer.from(new Float32Array(values.map((v) => v * 2)).buffer);
        callback(null, {
          modelName: request.modelName,
          modelVersion: '1',
          id: request.id,
          parameters: {},
          outputs: [{ name: 'y', datatype: 'FP32', shape: input?.shape ?? [], parameters: {} }],
          rawOutputContents: [doubled],
        });
      },
    });
    const client = connect({ address });
    for (const raw of [true, false]) {
      const reply = await client.inference.modelInfer(
        inferRequest('cifar', [{ name: 'x', data: [0.5, -1, 3], shape: [1, 3] }], { raw, id: `r-${raw}` }),
      );
      const y = outputTensor(reply, 'y');
      expect([y.datatype, y.shape]).toEqual(['FP32', [1, 3]]);
      expect(tensorValues(y)).toEqual([1, -2, 6]);
      expect(reply.id).toBe(`r-${raw}`);
    }
  });

  it('fails calls after close()', async () => {
    const { address } = await start({ getModel: flaky(0, grpc.status.OK, { model }) });
    const client = connect({ address });
    expect((await client.registry.getModel({ name: 'cifar' })).model?.name).toBe('cifar');
    client.close();
    const error = await rejection(client.registry.getModel({ name: 'cifar' }));
    expect(error.details).toMatch(/closed/);
  });
});
