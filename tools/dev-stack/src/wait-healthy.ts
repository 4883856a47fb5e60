import * as grpc from '@grpc/grpc-js';
import { health } from '@quanta/contracts';

/**
 * Resolves once `address` answers SERVING to a grpc.health.v1 Check, or rejects after `timeoutMs`.
 * `credentials`: TLS/mTLS towards the service; plaintext by default.
 */
export async function waitHealthy(
  address: string,
  timeoutMs: number,
  signal?: AbortSignal,
  credentials?: grpc.ChannelCredentials,
): Promise<void> {
  const client = new health.HealthClient(address, credentials ?? grpc.credentials.createInsecure());
  const until = Date.now() + timeoutMs;
  try {
    for (;;) {
      signal?.throwIfAborted();
      const status = await new Promise<health.HealthCheckResponse_ServingStatus | undefined>((resolve) => {
        client.check({ service: '' }, new grpc.Metadata(), { deadline: Date.now() + 1000 }, (error, reply) =>
          resolve(error ? undefined : reply.status),
        );
      });
      if (status === health.HealthCheckResponse_ServingStatus.SERVING) return;
      if (Date.now() > until) throw new Error(`${address} did not become healthy within ${timeoutMs / 1000} s`);
      // The channel backs off between connection attempts by itself; this only paces the checks.
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    client.close();
  }
}
