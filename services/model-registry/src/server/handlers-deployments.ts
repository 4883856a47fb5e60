import { registry as pb } from '@quanta/contracts';
import type { CallContext } from '@quanta/service-kit';
import { hasScope, invalidArgument, permissionDenied, serverStreaming, unary, unavailable } from '@quanta/service-kit';
import {
  createDeployment,
  deleteDeployment,
  getDeployment,
  listDeployments,
  snapshotDeployments,
  updateDeployment,
} from '../core/deployments-repo.js';
import type { DeploymentEvent } from '../core/events.js';
import { checkName } from '../core/names.js';
import { pageSize } from '../core/page-token.js';
import { tenantOf } from './context.js';
import type { RegistryDeps } from './deps.js';

type DeploymentHandlers = Pick<
  pb.RegistryServiceServer,
  'createDeployment' | 'updateDeployment' | 'deleteDeployment' | 'getDeployment' | 'listDeployments' | 'watchDeployments'
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
 * WatchDeployments: subscribe first, then read the snapshot, so no change falls between the two;
 * a change the snapshot already shows (same or older generation) is not sent again.
 */
async function* watch(deps: RegistryDeps, req: pb.WatchDeploymentsRequest, ctx: CallContext): AsyncGenerator<pb.WatchDeploymentsResponse, void, undefined> {
  let tenant: string | undefined = tenantOf(ctx);
  if (req.allTenants) {
    if (ctx.principal === undefined || !hasScope(ctx.principal, 'admin')) throw permissionDenied('WatchDeployments: all_tenants needs the admin scope');
    tenant = undefined;
  }
  const queue: DeploymentEvent[] = [];
  let wake: (() => void) | undefined;
  const unsubscribe = deps.bus.subscribe((event) => {
    if (tenant !== undefined && event.deployment.tenant !== tenant) return;
    queue.push(event);
    wake?.();
  });
  const onAbort = (): void => wake?.();
  ctx.signal.addEventListener('abort', onAbort);
  deps.closing.addEventListener('abort', onAbort);
  try {
    const snapshot = await snapshotDeployments(deps.store, tenant);
    const seen = new Map(snapshot.map((d) => [`${d.tenant}/${d.name}`, d.generation]));
    yield { event: { $case: 'snapshot', value: { deployments: snapshot } } };
    while (!ctx.signal.aborted) {
      // A client told UNAVAILABLE reconnects (to another replica, or to this one once restarted).
      if (deps.closing.aborted) throw unavailable('the model registry is shutting down: watch again');
      const event = queue.shift();
      if (event === undefined) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        continue;
      }
      const id = `${event.deployment.tenant}/${event.deployment.name}`;
      const known = seen.get(id);
      if (event.type === 'upserted' && known !== undefined && event.deployment.generation <= known) continue;
      if (event.type === 'upserted') seen.set(id, event.deployment.generation);
      else seen.delete(id);
      yield { event: { $case: 'change', value: { type: CHANGE_TYPE[event.type], deployment: event.deployment, reason: event.reason } } };
    }
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    deps.closing.removeEventListener('abort', onAbort);
    unsubscribe();
  }
}

export function createDeploymentHandlers(deps: RegistryDeps): DeploymentHandlers {
  const { store, bus } = deps;
  return {
    createDeployment: unary<pb.CreateDeploymentRequest, pb.CreateDeploymentResponse>({ scope: 'models:write' }, async (req, ctx) => {
      const tenant = tenantOf(ctx);
      const name = checkName('deployment', req.name, 'name');
      const deployment = await store.transaction((tx) => createDeployment(tx, tenant, name, requireSpec(req.spec), deps.now()));
      bus.publish({ type: 'upserted', deployment, reason: 'created' });
      return { deployment };
    }),

    updateDeployment: unary<pb.UpdateDeploymentRequest, pb.UpdateDeploymentResponse>({ scope: 'models:write' }, async (req, ctx) => {
      const tenant = tenantOf(ctx);
      const name = checkName('deployment', req.name, 'name');
      const deployment = await store.transaction((tx) => updateDeployment(tx, tenant, name, requireSpec(req.spec), req.expectedGeneration, deps.now()));
      bus.publish({ type: 'upserted', deployment, reason: 'spec updated' });
      return { deployment };
    }),

    deleteDeployment: unary<pb.DeleteDeploymentRequest, pb.DeleteDeploymentResponse>({ scope: 'models:write' }, async (req, ctx) => {
      const tenant = tenantOf(ctx);
      const name = checkName('deployment', req.name, 'name');
      const deployment = await store.transaction((tx) => deleteDeployment(tx, tenant, name));
      bus.publish({ type: 'deleted', deployment, reason: 'deleted' });
      return {};
    }),

    getDeployment: unary<pb.GetDeploymentRequest, pb.GetDeploymentResponse>({ scope: 'models:read' }, async (req, ctx) => ({
      deployment: await getDeployment(store, tenantOf(ctx), checkName('deployment', req.name, 'name')),
    })),

    listDeployments: unary<pb.ListDeploymentsRequest, pb.ListDeploymentsResponse>({ scope: 'models:read' }, async (req, ctx) => {
      if (req.model !== '') checkName('model', req.model, 'model');
      return listDeployments(store, tenantOf(ctx), req.model, { size: pageSize(req.pageSize), token: req.pageToken });
    }),

    watchDeployments: serverStreaming<pb.WatchDeploymentsRequest, pb.WatchDeploymentsResponse>({ scope: 'models:read' }, (req, ctx) =>
      watch(deps, req, ctx),
    ),
  };
}
