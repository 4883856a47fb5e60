// Registry messages the sync's tests hand to scripted registries.
import { createHash } from 'node:crypto';
import { registry as pb } from '@quanta/contracts';

export const sha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** A READY version of `bytes`, as DownloadVersion's header and a deployment carry it. */
export function readyVersion(
  model: string,
  n: number,
  bytes: Uint8Array,
  over: Partial<pb.ModelVersion> = {},
): pb.ModelVersion {
  return {
    model,
    version: n,
    description: '',
    tags: {},
    status: pb.VersionStatus.VERSION_STATUS_READY,
    statusReason: '',
    sha256: sha(bytes),
    sizeBytes: BigInt(bytes.length),
    signature: undefined,
    lineage: undefined,
    aliases: [],
    createdBy: '',
    createTime: undefined,
    updateTime: undefined,
    ...over,
  };
}
