import type { BlobStore } from '../core/blob-store.js';
import type { DeploymentFeed } from '../core/change-feed.js';
import type { Store } from '@quanta/store';
import type { RegistryAudit } from './audit.js';
import type { DataKeys } from './data-keys.js';
import type { Inspector } from './inspector.js';

/** What the handlers share. */
export interface RegistryDeps {
  readonly store: Store;
  readonly blobs: BlobStore;
  readonly dataKeys: DataKeys;
  readonly inspect: Inspector;
  /** This process's reader of the deployment change feed, which WatchDeployments streams follow. */
  readonly feed: DeploymentFeed;
  readonly maxUploadBytes: number;
  readonly now: () => Date;
  /**
   * Aborted when the server begins to stop: watch streams end then, instead of holding shutdown for its grace period.
   */
  readonly closing: AbortSignal;
  /** Records each change (models, versions, aliases, deployments, rewraps) in `registry_audit`. */
  readonly audit: RegistryAudit;
}
