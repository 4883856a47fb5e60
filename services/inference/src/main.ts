import { initTelemetry } from '@quanta/telemetry';
import { loadInferenceConfigOrExit } from './config.js';
import { INFERENCE_VERSION, startInferenceServer } from './server/inference-server.js';
import { createSyncWiring } from './sync/index.js';

const config = loadInferenceConfigOrExit();
const telemetry = initTelemetry({ serviceName: 'inference', serviceVersion: INFERENCE_VERSION });

// The registry sync (src/sync): with --watch / QUANTA_INFERENCE_WATCH=true it watches the registry at
// config.registryAddr and loads its deployments into the manager; with QUANTA_MONITORING_ADDR every
// request leaves a record in monitoring. Both use the service token.
const wiring = createSyncWiring(config);

const server = await startInferenceServer(config, { telemetry, ...wiring });
// Registered before service-kit's handler, so the REST listener stops taking requests as gRPC does.
process.once('SIGTERM', () => server.beginStop());
process.once('SIGINT', () => server.beginStop());
server.service.handleSignals();
