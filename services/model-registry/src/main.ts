import { initTelemetry } from '@quanta/telemetry';
import { loadRegistryConfigOrExit } from './config.js';
import { startRegistryServer } from './server/registry-server.js';

const config = loadRegistryConfigOrExit();
const telemetry = initTelemetry({ serviceName: 'model-registry', serviceVersion: '0.1.0' });
const server = await startRegistryServer(config, { telemetry });
server.service.handleSignals();
