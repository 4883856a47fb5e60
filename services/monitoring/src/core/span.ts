import { invalidArgument } from '@quanta/service-kit';
import type { SecondSpan } from './window-store.js';

/** What a request asks for: the last `windowMs` up to now, or an explicit [startMs, endMs). */
export type SpanRequest = { readonly windowMs: number } | { readonly startMs: number; readonly endMs?: number };

/**
 * Turns a request's window or range into whole seconds, clamped to the horizon. The current
 * second counts as part of "the last N seconds", so a record that just arrived is seen at once.
 */
export function resolveSpan(
  request: SpanRequest | undefined,
  nowMs: number,
  horizonSeconds: number,
  defaultWindowMs = 300_000,
): SecondSpan {
  const nowSecond = Math.floor(nowMs / 1000);
  const oldest = nowSecond - horizonSeconds + 1;
  const req = request ?? { windowMs: defaultWindowMs };
  let start: number;
  let end: number;
  if ('windowMs' in req) {
    if (!(req.windowMs > 0)) throw invalidArgument(`window must be positive, got ${req.windowMs / 1000} s`);
    end = nowSecond + 1;
    start = end - Math.ceil(req.windowMs / 1000);
  } else {
    const endMs = req.endMs ?? nowMs;
    if (!(endMs > req.startMs)) {
      throw invalidArgument(
        `range is empty or inverted: start ${new Date(req.startMs).toISOString()} ` +
          `is not before end ${new Date(endMs).toISOString()}`,
      );
    }
    start = Math.floor(req.startMs / 1000);
    end = Math.ceil(endMs / 1000);
  }
  if (start < oldest) start = oldest; // clamped: the response's start_time says where data starts
  if (end <= start) {
    throw invalidArgument(
      `range ends before the horizon (data is kept for ${horizonSeconds} s, ` +
        `from ${new Date(oldest * 1000).toISOString()})`,
    );
  }
  return { start, end };
}
