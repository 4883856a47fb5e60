import type { monitoring as pb } from '@quanta/contracts';
import type { Sample } from './sample.js';
import { MAX_FUTURE_MS } from './sample.js';

const MAX_NAME = 256;
const MAX_STATUS_CODE = 16; // UNAUTHENTICATED, the last gRPC status code

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const ROUTES = new Set(['primary', 'canary', 'shadow']);

function checkDuration(name: string, value: bigint): string | undefined {
  if (value < 0n) return `${name} is negative (${value})`;
  if (value > MAX_SAFE) return `${name} is too large (${value})`;
  return undefined;
}

/**
 * Checks one record against the server's clock and horizon: a Sample to keep, or the reason it
 * was rejected (a sentence naming the field).
 */
export function validateRecord(r: pb.InferenceRecord, nowMs: number, oldestMs: number): Sample | string {
  if (r.tenant === '') return 'tenant is missing';
  if (r.tenant.length > MAX_NAME) return `tenant is longer than ${MAX_NAME} characters`;
  if (r.model === '') return 'model is missing';
  if (r.model.length > MAX_NAME) return `model is longer than ${MAX_NAME} characters`;
  if (r.version.length > MAX_NAME) return `version is longer than ${MAX_NAME} characters`;
  if (r.statusCode > MAX_STATUS_CODE)
    return `status_code ${r.statusCode} is not a gRPC status code (0-${MAX_STATUS_CODE})`;
  const bad =
    checkDuration('queue_us', r.queueUs) ??
    checkDuration('compute_us', r.computeUs) ??
    checkDuration('total_us', r.totalUs);
  if (bad !== undefined) return bad;
  if (r.batchSize < 1) return 'batch_size is 0; it must be at least 1 (1 without batching)';
  if (r.time === undefined) return 'time is missing';
  const t = r.time.getTime();
  if (!Number.isFinite(t)) return 'time is not a valid timestamp';
  if (t > nowMs + MAX_FUTURE_MS) {
    const ahead = Math.round((t - nowMs) / 1000);
    return `time ${r.time.toISOString()} is ${ahead} s in the future (at most ${MAX_FUTURE_MS / 1000} s allowed)`;
  }
  const route = r.route === '' ? 'primary' : r.route;
  if (!ROUTES.has(route)) return `route "${r.route}" is not one of primary, canary, shadow`;
  const shadow = r.shadow;
  if (shadow !== undefined) {
    if (route !== 'shadow') return `shadow is set on a record whose route is ${route}, not shadow`;
    if (!(shadow.maxAbsError >= 0))
      return `shadow.max_abs_error is ${shadow.maxAbsError}; it must be at least 0 (Infinity for mismatched outputs)`;
    if (shadow.top1AgreedRows > shadow.top1Rows)
      return `shadow.top1_agreed_rows ${shadow.top1AgreedRows} is above shadow.top1_rows ${shadow.top1Rows}`;
  }
  if (r.cacheHit && r.cacheMiss) return 'cache_hit and cache_miss are both set';
  if (t < oldestMs)
    return (
      `time ${r.time.toISOString()} is older than the horizon ` +
      `(data is kept from ${new Date(oldestMs).toISOString()})`
    );
  return {
    tenant: r.tenant,
    model: r.model,
    version: r.version,
    statusCode: r.statusCode,
    queueUs: Number(r.queueUs),
    computeUs: Number(r.computeUs),
    totalUs: Number(r.totalUs),
    batchSize: r.batchSize,
    bytesIn: Number(r.bytesIn),
    bytesOut: Number(r.bytesOut),
    timeMs: t,
    route,
    cacheHit: r.cacheHit,
    cacheMiss: r.cacheMiss,
    shadow:
      shadow === undefined
        ? undefined
        : { maxAbsError: shadow.maxAbsError, top1Rows: shadow.top1Rows, top1AgreedRows: shadow.top1AgreedRows },
  };
}
