export { DDSketch, DEFAULT_RELATIVE_ACCURACY, createMapping } from './core/dd-sketch.js';
export { Aggregate } from './core/aggregate.js';
export type { Sample } from './core/sample.js';
export { createWindowStore } from './core/window-store.js';
export type { SecondSpan, Series, WindowStore, WindowStoreOptions } from './core/window-store.js';
export { resolveSpan } from './core/span.js';
export type { SpanRequest } from './core/span.js';
export { modelStats, timeSeries, topModels } from './core/queries.js';
export { validateRecord } from './core/validate.js';
export { createAlertEngine } from './core/alerts.js';
export type { AlertEngine, AlertListener } from './core/alerts.js';
export { createHealthBoard } from './core/health-board.js';
export type { HealthBoard, HealthBoardOptions } from './core/health-board.js';
export {
  healthTargets,
  loadMonitoringConfig,
  loadMonitoringConfigOrExit,
  monitoringConfig,
  monitoringConfigSchema,
} from './config.js';
export type { HealthTarget, MonitoringConfig } from './config.js';
export { startMonitoringServer } from './server/monitoring-server.js';
export type { MonitoringServer, MonitoringServerOptions } from './server/monitoring-server.js';
export { MONITORING_ACCESS } from './server/access.js';
