import type { AccessTable } from '@quanta/service-kit';

const S = '/quanta.registry.v1.RegistryService';

/**
 * The registry's access matrix, enforced by service-kit before each handler runs. Models and
 * deployments are per tenant: another tenant's answers NOT_FOUND, lists show the caller's own. A
 * new RPC must be added here, or the service refuses to start.
 */
export const REGISTRY_ACCESS: AccessTable = {
  [`${S}/CreateModel`]: { scope: 'models:write', tenant: 'own' },
  [`${S}/GetModel`]: { scope: 'models:read', tenant: 'own' },
  [`${S}/ListModels`]: { scope: 'models:read', tenant: 'own' },
  [`${S}/UpdateModel`]: { scope: 'models:write', tenant: 'own' },
  [`${S}/DeleteModel`]: { scope: 'models:write', tenant: 'own' },
  [`${S}/UploadVersion`]: { scope: 'models:write', tenant: 'own' },
  [`${S}/GetVersion`]: { scope: 'models:read', tenant: 'own' },
  [`${S}/ListVersions`]: { scope: 'models:read', tenant: 'own' },
  [`${S}/UpdateVersion`]: { scope: 'models:write', tenant: 'own' },
  [`${S}/DownloadVersion`]: { scope: 'models:read', tenant: 'own' },
  [`${S}/CompressVersion`]: { scope: 'models:write', tenant: 'own' },
  [`${S}/SetAlias`]: { scope: 'models:write', tenant: 'own' },
  [`${S}/DeleteAlias`]: { scope: 'models:write', tenant: 'own' },
  [`${S}/CreateDeployment`]: { scope: 'models:write', tenant: 'own' },
  [`${S}/UpdateDeployment`]: { scope: 'models:write', tenant: 'own' },
  [`${S}/DeleteDeployment`]: { scope: 'models:write', tenant: 'own' },
  [`${S}/GetDeployment`]: { scope: 'models:read', tenant: 'own' },
  [`${S}/ListDeployments`]: { scope: 'models:read', tenant: 'own' },
  // A tenant's token watches its own; `all_tenants` (inference replicas) needs `admin` too.
  [`${S}/WatchDeployments`]: { scope: 'models:read', tenant: 'own' },
  // Every tenant's stored files, wrapped under the registry's own key: a platform operation.
  [`${S}/RewrapDataKeys`]: { scope: 'admin', tenant: 'any' },
  [`${S}/GetDataKeyStatus`]: { scope: 'admin', tenant: 'any' },
  // The caller's tenant's events; an `admin` token sees every tenant's.
  [`${S}/ListAuditEvents`]: { scope: 'models:read', tenant: 'own' },
};
