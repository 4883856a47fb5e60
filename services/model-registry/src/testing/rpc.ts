import type * as grpc from '@grpc/grpc-js';

type AnyDefinition = Record<string, { path: string; requestStream: boolean; responseStream: boolean }>;
export type UnaryName<D extends AnyDefinition> = {
  [K in keyof D]: D[K]['requestStream'] extends false ? (D[K]['responseStream'] extends false ? K : never) : never;
}[keyof D];
export type RequestOf<D, K extends keyof D> = D[K] extends { requestSerialize: (value: infer R) => Buffer } ? R : never;
export type ResponseOf<D, K extends keyof D> = D[K] extends { responseDeserialize: (value: Buffer) => infer R }
  ? R
  : never;

export function bearerMetadata(metadataCtor: typeof grpc.Metadata, token: string | undefined): grpc.Metadata {
  const md = new metadataCtor();
  if (token !== undefined) md.set('authorization', `Bearer ${token}`);
  return md;
}

/** Calls a unary method of `definition` by name through any grpc-js client; rejects with the gRPC error. */
export function rpc<D extends AnyDefinition, K extends UnaryName<D>>(
  client: grpc.Client,
  definition: D,
  method: K,
  request: RequestOf<D, K>,
  metadata: grpc.Metadata,
): Promise<ResponseOf<D, K>> {
  const m = definition[method] as unknown as grpc.MethodDefinition<RequestOf<D, K>, ResponseOf<D, K>>;
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      m.path,
      m.requestSerialize,
      m.responseDeserialize,
      request,
      metadata,
      {},
      (error, response) => {
        if (error) reject(error);
        else resolve(response as ResponseOf<D, K>);
      },
    );
  });
}
