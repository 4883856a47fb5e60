import * as grpc from '@grpc/grpc-js';
import { crypto, health, inference, monitoring, registry } from '@quanta/contracts';
import { QuantaClientError } from './errors.js';
import { backoffMs, DEFAULT_RETRY, isRetryable, retryAfterMs, type RetryOptions } from './retry.js';

/** PEM text or bytes. */
export type Pem = string | Uint8Array;

export interface TlsConfig {
  /** CA the servers' certificates must chain to; the system roots when omitted. */
  readonly ca?: Pem;
  /** Client certificate and its key, for mTLS. */
  readonly cert?: Pem;
  readonly key?: Pem;
  /** Expected server name when it differs from the address's host. */
  readonly serverName?: string;
}

/** A bearer token, or a function asked before every attempt (so a refreshed token is picked up). */
export type TokenSource = string | (() => string | Promise<string>);

export type ServiceName = 'inference' | 'registry' | 'crypto' | 'monitoring';

export interface RetryEvent {
  readonly method: string;
  /** The attempt that failed (1 for the first). */
  readonly attempt: number;
  readonly error: QuantaClientError;
  /** How long the client waits before the next attempt. */
  readonly delayMs: number;
}

export interface QuantaClientOptions {
  /** `host:port` of Quanta (a gateway, or a service); `health` calls go here. */
  readonly address: string;
  /**
   * Per-service addresses where the services listen apart (npm start: registry 9001, crypto 9002,
   * monitoring 9003, inference 8001).
   */
  readonly addresses?: Partial<Record<ServiceName, string>>;
  readonly token?: TokenSource;
  /** `true`: TLS with the system roots; an object: TLS with these PEMs; omitted or false: plaintext. */
  readonly tls?: TlsConfig | boolean;
  /**
   * Deadline of unary and client-streaming calls, covering every retry; default 30 s. Server streams
   * get none unless asked.
   */
  readonly deadlineMs?: number;
  /** Backoff settings, or `false` to never retry. What is retried is RETRY_POLICY's choice, not the caller's. */
  readonly retry?: RetryOptions | false;
  /** Largest response accepted, in bytes; default 64 MiB (model outputs and downloads are large). */
  readonly maxReceiveMessageBytes?: number;
  readonly channelOptions?: grpc.ChannelOptions;
  /** Told before every retry (logging, metrics). */
  readonly onRetry?: (event: RetryEvent) => void;
}

export interface CallOptions {
  /** This call's deadline in ms from now (0: none), instead of the client's default. */
  readonly deadlineMs?: number;
  /** Cancels the call (and any wait between attempts). */
  readonly signal?: AbortSignal;
  /** Extra request metadata (e.g. `traceparent`). */
  readonly metadata?: Readonly<Record<string, string>>;
  readonly retry?: RetryOptions | false;
}

/** The shape of one method of a generated service definition. */
interface MethodShape {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  readonly requestSerialize: (value: never) => Buffer;
  readonly requestDeserialize: (bytes: Buffer) => unknown;
  readonly responseDeserialize: (bytes: Buffer) => unknown;
}

type DefinitionShape = { readonly [method: string]: MethodShape };
type Req<M extends MethodShape> = Parameters<M['requestSerialize']>[0];
type Res<M extends MethodShape> = ReturnType<M['responseDeserialize']>;

/**
 * A request as a caller writes it: top-level fields left out take their protobuf defaults
 * (nested messages, when given, are complete: build them with `X.fromPartial`).
 */
export type RequestInput<T> = Partial<T>;
export type RequestSource<T> = AsyncIterable<RequestInput<T>> | Iterable<RequestInput<T>>;

export type MethodClient<M extends MethodShape> = M['requestStream'] extends true
  ? M['responseStream'] extends true
    ? (requests: RequestSource<Req<M>>, options?: CallOptions) => AsyncIterable<Res<M>>
    : (requests: RequestSource<Req<M>>, options?: CallOptions) => Promise<Res<M>>
  : M['responseStream'] extends true
    ? (request: RequestInput<Req<M>>, options?: CallOptions) => AsyncIterable<Res<M>>
    : (request: RequestInput<Req<M>>, options?: CallOptions) => Promise<Res<M>>;

/** Every method of a service as a promise (or async iterable, for server streams). */
export type ServiceClient<D extends DefinitionShape> = { readonly [K in keyof D]: MethodClient<D[K]> };

export interface QuantaClient {
  /** KServe v2 / Triton GRPCInferenceService (ModelInfer, ModelMetadata, ...). */
  readonly inference: ServiceClient<typeof inference.GRPCInferenceServiceService>;
  readonly registry: ServiceClient<typeof registry.RegistryServiceService>;
  readonly crypto: ServiceClient<typeof crypto.CryptoServiceService>;
  readonly monitoring: ServiceClient<typeof monitoring.MonitoringServiceService>;
  /** grpc.health.v1.Health at `address`. */
  readonly health: ServiceClient<typeof health.HealthService>;
  /** Closes every channel; calls made afterwards fail. */
  close(): void;
}

export const DEFAULT_DEADLINE_MS = 30_000;
const DEFAULT_MAX_RECEIVE_BYTES = 64 << 20;

const bytes = (pem: Pem | undefined): Buffer | null => (pem === undefined ? null : Buffer.from(pem));

function credentialsOf(tls: TlsConfig | boolean | undefined): grpc.ChannelCredentials {
  if (tls === undefined || tls === false) return grpc.credentials.createInsecure();
  if (tls === true) return grpc.credentials.createSsl();
  if ((tls.cert === undefined) !== (tls.key === undefined))
    throw new Error('tls: a client certificate needs both cert and key');
  return grpc.credentials.createSsl(bytes(tls.ca), bytes(tls.key), bytes(tls.cert));
}

/**
 * A function, not an inline check: the signal can fire between two checks in one function, which
 * TypeScript's narrowing does not know.
 */
const aborted = (signal: AbortSignal | undefined): boolean => signal?.aborted === true;

const cancelled = (method: string, attempts: number): QuantaClientError =>
  new QuantaClientError(method, grpc.status.CANCELLED, 'cancelled by the caller', attempts);

/** Resolves after `ms`, or rejects as soon as `signal` aborts. */
function wait(ms: number, signal: AbortSignal | undefined, method: string, attempts: number): Promise<void> {
  return new Promise((resolve, reject) => {
    if (aborted(signal)) return reject(cancelled(method, attempts));
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(cancelled(method, attempts));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * One client for every Quanta service: promise-based methods with the bearer token, a default
 * deadline and retries of what is safe to repeat (see RETRY_POLICY and IDEMPOTENT_METHODS).
 */
export function createQuantaClient(options: QuantaClientOptions): QuantaClient {
  const credentials = credentialsOf(options.tls);
  const channelOptions: grpc.ChannelOptions = {
    'grpc.max_receive_message_length': options.maxReceiveMessageBytes ?? DEFAULT_MAX_RECEIVE_BYTES,
    ...options.channelOptions,
  };
  if (typeof options.tls === 'object' && options.tls.serverName !== undefined) {
    channelOptions['grpc.ssl_target_name_override'] = options.tls.serverName;
    channelOptions['grpc.default_authority'] = options.tls.serverName;
  }
  // One channel per distinct address, opened on first use.
  const channels = new Map<string, grpc.Client>();
  let closed = false;
  const channel = (address: string): grpc.Client => {
    if (closed) throw new Error('this Quanta client is closed');
    let client = channels.get(address);
    if (client === undefined) {
      client = new grpc.Client(address, credentials, channelOptions);
      channels.set(address, client);
    }
    return client;
  };

  const metadataFor = async (call: CallOptions): Promise<grpc.Metadata> => {
    const metadata = new grpc.Metadata();
    for (const [key, value] of Object.entries(call.metadata ?? {})) metadata.set(key, value);
    const token = options.token;
    if (token !== undefined) {
      let value: string;
      try {
        value = typeof token === 'string' ? token : await token();
      } catch (error: unknown) {
        const reason = error instanceof Error ? error.message : String(error);
        throw new QuantaClientError(
          'token',
          grpc.status.UNAUTHENTICATED,
          `could not get a token: ${reason}`,
          0,
          undefined,
          { cause: error },
        );
      }
      metadata.set('authorization', `Bearer ${value}`);
    }
    return metadata;
  };

  const deadlineOf = (call: CallOptions, byDefault: boolean): Date | undefined => {
    const ms = call.deadlineMs ?? (byDefault ? (options.deadlineMs ?? DEFAULT_DEADLINE_MS) : 0);
    return ms > 0 ? new Date(Date.now() + ms) : undefined;
  };

  const retryOf = (call: CallOptions): Required<RetryOptions> => {
    const chosen = call.retry ?? options.retry;
    if (chosen === false) return { ...DEFAULT_RETRY, maxAttempts: 1 };
    return { ...DEFAULT_RETRY, ...chosen };
  };

  /** The wait before the next attempt, or undefined to give up with `error`. */
  const nextWait = (
    error: QuantaClientError,
    attempt: number,
    call: CallOptions,
    deadline: Date | undefined,
  ): number | undefined => {
    const retry = retryOf(call);
    if (attempt >= retry.maxAttempts || aborted(call.signal) || !isRetryable(error.method, error)) return undefined;
    // Never sooner than the server asked (retry-after-ms); the deadline still covers every attempt.
    const delayMs = Math.max(backoffMs(attempt, retry), retryAfterMs(error) ?? 0);
    if (deadline !== undefined && Date.now() + delayMs >= deadline.getTime()) return undefined;
    options.onRetry?.({ method: error.method, attempt, error, delayMs });
    return delayMs;
  };

  const withDefaults = <M extends MethodShape>(m: M, request: RequestInput<Req<M>>): Req<M> =>
    // Decoding no bytes gives every field its protobuf default (fresh arrays and maps each time).
    ({ ...(m.requestDeserialize(Buffer.alloc(0)) as object), ...request }) as Req<M>;

  const options$ = (deadline: Date | undefined): grpc.CallOptions => (deadline === undefined ? {} : { deadline });

  function unary<M extends MethodShape>(address: string, m: M) {
    return async (request: RequestInput<Req<M>>, call: CallOptions = {}): Promise<Res<M>> => {
      const deadline = deadlineOf(call, true);
      const message = withDefaults(m, request);
      for (let attempt = 1; ; attempt++) {
        try {
          if (aborted(call.signal)) throw cancelled(m.path, attempt);
          const metadata = await metadataFor(call);
          return await new Promise<Res<M>>((resolve, reject) => {
            const pending = channel(address).makeUnaryRequest(
              m.path,
              m.requestSerialize as (value: Req<M>) => Buffer,
              m.responseDeserialize as (bytes: Buffer) => Res<M>,
              message,
              metadata,
              options$(deadline),
              (error, response) => {
                call.signal?.removeEventListener('abort', onAbort);
                if (error) reject(error);
                else resolve(response as Res<M>);
              },
            );
            const onAbort = (): void => pending.cancel();
            // The signal may have fired while the token was fetched.
            if (aborted(call.signal)) onAbort();
            else call.signal?.addEventListener('abort', onAbort, { once: true });
          });
        } catch (raw: unknown) {
          const error = QuantaClientError.from(m.path, raw, attempt);
          const delayMs = nextWait(error, attempt, call, deadline);
          if (delayMs === undefined) throw error;
          await wait(delayMs, call.signal, m.path, attempt);
        }
      }
    };
  }

  function serverStream<M extends MethodShape>(address: string, m: M) {
    return async function* (request: RequestInput<Req<M>>, call: CallOptions = {}): AsyncIterable<Res<M>> {
      const deadline = deadlineOf(call, false);
      const message = withDefaults(m, request);
      for (let attempt = 1; ; attempt++) {
        if (aborted(call.signal)) throw cancelled(m.path, attempt);
        let received = 0;
        let stream: grpc.ClientReadableStream<Res<M>> | undefined;
        const onAbort = (): void => stream?.cancel();
        try {
          const metadata = await metadataFor(call);
          stream = channel(address).makeServerStreamRequest(
            m.path,
            m.requestSerialize as (value: Req<M>) => Buffer,
            m.responseDeserialize as (bytes: Buffer) => Res<M>,
            message,
            metadata,
            options$(deadline),
          );
          if (aborted(call.signal)) onAbort();
          else call.signal?.addEventListener('abort', onAbort, { once: true });
          for await (const item of stream) {
            received++;
            yield item as Res<M>;
          }
          return;
        } catch (raw: unknown) {
          const error = QuantaClientError.from(m.path, raw, attempt);
          // Once a message has arrived, a retry would repeat it: only a stream that gave nothing is retried.
          const delayMs = received === 0 ? nextWait(error, attempt, call, deadline) : undefined;
          if (delayMs === undefined) throw error;
          await wait(delayMs, call.signal, m.path, attempt);
        } finally {
          call.signal?.removeEventListener('abort', onAbort);
          stream?.cancel(); // a consumer that stops early ends the call; after the end it does nothing
        }
      }
    };
  }

  /**
   * Writes `requests` into a call with backpressure, then half-closes. Resolves with the error of
   * a failing source (after cancelling the call), or undefined.
   */
  async function pump<T>(
    source: RequestSource<T>,
    writable: grpc.ClientWritableStream<T>,
    fill: (r: RequestInput<T>) => T,
  ): Promise<unknown> {
    let ended = false;
    const end = new Promise<void>((resolve) =>
      writable.once('status', () => {
        ended = true;
        resolve();
      }),
    );
    try {
      for await (const request of source) {
        if (ended) return undefined;
        if (!writable.write(fill(request)))
          await Promise.race([new Promise((resolve) => writable.once('drain', resolve)), end]);
      }
      if (!ended) writable.end();
      return undefined;
    } catch (error: unknown) {
      writable.cancel();
      return error;
    }
  }

  const sourceFailed = (method: string, error: unknown): QuantaClientError =>
    new QuantaClientError(
      method,
      grpc.status.CANCELLED,
      `the request stream failed: ${error instanceof Error ? error.message : String(error)}`,
      1,
      undefined,
      {
        cause: error,
      },
    );

  function clientStream<M extends MethodShape>(address: string, m: M) {
    return async (requests: RequestSource<Req<M>>, call: CallOptions = {}): Promise<Res<M>> => {
      const deadline = deadlineOf(call, true);
      if (aborted(call.signal)) throw cancelled(m.path, 1);
      const metadata = await metadataFor(call);
      // Never retried: the request stream has been consumed and the server may have acted on part of it.
      return new Promise<Res<M>>((resolve, reject) => {
        const writable = channel(address).makeClientStreamRequest(
          m.path,
          m.requestSerialize as (value: Req<M>) => Buffer,
          m.responseDeserialize as (bytes: Buffer) => Res<M>,
          metadata,
          options$(deadline),
          (error, response) => {
            call.signal?.removeEventListener('abort', onAbort);
            if (error) reject(QuantaClientError.from(m.path, error, 1));
            else resolve(response as Res<M>);
          },
        );
        const onAbort = (): void => writable.cancel();
        if (aborted(call.signal)) onAbort();
        else call.signal?.addEventListener('abort', onAbort, { once: true });
        void pump(requests, writable, (r) => withDefaults(m, r)).then((failure) => {
          if (failure !== undefined) reject(sourceFailed(m.path, failure));
        });
      });
    };
  }

  function bidiStream<M extends MethodShape>(address: string, m: M) {
    return async function* (requests: RequestSource<Req<M>>, call: CallOptions = {}): AsyncIterable<Res<M>> {
      const deadline = deadlineOf(call, false);
      if (aborted(call.signal)) throw cancelled(m.path, 1);
      const metadata = await metadataFor(call);
      const duplex = channel(address).makeBidiStreamRequest(
        m.path,
        m.requestSerialize as (value: Req<M>) => Buffer,
        m.responseDeserialize as (bytes: Buffer) => Res<M>,
        metadata,
        options$(deadline),
      );
      const onAbort = (): void => duplex.cancel();
      if (aborted(call.signal)) onAbort();
      else call.signal?.addEventListener('abort', onAbort, { once: true });
      let failure: unknown;
      void pump(requests, duplex as unknown as grpc.ClientWritableStream<Req<M>>, (r) => withDefaults(m, r)).then(
        (e) => {
          failure = e;
        },
      );
      try {
        for await (const item of duplex) yield item as Res<M>;
      } catch (raw: unknown) {
        throw failure !== undefined ? sourceFailed(m.path, failure) : QuantaClientError.from(m.path, raw, 1);
      } finally {
        call.signal?.removeEventListener('abort', onAbort);
        duplex.cancel();
      }
    };
  }

  function serviceClient<D extends DefinitionShape>(definition: D, address: string): ServiceClient<D> {
    const methods: Record<string, unknown> = {};
    for (const [name, m] of Object.entries(definition)) {
      methods[name] = m.requestStream
        ? m.responseStream
          ? bidiStream(address, m)
          : clientStream(address, m)
        : m.responseStream
          ? serverStream(address, m)
          : unary(address, m);
    }
    return methods as ServiceClient<D>;
  }

  const addressOf = (service: ServiceName): string => options.addresses?.[service] ?? options.address;
  return {
    inference: serviceClient(inference.GRPCInferenceServiceService, addressOf('inference')),
    registry: serviceClient(registry.RegistryServiceService, addressOf('registry')),
    crypto: serviceClient(crypto.CryptoServiceService, addressOf('crypto')),
    monitoring: serviceClient(monitoring.MonitoringServiceService, addressOf('monitoring')),
    health: serviceClient(health.HealthService, options.address),
    close() {
      closed = true;
      for (const client of channels.values()) client.close();
      channels.clear();
    },
  };
}
