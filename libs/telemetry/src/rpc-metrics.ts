import type { Histogram, Meter } from '@opentelemetry/api';

// Buckets from the OpenTelemetry RPC semantic conventions (seconds).
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

export interface RpcInstruments {
  readonly serverDuration: Histogram;
  readonly clientDuration: Histogram;
}

// Instruments are created once per Meter; a Meter from the SDK is cached by its provider.
const byMeter = new WeakMap<Meter, RpcInstruments>();

export function rpcInstruments(meter: Meter): RpcInstruments {
  let instruments = byMeter.get(meter);
  if (!instruments) {
    instruments = {
      serverDuration: meter.createHistogram('rpc.server.call.duration', {
        description: 'Duration of incoming gRPC calls, from the request headers to the status',
        unit: 's',
        advice: { explicitBucketBoundaries: DURATION_BUCKETS },
      }),
      clientDuration: meter.createHistogram('rpc.client.call.duration', {
        description: 'Duration of outgoing gRPC calls, from the start to the status',
        unit: 's',
        advice: { explicitBucketBoundaries: DURATION_BUCKETS },
      }),
    };
    byMeter.set(meter, instruments);
  }
  return instruments;
}

/** Seconds elapsed since `startNs` (from process.hrtime.bigint()). */
export function secondsSince(startNs: bigint): number {
  return Number(process.hrtime.bigint() - startNs) / 1e9;
}
