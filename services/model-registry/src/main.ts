import { setFlagsFromString } from 'node:v8';
import { initTelemetry } from '@quanta/telemetry';
import { loadRegistryConfigOrExit } from './config.js';
import { startRegistryServer } from './server/registry-server.js';

// Streaming a model allocates a few 1 MiB buffers per MiB (HTTP/2 frames, gRPC messages, cipher
// output), and V8 counts them against a heap limit sized from this process's small JS heap (~40 MB):
// with the default growth the registry ran a full mark-compact every ~30 MB streamed, 40-65% of
// its CPU time in the 1 GiB benchmark (tools/bench/README.md). Letting the limit grow 5x per cycle
// instead of ~1.5-2x cut those collections ~10x, with RSS growth still well under 100 MB there.
// Read at each GC, so setting it here (before any upload) takes effect; QUANTA_REGISTRY_HEAP_GROWING_PERCENT overrides, 0 keeps V8's default.
const heapGrowingPercent = Number(process.env['QUANTA_REGISTRY_HEAP_GROWING_PERCENT'] ?? '400');
if (Number.isInteger(heapGrowingPercent) && heapGrowingPercent > 0) setFlagsFromString(`--heap-growing-percent=${heapGrowingPercent}`);

const config = loadRegistryConfigOrExit();
const telemetry = initTelemetry({ serviceName: 'model-registry', serviceVersion: '0.1.0' });
const server = await startRegistryServer(config, { telemetry });
// Registered before service-kit's handler, so watch streams end before it waits for calls to finish.
process.once('SIGTERM', () => server.beginStop());
process.once('SIGINT', () => server.beginStop());
server.service.handleSignals();
