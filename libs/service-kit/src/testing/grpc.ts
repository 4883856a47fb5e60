import * as grpc from '@grpc/grpc-js';

/** Call metadata carrying `authorization: Bearer <token>`; none when `token` is undefined. */
export function bearer(token: string | undefined): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

/** The gRPC error of a call that must fail; throws when it succeeds. */
export async function failure(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (error: unknown) {
    return error as grpc.ServiceError;
  }
  throw new Error('expected the call to fail, it succeeded');
}
