import type { monitoring as pb } from '@quanta/contracts';
import { BIN_LIMIT } from '@quanta/monitoring-client';
import { MAX_FUTURE_MS } from './sample.js';

const MAX_NAME = 256;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Checks the statistics of a summary (not its labels or time): counts in range, moments finite,
 * bins in the binning InputSummary describes and holding exactly `count` values. The reason it is
 * refused (a sentence naming the field), or undefined.
 */
export function checkSummaryStatistics(s: pb.InputSummary): string | undefined {
  if (s.input === '') return 'input is missing (the name of the input summarized)';
  if (s.input.length > MAX_NAME) return `input is longer than ${MAX_NAME} characters`;
  if (s.count > MAX_SAFE) return `count is too large (${s.count})`;
  if (s.nanCount > MAX_SAFE) return `nan_count is too large (${s.nanCount})`;
  for (const [name, v] of [
    ['sum', s.sum],
    ['sum_squares', s.sumSquares],
    ['min', s.min],
    ['max', s.max],
  ] as const) {
    if (!Number.isFinite(v)) return `${name} is not a finite number (${v})`;
  }
  if (s.sumSquares < 0) return `sum_squares is negative (${s.sumSquares})`;
  if (s.count > 0n && s.min > s.max) return `min ${s.min} is above max ${s.max}`;
  if (s.bins.length > 2 * BIN_LIMIT + 1) return `${s.bins.length} bins; the binning has ${2 * BIN_LIMIT + 1}`;
  let inBins = 0n;
  for (const b of s.bins) {
    if (!Number.isInteger(b.index) || b.index < -BIN_LIMIT || b.index > BIN_LIMIT)
      return `bin index ${b.index} is outside -${BIN_LIMIT}..${BIN_LIMIT} (the binning InputSummary describes)`;
    inBins += b.count;
  }
  if (inBins !== s.count) return `the bins hold ${inBins} values but count is ${s.count}`;
  return undefined;
}

/**
 * Checks one summary of the Ingest stream against the server's clock and horizon: the reason it
 * was rejected, or undefined when it is kept.
 */
export function validateSummary(s: pb.InputSummary, nowMs: number, oldestMs: number): string | undefined {
  if (s.tenant === '') return 'tenant is missing';
  if (s.tenant.length > MAX_NAME) return `tenant is longer than ${MAX_NAME} characters`;
  if (s.model === '') return 'model is missing';
  if (s.model.length > MAX_NAME) return `model is longer than ${MAX_NAME} characters`;
  if (s.version.length > MAX_NAME) return `version is longer than ${MAX_NAME} characters`;
  if (s.deployment.length > MAX_NAME) return `deployment is longer than ${MAX_NAME} characters`;
  const bad = checkSummaryStatistics(s);
  if (bad !== undefined) return bad;
  if (s.time === undefined) return 'time is missing';
  const t = s.time.getTime();
  if (!Number.isFinite(t)) return 'time is not a valid timestamp';
  if (t > nowMs + MAX_FUTURE_MS) {
    const ahead = Math.round((t - nowMs) / 1000);
    return `time ${s.time.toISOString()} is ${ahead} s in the future (at most ${MAX_FUTURE_MS / 1000} s allowed)`;
  }
  if (t < oldestMs)
    return (
      `time ${s.time.toISOString()} is older than the horizon ` +
      `(data is kept from ${new Date(oldestMs).toISOString()})`
    );
  return undefined;
}
