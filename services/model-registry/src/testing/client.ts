import * as grpc from '@grpc/grpc-js';
import type { registry as pb } from '@quanta/contracts';
import { bearer } from './harness.js';

/** Uploads `bytes` in chunks after `header`; rejects with the call's gRPC error. */
export function push(
  client: pb.RegistryServiceClient,
  token: string,
  header: Partial<pb.UploadHeader> & { model: string },
  bytes: Buffer,
  chunkSize = 64 * 1024,
): Promise<pb.ModelVersion> {
  return new Promise((resolve, reject) => {
    const call = client.uploadVersion(bearer(token), (error, response) => {
      if (error) reject(error);
      else if (response?.version === undefined) reject(new Error('UploadVersion answered without a version'));
      else resolve(response.version);
    });
    call.write({
      part: {
        $case: 'header',
        value: {
          description: '',
          tags: {},
          expectedSha256: '',
          expectedSizeBytes: 0n,
          createModel: true,
          lineage: undefined,
          ...header,
        },
      },
    });
    for (let offset = 0; offset < bytes.length; offset += chunkSize) {
      call.write({ part: { $case: 'chunk', value: bytes.subarray(offset, offset + chunkSize) } });
    }
    call.end();
  });
}

/** Downloads a version: its header and the concatenated plaintext. */
export async function pull(
  client: pb.RegistryServiceClient,
  token: string,
  ref: string,
  extra: Partial<pb.DownloadVersionRequest> = {},
): Promise<{ version: pb.ModelVersion; bytes: Buffer; chunks: number }> {
  const stream = client.downloadVersion({ ref, chunkSizeBytes: 0, tenant: '', ...extra }, bearer(token));
  let version: pb.ModelVersion | undefined;
  const parts: Buffer[] = [];
  for await (const message of stream as AsyncIterable<pb.DownloadVersionResponse>) {
    if (message.part?.$case === 'header') version = message.part.value.version;
    else if (message.part?.$case === 'chunk') parts.push(message.part.value);
  }
  if (version === undefined) throw new Error('download sent no header');
  return { version, bytes: Buffer.concat(parts), chunks: parts.length };
}

export { failure } from '@quanta/service-kit/testing';

export { grpc };

/** Runs CompressVersion to its end: the progress messages and the new version; rejects with the call's gRPC error. */
export async function compress(
  client: pb.RegistryServiceClient,
  token: string,
  request: Partial<pb.CompressVersionRequest> & { ref: string; method: pb.CompressionMethod },
): Promise<{ version: pb.ModelVersion; progress: pb.CompressProgress[] }> {
  const stream = client.compressVersion(
    {
      targetModel: '',
      calibration: [],
      dims: {},
      sampleCount: 8,
      seed: 0n,
      gates: undefined,
      alias: '',
      description: '',
      ...request,
    },
    bearer(token),
  );
  const progress: pb.CompressProgress[] = [];
  let version: pb.ModelVersion | undefined;
  for await (const message of stream as AsyncIterable<pb.CompressVersionResponse>) {
    if (message.event?.$case === 'progress') progress.push(message.event.value);
    else if (message.event?.$case === 'version') version = message.event.value;
  }
  if (version === undefined) throw new Error('CompressVersion ended without a version');
  return { version, progress };
}
