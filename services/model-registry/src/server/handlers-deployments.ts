import { registry as pb } from '@quanta/contracts';
import type { CallContext } from '@quanta/service-kit';
import {
  audited,
  hasScope,
  invalidArgument,
  permissionDenied,
  serverStreaming,
  unary,
  unavailable,
} from '@quanta/service-kit';
import type { Store } from '@quanta/store';
import { feedPosition, recordDeploymentChanges } from '../core/change-feed.js';
import type { SequencedEvent } from '../core/change-feed.js';
import {
  createDeployment,
  deleteDeployment,
  getDeployment,
  listDeployments,
  snapshotDeployments,
  updateDeployment,
} from '../core/deployments-repo.js';
import { checkName } from '../core/names.js';
import { pageSize } from '../core/page-token.js';
import { tenantOf } from './context.js';
import type { RegistryDeps } from './deps.js';

type DeploymentHandlers = Pick<
  pb.RegistryServiceServer,
  | 'createDeployment'
  | 'updateDeployment'
  | 'deleteDeployment'
  | 'getDeployment'
  | 'listDeployments'
  | 'watchDeployments'
>;

function requireSpec(spec: pb.DeploymentSpec | undefined): pb.DeploymentSpec {
  if (spec === undefined) throw invalidArgument('spec is required');
  return spec;
}

const CHANGE_TYPE = {
  upserted: pb.DeploymentChangeType.DEPLOYMENT_CHANGE_TYPE_UPSERTED,
  deleted: pb.DeploymentChangeType.DEPLOYMENT_CHANGE_TYPE_DELETED,
} as const;

/**
 * The deployments a watcher may see and the feed position they reflect, read from one snapshot:
 * every change numbered above the position is newer than the set, every one at or below it is in it.
 */
async function snapshotAtPosition(
  store: Store,
  tenant: string | undefined,
): Promise<{ deployments: pb.Deployment[]; position: bigint }> {
  return store.transaction(async (tx) => {
    await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    const position = await feedPosition(tx);
    return { position, deployments: await snapshotDeployments(tx, tenant) };
  });
}

/**
 * WatchDeployments: subscribe to the change feed first, then read the snapshot with its feed
 * position: the feed then passes on every change committed after the snapshot (and perhaps some
 * before it, which the position drops), so nothing falls between the two and nothing comes twice.
 */
async function* watch(
  deps: RegistryDeps,
  req: pb.WatchDeploymentsRequest,
  ctx: CallContext,
): AsyncGenerator<pb.WatchDeploymentsResponse, void, undefined> {
  let tenant: string | undefined = tenantOf(ctx);
  if (req.allTenants) {
    if (ctx.principal === undefined || !hasScope(ctx.principal, 'admin'))
      throw permissionDenied('WatchDeployments: all_tenants needs the admin scope');
    tenant = undefined;
  }
  const queue: SequencedEvent[] = [];
  let lost = false;
  let wake: (() => void) | undefined;
  const unsubscribe = deps.feed.subscribe({
    event(event) {
      if (tenant !== undefined && event.deployment.tenant !== tenant) return;
      queue.push(event);
      wake?.();
    },
    lost() {
      lost = true;
      wake?.();
    },
  });
  const onAbort = (): void => wake?.();
  ctx.signal.addEventListener('abort', onAbort);
  deps.closing.addEventListener('abort', onAbort);
  try {
    const { deployments, position } = await snapshotAtPosition(deps.store, tenant);
    yield { event: { $case: 'snapshot', value: { deployments } } };
    while (!ctx.signal.aborted) {
      // A client told UNAVAILABLE reconnects (to another replica, or to this one once restarted).
      if (deps.closing.aborted) throw unavailable('the model registry is shutting down: watch again');
      // Reconnecting gives a fresh snapshot, which is all that can heal a gap in the feed.
      if (lost)
        throw unavailable(
          'this registry replica missed deployment changes (cut off from the database for longer than changes ' +
            'are kept): watch again',
        );
      const event = queue.shift();
      if (event === undefined) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        continue;
      }
      if (event.seq <= position) continue;
      yield {
        event: {
          $case: 'change',
          value: { type: CHANGE_TYPE[event.type], deployment: event.deployment, reason: event.reason },
        },
      };
    }
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    deps.closing.removeEventListener('abort', onAbort);
    unsubscribe();
  }
}

export function createDeploymentHandlers(deps: RegistryDeps): DeploymentHandlers {
  const { store, audit } = deps;
  return {
    createDeployment: unary<pb.CreateDeploymentRequest, pb.CreateDeploymentResponse>(
      audited(
        audit,
        (req) => `deployment/${req.name}`,
        async (req, ctx) => {
          const tenant = tenantOf(ctx);
          const name = checkName('deployment', req.name, 'name');
          const deployment = await store.transaction(async (tx) => {
            const created = await createDeployment(tx, tenant, name, requireSpec(req.spec), deps.now());
            await recordDeploymentChanges(tx, [{ type: 'upserted', deployment: created, reason: 'created' }]);
            return created;
          });
          return { deployment };
        },
      ),
    ),

    updateDeployment: unary<pb.UpdateDeploymentRequest, pb.UpdateDeploymentResponse>(
      audited(
        audit,
        (req) => `deployment/${req.name}`,
        async (req, ctx) => {
          const tenant = tenantOf(ctx);
          const name = checkName('deployment', req.name, 'name');
          const deployment = await store.transaction(async (tx) => {
            const updated = await updateDeployment(
              tx,
              tenant,
              name,
              requireSpec(req.spec),
              req.expectedGeneration,
              deps.now(),
            );
            await recordDeploymentChanges(tx, [{ type: 'upserted', deployment: updated, reason: 'spec updated' }]);
            return updated;
          });
          return { deployment };
        },
      ),
    ),

    deleteDeployment: unary<pb.DeleteDeploymentRequest, pb.DeleteDeploymentResponse>(
      audited(
        audit,
        (req) => `deployment/${req.name}`,
        async (req, ctx) => {
          const tenant = tenantOf(ctx);
          const name = checkName('deployment', req.name, 'name');
          await store.transaction(async (tx) => {
            const deleted = await deleteDeployment(tx, tenant, name);
            await recordDeploymentChanges(tx, [{ type: 'deleted', deployment: deleted, reason: 'deleted' }]);
          });
          return {};
        },
      ),
    ),

    getDeployment: unary<pb.GetDeploymentRequest, pb.GetDeploymentResponse>(async (req, ctx) => ({
      deployment: await getDeployment(store, tenantOf(ctx), checkName('deployment', req.name, 'name')),
    })),

    listDeployments: unary<pb.ListDeploymentsRequest, pb.ListDeploymentsResponse>(async (req, ctx) => {
      if (req.model !== '') checkName('model', req.model, 'model');
      return listDeployments(store, tenantOf(ctx), req.model, { size: pageSize(req.pageSize), token: req.pageToken });
    }),

    watchDeployments: serverStreaming<pb.WatchDeploymentsRequest, pb.WatchDeploymentsResponse>((req, ctx) =>
      watch(deps, req, ctx),
    ),
  };
}
