// Test-only helpers: two tiny JSON-over-gRPC services, A calling B, started on
// 127.0.0.1:0 with the telemetry interceptors, so the tests exercise real grpc-js servers and clients.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { createClientInterceptor } from '../client-interceptor.js';
import { currentTraceId } from '../logger.js';
import { createServerInterceptor, type InterceptorOptions } from '../server-interceptor.js';

export interface KeyRequest {
  readonly key: string;
}
export interface LookupReply {
  readonly key: string;
  readonly value: string;
  /** currentTraceId() as seen inside B's handler. */
  readonly traceIdInHandler: string | undefined;
}

export function method<Req, Res>(
  path: string,
  requestStream: boolean,
  responseStream: boolean,
): grpc.MethodDefinition<Req, Res> {
  return {
    path,
    requestStream,
    responseStream,
    requestSerialize: (value: Req) => Buffer.from(JSON.stringify(value)),
    requestDeserialize: (bytes: Buffer) => JSON.parse(bytes.toString('utf8')) as Req,
    responseSerialize: (value: Res) => Buffer.from(JSON.stringify(value)),
    responseDeserialize: (bytes: Buffer) => JSON.parse(bytes.toString('utf8')) as Res,
  };
}

export const serviceB = {
  lookup: method<KeyRequest, LookupReply>('/test.v1.B/Lookup', false, false),
} satisfies grpc.ServiceDefinition;

export const serviceA = {
  resolve: method<KeyRequest, LookupReply>('/test.v1.A/Resolve', false, false),
  collect: method<KeyRequest, { values: string[] }>('/test.v1.A/Collect', true, false),
  expand: method<KeyRequest, LookupReply>('/test.v1.A/Expand', false, true),
  chat: method<KeyRequest, LookupReply>('/test.v1.A/Chat', true, true),
} satisfies grpc.ServiceDefinition;

const ClientA = grpc.makeGenericClientConstructor(serviceA, 'A');
const ClientB = grpc.makeGenericClientConstructor(serviceB, 'B');

export interface TestClient {
  unary(name: string, request: KeyRequest): Promise<unknown>;
  clientStream(name: string, requests: KeyRequest[]): Promise<unknown>;
  serverStream(name: string, request: KeyRequest): Promise<unknown[]>;
  bidi(name: string, requests: KeyRequest[]): Promise<unknown[]>;
  close(): void;
}

type Callback = (error: grpc.ServiceError | null, value?: unknown) => void;
interface LooseClient {
  [method: string]: unknown;
}

/** A promise-shaped client over the generic constructor, with the tracing client interceptor. */
export function connect(
  ctor: grpc.ServiceClientConstructor,
  port: number,
  options: InterceptorOptions = {},
): TestClient {
  const client = new ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    interceptors: [createClientInterceptor(options)],
  });
  const loose = client as unknown as LooseClient;
  const fn = (name: string): ((...args: unknown[]) => unknown) => {
    const f = loose[name];
    if (typeof f !== 'function') throw new Error(`no method ${name}`);
    return (...args: unknown[]) => (f as (...a: unknown[]) => unknown).apply(client, args);
  };
  const readAll = (stream: grpc.ClientReadableStream<unknown>): Promise<unknown[]> =>
    new Promise((resolve, reject) => {
      const items: unknown[] = [];
      stream.on('data', (item: unknown) => items.push(item));
      stream.on('error', reject);
      stream.on('end', () => resolve(items));
    });
  return {
    unary: (name, request) =>
      new Promise((resolve, reject) => {
        const cb: Callback = (error, value) => (error ? reject(error) : resolve(value));
        fn(name)(request, cb);
      }),
    clientStream: (name, requests) =>
      new Promise((resolve, reject) => {
        const cb: Callback = (error, value) => (error ? reject(error) : resolve(value));
        const stream = fn(name)(cb) as grpc.ClientWritableStream<KeyRequest>;
        for (const request of requests) stream.write(request);
        stream.end();
      }),
    serverStream: (name, request) => readAll(fn(name)(request) as grpc.ClientReadableStream<unknown>),
    bidi: (name, requests) => {
      const stream = fn(name)() as grpc.ClientDuplexStream<KeyRequest, unknown>;
      const all = readAll(stream);
      for (const request of requests) stream.write(request);
      stream.end();
      return all;
    },
    close: () => client.close(),
  };
}

export function connectA(port: number, options?: InterceptorOptions): TestClient {
  return connect(ClientA, port, options);
}

export function connectB(port: number, options?: InterceptorOptions): TestClient {
  return connect(ClientB, port, options);
}

export interface Started {
  readonly port: number;
  stop(): Promise<void>;
}

async function start(
  definition: grpc.ServiceDefinition,
  implementation: grpc.UntypedServiceImplementation,
  options: InterceptorOptions,
): Promise<Started> {
  const server = new grpc.Server({ interceptors: [createServerInterceptor(options)] });
  server.addService(definition, implementation);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    );
  });
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
      }),
  };
}

/** B: looks a key up; `missing` is NOT_FOUND. Logs one line per lookup with `logger`. */
export function startB(logger: Logger, options: InterceptorOptions = {}): Promise<Started> {
  const lookup: grpc.handleUnaryCall<KeyRequest, LookupReply> = (call, callback) => {
    const { key } = call.request;
    logger.info({ key }, 'lookup');
    if (key === 'missing') {
      callback({ code: grpc.status.NOT_FOUND, details: `key "${key}" not found` });
      return;
    }
    callback(null, { key, value: key.toUpperCase(), traceIdInHandler: currentTraceId() });
  };
  return start(serviceB, { lookup }, options);
}

function asServiceError(error: unknown): Partial<grpc.StatusObject> {
  const e = error as Partial<grpc.ServiceError>;
  return { code: e.code ?? grpc.status.INTERNAL, details: e.details ?? String(error) };
}

/**
 * A: every method calls B.Lookup from inside its handler (after an await, from stream events), which is
 * what makes B's spans children of A's server span only when the handler runs in that span's context.
 */
export async function startA(
  portB: number,
  options: InterceptorOptions = {},
): Promise<Started & { clientB: TestClient }> {
  const clientB = connect(ClientB, portB, options);
  const lookup = (key: string): Promise<LookupReply> => clientB.unary('lookup', { key }) as Promise<LookupReply>;

  const resolve: grpc.handleUnaryCall<KeyRequest, LookupReply> = (call, callback) => {
    // An await before the outgoing call: the context must survive the hop.
    void Promise.resolve()
      .then(() => lookup(call.request.key))
      .then(
        (reply) => callback(null, reply),
        (error: unknown) => callback(asServiceError(error)),
      );
  };
  const collect: grpc.handleClientStreamingCall<KeyRequest, { values: string[] }> = (call, callback) => {
    const pending: Promise<LookupReply>[] = [];
    call.on('data', (request: KeyRequest) => pending.push(lookup(request.key)));
    call.on('end', () => {
      Promise.all(pending).then(
        (replies) => callback(null, { values: replies.map((r) => r.value) }),
        (error: unknown) => callback(asServiceError(error)),
      );
    });
  };
  const expand: grpc.handleServerStreamingCall<KeyRequest, LookupReply> = (call) => {
    void (async () => {
      try {
        for (const suffix of ['1', '2']) call.write(await lookup(`${call.request.key}${suffix}`));
        call.end();
      } catch (error) {
        call.destroy(error as Error);
      }
    })();
  };
  const chat: grpc.handleBidiStreamingCall<KeyRequest, LookupReply> = (call) => {
    void (async () => {
      try {
        // destroyOnReturn: false, or the finished loop destroys the duplex before the status is sent.
        for await (const request of call.iterator({ destroyOnReturn: false }) as AsyncIterable<KeyRequest>) {
          call.write(await lookup(request.key));
        }
        call.end();
      } catch (error) {
        call.destroy(error as Error);
      }
    })();
  };
  const started = await start(serviceA, { resolve, collect, expand, chat }, options);
  return {
    ...started,
    clientB,
    stop: async () => {
      clientB.close();
      await started.stop();
    },
  };
}
