import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { InterceptorOptions } from '@quanta/telemetry';
import { createClientInterceptor } from '@quanta/telemetry';
import { DEFAULT_FLOW_CONTROL_WINDOW } from './flow-control.js';
import type { ClientTlsOptions } from './tls.js';
import { channelCredentials } from './tls.js';

export type TokenSource = string | (() => string | Promise<string>);

/**
 * A service's token for its calls to the other services: the configured one, else the admin token
 * the crypto service wrote to `$home/admin.token` (read per call: it may be renewed). `variable`
 * names the setting in the error when neither is there.
 */
export function serviceTokenSource(options: {
  token: string | undefined;
  home: string;
  variable: string;
}): () => Promise<string> {
  const { token } = options;
  if (token !== undefined) return () => Promise.resolve(token);
  const path = join(options.home, 'admin.token');
  return async () => {
    try {
      return (await readFile(path, 'utf8')).trim();
    } catch {
      throw new Error(
        `no service token: set ${options.variable}, ` +
          `or start the crypto service with the same QUANTA_HOME so it writes ${path}`,
      );
    }
  };
}

export interface ClientOptions {
  /** Sent as `authorization: Bearer <token>`; a function is asked on every call (refreshing tokens). */
  readonly token?: TokenSource;
  /** TLS (mTLS with certFile + keyFile); plaintext when omitted. */
  readonly tls?: ClientTlsOptions;
  /** Tracing: the telemetry client interceptor on the global tracer unless `false` or given a tracer/meter. */
  readonly telemetry?: InterceptorOptions | false;
  /** Deadline for calls made without one, in ms; none by default. */
  readonly defaultDeadlineMs?: number;
  /** Largest response message in bytes; default 4 MiB like grpc-js. */
  readonly maxReceiveMessageLength?: number;
  /** Further interceptors, run inside tracing and auth. */
  readonly interceptors?: readonly grpc.Interceptor[];
  /**
   * `round_robin` spreads calls over every address the name resolves to (`dns:///inference:8001` over
   * a headless Kubernetes Service, `ipv4:10.0.0.1:8001,10.0.0.2:8001`); default `pick_first`.
   */
  readonly loadBalancing?: 'pick_first' | 'round_robin';
  readonly channelOptions?: grpc.ChannelOptions;
}

export type ClientConstructor<C extends grpc.Client> = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: Partial<grpc.ClientOptions>,
) => C;

/** Adds the bearer token; a token source that fails ends the call UNAUTHENTICATED without sending it. */
function tokenInterceptor(token: TokenSource): grpc.Interceptor {
  return (options, nextCall) => {
    const call: grpc.InterceptingCall = new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        Promise.resolve()
          .then(() => (typeof token === 'string' ? token : token()))
          .then(
            (value) => {
              metadata.set('authorization', `Bearer ${value}`);
              next(metadata, listener);
            },
            (error: unknown) => {
              next(metadata, listener);
              const reason = error instanceof Error ? error.message : String(error);
              call.cancelWithStatus(grpc.status.UNAUTHENTICATED, `could not get a token: ${reason}`);
            },
          );
      },
    });
    return call;
  };
}

function deadlineInterceptor(ms: number): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(
      nextCall(options.deadline === undefined ? { ...options, deadline: new Date(Date.now() + ms) } : options),
    );
}

/** The HTTP/2 receive window of a client's streams and connection (grpc-js uses one figure for both). */
export const CLIENT_FLOW_CONTROL_WINDOW = 4 * DEFAULT_FLOW_CONTROL_WINDOW;

/**
 * A client for service-to-service calls (any grpc-js / ts-proto client class): tracing, bearer
 * token, default deadline and TLS in one place.
 */
export function createClient<C extends grpc.Client>(
  ctor: ClientConstructor<C>,
  address: string,
  options: ClientOptions = {},
): C {
  const interceptors: grpc.Interceptor[] = [];
  if (options.defaultDeadlineMs !== undefined) interceptors.push(deadlineInterceptor(options.defaultDeadlineMs));
  if (options.telemetry !== false) interceptors.push(createClientInterceptor(options.telemetry ?? {}));
  if (options.token !== undefined) interceptors.push(tokenInterceptor(options.token));
  interceptors.push(...(options.interceptors ?? []));

  // What the server may send ahead, per stream and per connection (grpc-js's own default is HTTP/2's
  // 64 KiB, a round trip per 64 KiB of a large answer such as a model download; see flow-control.ts).
  const channelOptions: grpc.ChannelOptions = {
    'grpc-node.flow_control_window': CLIENT_FLOW_CONTROL_WINDOW,
    ...options.channelOptions,
  };
  if (options.maxReceiveMessageLength !== undefined) {
    channelOptions['grpc.max_receive_message_length'] = options.maxReceiveMessageLength;
  }
  if (options.loadBalancing !== undefined) {
    channelOptions['grpc.service_config'] = JSON.stringify({ loadBalancingConfig: [{ [options.loadBalancing]: {} }] });
  }
  if (options.tls?.serverName !== undefined) {
    channelOptions['grpc.ssl_target_name_override'] = options.tls.serverName;
    channelOptions['grpc.default_authority'] = options.tls.serverName;
  }
  return new ctor(address, channelCredentials(options.tls), { ...channelOptions, interceptors });
}
