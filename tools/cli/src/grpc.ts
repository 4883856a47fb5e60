import * as grpc from '@grpc/grpc-js';
import type { Settings, ServiceName } from './settings.js';

type ClientConstructor<C> = new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ClientOptions) => C;

/**
 * A client of one Quanta service at the address the settings give, sending the bearer token
 * (when there is one) with every call.
 */
export function connect<C extends grpc.Client>(ctor: ClientConstructor<C>, settings: Settings, service: ServiceName): C {
  const token = settings.token();
  const interceptors: grpc.Interceptor[] = [];
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
  return new ctor(settings.address(service), grpc.credentials.createInsecure(), {
    interceptors,
    'grpc.max_receive_message_length': 64 << 20,
  });
}

/** A deadline `seconds` from now, for `callOptions`. */
export function deadline(seconds = 30): { deadline: Date } {
  return { deadline: new Date(Date.now() + seconds * 1000) };
}
