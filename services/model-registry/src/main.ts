import { setFlagsFromString } from 'node:v8';
import { ConfigError } from '@quanta/service-kit';
import { initTelemetry } from '@quanta/telemetry';
import { loadRegistryConfigOrExit } from './config.js';
import { startRegistryServer } from './server/registry-server.js';

// V8 sizes the old generation's limit from the live heap (~40 MB here: tsx, PGlite, OpenTelemetry,
// descriptors), and counts the 1 MiB buffers of a transfer against it: the young generation lets
// ~32 MB of them pile up before a scavenge, so with V8's default growth (+10-50%) every few dozen MB
// streamed started a full mark-compact of the whole heap (40-65% of the registry's CPU, 100+ per GiB).
// Growing the limit by 100% of the live heap (~40 MB of headroom) lets the scavenges free those
// buffers first: no mark-compacts on download and a few per GiB on upload, 1.5-2x the throughput.
// Memory: the download's buffers are short-lived (two reused read buffers, at most two chunks
// queued), so it grows by a few MiB; the upload, whose messages grpc-js reads up to 16 ahead,
// 70-80 MiB at 1 GiB (tools/bench/README.md). QUANTA_REGISTRY_HEAP_GROWING_PERCENT overrides it
// (read at each GC, so setting it here takes effect); 0 keeps V8's default.
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
