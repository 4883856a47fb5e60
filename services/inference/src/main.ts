import { initTelemetry } from '@quanta/telemetry';
import { loadInferenceConfigOrExit } from './config.js';
import type { SyncFactory } from './server/inference-server.js';
import { INFERENCE_VERSION, startInferenceServer } from './server/inference-server.js';

const config = loadInferenceConfigOrExit();
const telemetry = initTelemetry({ serviceName: 'inference', serviceVersion: INFERENCE_VERSION });

// HOOK (registry sync, src/sync): with --watch / QUANTA_INFERENCE_WATCH=true this factory makes the
// sync that watches the registry at config.registryAddr and loads its deployments into the manager.
const sync: SyncFactory | undefined = undefined;

const server = await startInferenceServer(config, { telemetry, ...(sync === undefined ? {} : { sync }) });
// Registered before service-kit's handler, so the REST listener stops taking requests as gRPC does.
process.once('SIGTERM', () => server.beginStop());
process.once('SIGINT', () => server.beginStop());
server.service.handleSignals();
