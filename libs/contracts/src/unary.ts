import * as grpc from '@grpc/grpc-js';

/** The shape of one method of a generated service definition (`XxxServiceService`). */
interface MethodShape {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  readonly requestSerialize: (value: never) => Buffer;
  readonly responseDeserialize: (bytes: Buffer) => unknown;
}

type DefinitionShape = { readonly [method: string]: MethodShape };

/** The names of a service definition's unary methods. */
export type UnaryMethod<D extends DefinitionShape> = {
  [K in keyof D]: D[K]['requestStream'] extends false ? (D[K]['responseStream'] extends false ? K : never) : never;
}[keyof D];
export type RequestOf<D extends DefinitionShape, K extends keyof D> = Parameters<D[K]['requestSerialize']>[0];
export type ResponseOf<D extends DefinitionShape, K extends keyof D> = ReturnType<D[K]['responseDeserialize']>;

export interface UnaryCallOptions {
  readonly metadata?: grpc.Metadata;
  readonly deadline?: grpc.Deadline;
}

/** Calls any unary method of one service by name and resolves with its reply (rejects with the grpc ServiceError). */
export type UnaryCaller<D extends DefinitionShape> = <K extends UnaryMethod<D>>(
  method: K,
  request: RequestOf<D, K>,
  options?: UnaryCallOptions,
) => Promise<ResponseOf<D, K>>;

/**
 * A promise-returning caller of a service's unary methods over `client`'s channel (its interceptors,
 * such as the bearer token, apply). `defaults.deadlineMs` sets a deadline on calls that give none.
 */
export function unaryCaller<D extends DefinitionShape>(
  client: grpc.Client,
  definition: D,
  defaults: { deadlineMs?: number } = {},
): UnaryCaller<D> {
  return <K extends UnaryMethod<D>>(method: K, request: RequestOf<D, K>, options: UnaryCallOptions = {}) => {
    const m = definition[method] as D[K];
    const deadline =
      options.deadline ?? (defaults.deadlineMs !== undefined ? Date.now() + defaults.deadlineMs : undefined);
    return new Promise<ResponseOf<D, K>>((resolve, reject) => {
      client.makeUnaryRequest(
        m.path,
        m.requestSerialize as (value: RequestOf<D, K>) => Buffer,
        m.responseDeserialize as (bytes: Buffer) => ResponseOf<D, K>,
        request,
        options.metadata ?? new grpc.Metadata(),
        deadline !== undefined ? { deadline } : {},
        (error, response) => (error ? reject(error) : resolve(response as ResponseOf<D, K>)),
      );
    });
  };
}
