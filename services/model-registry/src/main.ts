import { setFlagsFromString } from 'node:v8';
import { initTelemetry } from '@quanta/telemetry';
import { loadRegistryConfigOrExit } from './config.js';
import { startRegistryServer } from './server/registry-server.js';

// Streaming a model allocates a few 1 MiB buffers per MiB (HTTP/2 frames, gRPC messages, cipher
// output), and V8 counts them against a heap limit sized from this process's small JS heap (~40 MB):
// with V8's default growth the registry runs a full mark-compact every ~30 MB streamed, 40-65% of its
// CPU in the 1 GiB benchmark. QUANTA_REGISTRY_HEAP_GROWING_PERCENT=400 (read at each GC, so setting it
// here takes effect) cuts those ~10x and doubles to triples throughput (tools/bench/README.md), but lets
// ~30 MiB more of dead buffers wait: a 128 MiB push and pull then peaks at 84-101 MiB above the
// start, at the edge of the 100 MB bound, so it is off by default (unset or 0: V8's default).
const heapGrowingPercent = Number(process.env['QUANTA_REGISTRY_HEAP_GROWING_PERCENT'] ?? '0');
if (Number.isInteger(heapGrowingPercent) && heapGrowingPercent > 0) setFlagsFromString(`--heap-growing-percent=${heapGrowingPercent}`);

const config = loadRegistryConfigOrExit();
const telemetry = initTelemetry({ serviceName: 'model-registry', serviceVersion: '0.1.0' });
const server = await startRegistryServer(config, { telemetry });
// Registered before service-kit's handler, so watch streams end before it waits for calls to finish.
process.once('SIGTERM', () => server.beginStop());
process.once('SIGINT', () => server.beginStop());
server.service.handleSignals();
