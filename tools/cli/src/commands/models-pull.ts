import { open, rename, rm } from 'node:fs/promises';
import { LeanRegistryServiceClient, type registry as pb } from '@quanta/contracts';
import { CliError } from '../errors.js';
import { connect } from '../grpc.js';
import type { Settings } from '../settings.js';
import { progress, type Progress } from './progress.js';

/**
 * Downloads version `ref` to `out`: written to `out.part` first and renamed only once the call
 * ended OK, so `out` never holds a partial or unverified file.
 */
export async function pullFile(settings: Settings, ref: string, out: string): Promise<pb.ModelVersion> {
  const client = connect(LeanRegistryServiceClient, settings, 'registry');
  const partial = `${out}.part`;
  const handle = await open(partial, 'w', 0o644);
  let bar: Progress | undefined;
  try {
    const stream = client.downloadVersion({ ref, chunkSizeBytes: 0, tenant: '' });
    let version: pb.ModelVersion | undefined;
    let done = 0;
    for await (const message of stream as AsyncIterable<pb.DownloadVersionResponse>) {
      if (message.part?.$case === 'header') {
        version = message.part.value.version;
        bar = progress(settings, `pull ${ref}`, Number(version?.sizeBytes ?? 0));
      } else if (message.part?.$case === 'chunk') {
        await handle.write(message.part.value);
        done += message.part.value.length;
        bar?.update(done);
      }
    }
    if (version === undefined) throw new CliError('the registry sent no header');
    await handle.sync();
    await handle.close();
    // The registry checked the digest as it streamed (the call ended OK): publish the file.
    await rename(partial, out);
    return version;
  } catch (error: unknown) {
    await handle.close().catch(() => undefined);
    await rm(partial, { force: true });
    throw error;
  } finally {
    bar?.end();
    client.close();
  }
}
