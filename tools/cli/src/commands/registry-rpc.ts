import { registry as pb, unaryCaller, type RequestOf, type ResponseOf, type UnaryMethod } from '@quanta/contracts';
import { connect } from '../grpc.js';
import type { Settings } from '../settings.js';

type Definition = typeof pb.RegistryServiceService;

/** A promise-returning caller of RegistryService's unary RPCs (the CLI's token rides on every call). */
export interface RegistryRpc {
  <K extends UnaryMethod<Definition>>(method: K, request: RequestOf<Definition, K>): Promise<ResponseOf<Definition, K>>;
  readonly client: pb.RegistryServiceClient;
}

/** Runs `fn` with a connected registry caller and always closes the channel. */
export async function withRegistry<T>(settings: Settings, fn: (rpc: RegistryRpc) => Promise<T>): Promise<T> {
  const client = connect(pb.RegistryServiceClient, settings, 'registry');
  const call = unaryCaller(client, pb.RegistryServiceService, { deadlineMs: 60_000 });
  const rpc = <K extends UnaryMethod<Definition>>(method: K, request: RequestOf<Definition, K>) =>
    call(method, request);
  try {
    return await fn(Object.assign(rpc, { client }));
  } finally {
    client.close();
  }
}
