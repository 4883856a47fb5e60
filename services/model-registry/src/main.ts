import { initTelemetry } from '@quanta/telemetry';
import { loadRegistryConfigOrExit } from './config.js';
import { startRegistryServer } from './server/registry-server.js';

const config = loadRegistryConfigOrExit();
const telemetry = initTelemetry({ serviceName: 'model-registry', serviceVersion: '0.1.0' });
const server = await startRegistryServer(config, { telemetry });
// Registered before service-kit's handler, so watch streams end before it waits for calls to finish.
process.once('SIGTERM', () => server.beginStop());
process.once('SIGINT', () => server.beginStop());
server.service.handleSignals();
