// Test support: start an EchoService on 127.0.0.1:0 and call it.
import * as grpc from '@grpc/grpc-js';
import { createLogger } from '@quanta/telemetry';
import type { Authenticator, Principal } from '../auth.js';
import { unauthenticated } from '../errors.js';
import type { QuantaService, ServiceOptions } from '../service.js';
import { createService } from '../service.js';
import type { EchoReply, EchoRequest } from './echo.js';
import { EchoClient, echoPackage, echoService } from './echo.js';

const quietLogger = createLogger('echo-test', { level: 'warn' });

/** Test tokens are `tenant/subject/scope,scope`: enough to exercise the hook without JWTs (libs/auth). */
export const testAuthenticator: Authenticator = (metadata) => {
  const header = metadata.get('authorization')[0];
  if (header === undefined) return Promise.reject(unauthenticated('missing bearer token'));
  const match = /^Bearer ([^/]+)\/([^/]+)\/(.*)$/.exec(String(header));
  if (match === null) return Promise.reject(unauthenticated('malformed bearer token'));
  const principal: Principal = {
    tenant: match[1] ?? '',
    subject: match[2] ?? '',
    scopes: (match[3] ?? '').split(',').filter(Boolean),
  };
  return Promise.resolve(principal);
};

export { bearer } from './grpc.js';

/** The streaming methods of the proto-loader EchoService client, typed. */
export interface EchoStub {
  Expand(
    request: Partial<EchoRequest>,
    metadata?: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<EchoReply>;
  Collect(
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<EchoReply>,
  ): grpc.ClientWritableStream<Partial<EchoRequest>>;
  Chat(metadata?: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<Partial<EchoRequest>, EchoReply>;
}

export interface Running {
  readonly service: QuantaService;
  readonly port: number;
  readonly address: string;
  readonly client: grpc.Client;
  readonly stub: EchoStub;
  close(): Promise<void>;
}

export async function startEcho(
  implementation: grpc.UntypedServiceImplementation,
  options: Partial<ServiceOptions> = {},
): Promise<Running> {
  const service = createService({
    name: 'echo',
    port: 0,
    authenticator: testAuthenticator,
    reflectionPackages: [echoPackage],
    logger: quietLogger,
    ...options,
  });
  service.addService(echoService, implementation);
  const { port, address } = await service.start();
  const client = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return {
    service,
    port,
    address,
    client,
    stub: client as unknown as EchoStub,
    async close() {
      client.close();
      await service.stop({ graceMs: 1000 });
    },
  };
}

type UnaryMethod = (
  request: unknown,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response?: unknown) => void,
) => grpc.ClientUnaryCall;

/** A unary call as a promise; `onCall` receives the call (to cancel it). */
export function callUnary<Res>(
  client: grpc.Client,
  method: string,
  request: object,
  metadata: grpc.Metadata = new grpc.Metadata(),
  options: grpc.CallOptions = {},
  onCall?: (call: grpc.ClientUnaryCall) => void,
): Promise<Res> {
  const fn = (client as unknown as Record<string, UnaryMethod>)[method];
  if (fn === undefined) throw new Error(`no method ${method}`);
  return new Promise<Res>((resolve, reject) => {
    const call = fn.call(client, request, metadata, options, (error, response) => {
      if (error !== null) reject(error);
      else resolve(response as Res);
    });
    onCall?.(call);
  });
}

/** The gRPC error a promise rejects with (fails the test if it resolves). */
export async function grpcError(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (error: unknown) {
    if (error instanceof Error && 'code' in error) return error as grpc.ServiceError;
    throw error;
  }
  throw new Error('expected the call to fail, it succeeded');
}
