import type { registry as pb } from '@quanta/contracts';
import type { CallContext } from '@quanta/service-kit';
import { cancelled, serverStreaming, unary } from '@quanta/service-kit';
import { countByKeyVersion, listBlobKeys, readSealedHeader, replaceBlobDataKey } from '../core/blob-keys.js';
import type { BlobDataKey, BlobKeyRow } from '../core/blob-keys.js';
import type { RegistryDeps } from './deps.js';
import type { RegistryAudit } from './audit.js';

type DataKeyHandlers = Pick<pb.RegistryServiceServer, 'rewrapDataKeys' | 'getDataKeyStatus'>;

/**
 * A file's current key: the database's copy, or for a file stored before the database kept one, its
 * header's, which is then recorded (so that counts and later rewraps need not read the file again).
 */
async function currentKey(deps: RegistryDeps, row: BlobKeyRow): Promise<BlobDataKey> {
  if (row.key !== undefined) return row.key;
  const file = await deps.blobs.open({ tenant: row.tenant, sha256: row.sha256 });
  let header: BlobDataKey;
  try {
    const h = await readSealedHeader(file);
    header = { keyName: h.keyName, keyVersion: h.keyVersion, wrappedKey: Buffer.from(h.wrappedKey) };
  } finally {
    await file.close();
  }
  await replaceBlobDataKey(deps.store, row.tenant, row.sha256, undefined, header);
  return header;
}

/** Latest versions per key name, asked of crypto once per call. */
function latestVersions(deps: RegistryDeps): (keyName: string) => Promise<number> {
  const known = new Map<string, Promise<number>>();
  return (keyName) => {
    let latest = known.get(keyName);
    if (latest === undefined) {
      latest = deps.dataKeys.latestVersion(keyName);
      known.set(keyName, latest);
    }
    return latest;
  };
}

/**
 * RewrapDataKeys: each file's data key is rewrapped by crypto and committed on its own (compare and
 * set), so a call that stops midway leaves every file readable, some under the new version, and the
 * next call skips those.
 */
async function* rewrap(
  deps: RegistryDeps,
  ctx: CallContext,
): AsyncGenerator<pb.RewrapDataKeysResponse, void, undefined> {
  const rows = await listBlobKeys(deps.store);
  const latestOf = latestVersions(deps);
  const progress = {
    done: 0n,
    total: BigInt(rows.length),
    rewrapped: 0n,
    skipped: 0n,
    keyName: deps.dataKeys.keyName,
    keyVersion: 0,
  };
  if (rows.length === 0) {
    yield { ...progress };
    return;
  }
  for (const row of rows) {
    ctx.signal.throwIfAborted();
    const key = await currentKey(deps, row);
    const latest = await latestOf(key.keyName);
    let now = key;
    if (key.keyVersion < latest) {
      const next = await deps.dataKeys.rewrap(row.tenant, key.keyName, key.wrappedKey);
      const rewrapped = { keyName: key.keyName, keyVersion: next.keyVersion, wrappedKey: next.wrapped };
      // Lost to a concurrent rewrap (another replica): that one's key is as new, keep it.
      if (await replaceBlobDataKey(deps.store, row.tenant, row.sha256, key, rewrapped)) {
        progress.rewrapped += 1n;
        now = rewrapped;
      } else {
        progress.skipped += 1n;
      }
    } else {
      progress.skipped += 1n;
    }
    progress.done += 1n;
    yield { ...progress, keyName: now.keyName, keyVersion: now.keyVersion };
  }
}

export function createDataKeyHandlers(deps: RegistryDeps, audit: RegistryAudit): DataKeyHandlers {
  return {
    rewrapDataKeys: serverStreaming<pb.RewrapDataKeysRequest, pb.RewrapDataKeysResponse>(async function* (_req, ctx) {
      let failure: unknown;
      try {
        yield* rewrap(deps, ctx);
      } catch (error: unknown) {
        failure = error;
        throw error;
      } finally {
        // A cancelled call ends the generator without an error: record it as the client saw it.
        await audit.record(
          ctx,
          `data-keys/${deps.dataKeys.keyName}`,
          failure ?? (ctx.signal.aborted ? cancelled('the call was cancelled') : undefined),
        );
      }
    }),

    getDataKeyStatus: unary<pb.GetDataKeyStatusRequest, pb.GetDataKeyStatusResponse>(async (req) => {
      const keyName = deps.dataKeys.keyName;
      for (const row of await listBlobKeys(deps.store)) if (row.key === undefined) await currentKey(deps, row);
      const counts = await countByKeyVersion(deps.store);
      const ownCounts = counts.filter((c) => c.keyName === keyName);
      // No file yet may mean no key yet either: nothing can be stranded then.
      const latest = ownCounts.length === 0 && counts.length === 0 ? 0 : await deps.dataKeys.latestVersion(keyName);
      const below = req.belowKeyVersion === 0 ? latest : req.belowKeyVersion;
      const stranded = ownCounts.filter((c) => c.keyVersion < below);
      return {
        keyName,
        latestKeyVersion: latest,
        belowKeyVersion: below,
        versionsBelow: BigInt(stranded.reduce((n, c) => n + c.versions, 0)),
        filesBelow: BigInt(stranded.reduce((n, c) => n + c.files, 0)),
        counts: counts.map((c) => ({
          keyName: c.keyName,
          keyVersion: c.keyVersion,
          versions: BigInt(c.versions),
          files: BigInt(c.files),
        })),
      };
    }),
  };
}
