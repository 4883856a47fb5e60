import { initTelemetry } from '@quanta/telemetry';
import { healthTargets, loadMonitoringConfigOrExit } from './config.js';
import { startMonitoringServer } from './server/monitoring-server.js';

const config = loadMonitoringConfigOrExit();
const telemetry = initTelemetry({ serviceName: 'monitoring', serviceVersion: '0.1.0' });
const server = await startMonitoringServer(config, { telemetry, targets: healthTargets(config) });
// Registered before service-kit's handler, so the endless WatchAlerts streams end first.
process.once('SIGTERM', () => server.endStreams());
process.once('SIGINT', () => server.endStreams());
server.service.handleSignals();
