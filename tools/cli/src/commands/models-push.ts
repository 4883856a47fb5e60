import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { LeanRegistryServiceClient, readUploadChunks, type registry as pb } from '@quanta/contracts';
import { CliError } from '../errors.js';
import { connect } from '../grpc.js';
import type { Settings } from '../settings.js';
import { parseTags } from './models-args.js';
import { progress } from './progress.js';

/** The options of `models push`. */
export interface PushOptions {
  name: string;
  description?: string;
  tag?: string[];
  source?: string;
  parent?: string;
  transform?: string;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function parseLineage(opts: { source?: string; parent?: string; transform?: string }): pb.Lineage | undefined {
  if (opts.source !== undefined && opts.parent !== undefined)
    throw new CliError('--source and --parent exclude each other', 2);
  if (opts.source !== undefined) return { origin: { $case: 'sourceUri', value: opts.source } };
  if (opts.parent === undefined) return undefined;
  const match = /^([^:@]+):(\d+)$/.exec(opts.parent);
  if (match === null) throw new CliError(`--parent "${opts.parent}" must be NAME:VERSION`, 2);
  if (opts.transform === undefined)
    throw new CliError('--parent needs --transform NAME (what made this version from it)', 2);
  return {
    origin: {
      $case: 'parent',
      value: { model: match[1]!, version: Number(match[2]), transform: opts.transform, transformParams: {} },
    },
  };
}

/**
 * Writes the file's bytes to an upload call in 1 MiB chunks, each read into a buffer with room for
 * its protobuf prefix, so that the lean client sends it as read (no copy), waiting for 'drain' while
 * gRPC's buffer is full, so memory stays at a chunk or two; ends the call after the last chunk.
 */
async function sendChunks(
  call: grpc.ClientWritableStream<pb.UploadVersionRequest>,
  file: string,
  onSent: (sent: number) => void,
): Promise<void> {
  let sent = 0;
  for await (const chunk of readUploadChunks(file, 1 << 20)) {
    sent += chunk.length;
    onSent(sent);
    if (!call.write({ part: { $case: 'chunk', value: chunk } })) await once(call, 'drain');
  }
  call.end();
}

/**
 * Uploads `file` as the next version of `opts.name` (the model is created if missing), streaming it
 * with its sha256 and size up front so that the registry checks what it stored.
 */
export async function pushFile(settings: Settings, file: string, opts: PushOptions): Promise<pb.ModelVersion> {
  const size = (await stat(file)).size;
  const digest = await sha256File(file);
  const bar = progress(settings, `push ${basename(file)}`, size);
  const client = connect(LeanRegistryServiceClient, settings, 'registry');
  try {
    return await new Promise<pb.ModelVersion>((resolve, reject) => {
      const call = client.uploadVersion((error, response) => {
        if (error) reject(error);
        else if (response?.version === undefined) reject(new CliError('the registry answered without a version'));
        else resolve(response.version);
      });
      const header: pb.UploadHeader = {
        model: opts.name,
        description: opts.description ?? '',
        tags: parseTags(opts.tag),
        expectedSha256: digest,
        expectedSizeBytes: BigInt(size),
        lineage: parseLineage(opts),
        createModel: true,
      };
      call.write({ part: { $case: 'header', value: header } });
      sendChunks(call, file, (sent) => bar.update(sent)).catch((error: unknown) => {
        call.cancel();
        reject(error instanceof Error ? error : new Error(String(error)));
      });
    });
  } finally {
    bar.end();
    client.close();
  }
}
