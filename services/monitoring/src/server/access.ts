import type { AccessTable } from '@quanta/service-kit';

const S = '/quanta.monitoring.v1.MonitoringService';

/**
 * Monitoring's access matrix, enforced by service-kit before each handler runs. Stats and alert
 * rules are per tenant: another tenant's rule answers NOT_FOUND, stats and lists show the caller's
 * own. A new RPC must be added here, or the service refuses to start.
 */
export const MONITORING_ACCESS: AccessTable = {
  // Records carry their own tenant (inference reports for every tenant with one platform token):
  // the platform scope `monitoring:write`, never a tenant's.
  [`${S}/Ingest`]: { scope: 'monitoring:write', tenant: 'any' },
  [`${S}/GetModelStats`]: { scope: 'monitoring:read', tenant: 'own' },
  [`${S}/GetTimeSeries`]: { scope: 'monitoring:read', tenant: 'own' },
  [`${S}/TopModels`]: { scope: 'monitoring:read', tenant: 'own' },
  [`${S}/GetAlertRule`]: { scope: 'monitoring:read', tenant: 'own' },
  [`${S}/ListAlertRules`]: { scope: 'monitoring:read', tenant: 'own' },
  [`${S}/ListAlerts`]: { scope: 'monitoring:read', tenant: 'own' },
  [`${S}/WatchAlerts`]: { scope: 'monitoring:read', tenant: 'own' },
  // Changing the tenant's rules is a write of its own: a read-only token changes nothing.
  [`${S}/CreateAlertRule`]: { scope: 'alerts:write', tenant: 'own' },
  [`${S}/UpdateAlertRule`]: { scope: 'alerts:write', tenant: 'own' },
  [`${S}/DeleteAlertRule`]: { scope: 'alerts:write', tenant: 'own' },
  // Drift baselines are written like alert rules; drift is read like statistics.
  [`${S}/SetDriftBaseline`]: { scope: 'alerts:write', tenant: 'own' },
  [`${S}/DeleteDriftBaseline`]: { scope: 'alerts:write', tenant: 'own' },
  [`${S}/GetDriftBaseline`]: { scope: 'monitoring:read', tenant: 'own' },
  [`${S}/GetDrift`]: { scope: 'monitoring:read', tenant: 'own' },
  // The services' health, the same for every tenant.
  [`${S}/GetHealthBoard`]: { scope: 'monitoring:read', tenant: 'none' },
  // The caller's tenant's events; an `admin` token sees every tenant's.
  [`${S}/ListAuditEvents`]: { scope: 'monitoring:read', tenant: 'own' },
};
