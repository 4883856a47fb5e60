import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { CliError } from './errors.js';
import type { Settings, ServiceName, TlsSettings } from './settings.js';

type ClientConstructor<C> = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ClientOptions,
) => C;

const extraInterceptors: grpc.Interceptor[] = [];

/** Adds an interceptor to every client made after this (main adds tracing when it is on). */
export function useInterceptor(interceptor: grpc.Interceptor): void {
  extraInterceptors.push(interceptor);
}

/**
 * A client of one Quanta service at the address the settings give, sending the bearer token
 * (when there is one) with every call.
 */
export function connect<C extends grpc.Client>(
  ctor: ClientConstructor<C>,
  settings: Settings,
  service: ServiceName,
): C {
  const token = settings.token();
  // Tracing first, so the span covers the call as the token interceptor sends it.
  const interceptors: grpc.Interceptor[] = [...extraInterceptors];
  if (token !== undefined) {
    interceptors.push(
      (options, next) =>
        new grpc.InterceptingCall(next(options), {
          start(metadata, listener, nextStart) {
            metadata.set('authorization', `Bearer ${token}`);
            nextStart(metadata, listener);
          },
        }),
    );
  }
  return new ctor(settings.address(service), credentials(settings.tls), {
    interceptors,
    'grpc.max_receive_message_length': 64 << 20,
  });
}

/** TLS channel credentials from the settings' PEM files, or plaintext. */
export function credentials(tls: TlsSettings | undefined): grpc.ChannelCredentials {
  if (tls === undefined) return grpc.credentials.createInsecure();
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
    throw new CliError('--tls-cert and --tls-key go together (a client certificate needs its key)', 2);
  }
  const read = (path: string | undefined, flag: string): Buffer | null => {
    if (path === undefined) return null;
    try {
      return readFileSync(path);
    } catch (error: unknown) {
      throw new CliError(
        `cannot read ${flag} file "${path}": ${error instanceof Error ? error.message : String(error)}`,
        2,
      );
    }
  };
  return grpc.credentials.createSsl(
    read(tls.caFile, '--tls-ca'),
    read(tls.keyFile, '--tls-key'),
    read(tls.certFile, '--tls-cert'),
  );
}

/** A deadline `seconds` from now, for `callOptions`. */
export function deadline(seconds = 30): { deadline: Date } {
  return { deadline: new Date(Date.now() + seconds * 1000) };
}
