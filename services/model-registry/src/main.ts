import { setFlagsFromString } from 'node:v8';
import { ConfigError } from '@quanta/service-kit';
import { initTelemetry } from '@quanta/telemetry';
import { loadRegistryConfigOrExit } from './config.js';
import { startRegistryServer } from './server/registry-server.js';

// V8 sizes the old generation's limit from the live heap and counts the 1 MiB buffers of a transfer
// against it. With its default growth, the buffers that pile up in the young generation between two
// scavenges cross that limit, so a byte stream keeps starting full mark-compacts of the whole heap.
// Growing the limit by 100% of the live heap leaves more headroom than a scavenge cycle fills, so
// the scavenges free those buffers first; the cost is a larger heap during uploads, whose messages
// grpc-js reads ahead. Figures and the other settings tried: docs/decisions/registry-transfer-memory.md.
// QUANTA_REGISTRY_HEAP_GROWING_PERCENT overrides it (read at each GC, so setting it here takes
// effect); 0 keeps V8's default.
const heapGrowingPercent = Number(process.env['QUANTA_REGISTRY_HEAP_GROWING_PERCENT'] ?? '100');
if (Number.isInteger(heapGrowingPercent) && heapGrowingPercent > 0)
  setFlagsFromString(`--heap-growing-percent=${heapGrowingPercent}`);

const config = loadRegistryConfigOrExit();
const telemetry = initTelemetry({ serviceName: 'model-registry', serviceVersion: '0.1.0' });
// Settings that can only be checked against what they name (the blob bucket) fail here, reported
// as a bad flag is: one line each and exit code 2.
const server = await startRegistryServer(config, { telemetry }).catch((error: unknown) => {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`model-registry: ${error.message}\n`);
  process.exit(2);
});
// Registered before service-kit's handler, so watch streams end before it waits for calls to finish.
process.once('SIGTERM', () => server.beginStop());
process.once('SIGINT', () => server.beginStop());
server.service.handleSignals();
