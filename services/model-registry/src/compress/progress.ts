// Progress messages of a CompressVersion call, streamed while a measuring step runs.
import type { registry as pb } from '@quanta/contracts';
import type { StepProgress } from './measure.js';

export const progress = (phase: string, fraction: number): pb.CompressVersionResponse => ({
  event: { $case: 'progress', value: { phase, fraction } },
});

/**
 * Runs one measuring step and streams its progress as it goes (at most one message per 2% of the
 * step, and never more than the client takes: only the latest fraction is kept). A cancelled call
 * stops the step at its next run.
 */
export async function* tracked<T>(
  phase: string,
  start: number,
  span: number,
  signal: AbortSignal,
  run: (step: StepProgress) => Promise<T>,
): AsyncGenerator<pb.CompressVersionResponse, T, undefined> {
  yield progress(phase, start);
  let latest: number | undefined;
  let done = false;
  let wake: (() => void) | undefined;
  const task = run((fraction) => {
    signal.throwIfAborted();
    latest = fraction;
    wake?.();
  }).finally(() => {
    done = true;
    wake?.();
  });
  // Seen by the `await task` below; never unhandled meanwhile.
  task.catch(() => undefined);
  let sent = 0;
  while (!done) {
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
    wake = undefined;
    if (latest !== undefined && latest - sent >= 0.02) {
      sent = latest;
      yield progress(phase, start + span * latest);
    }
  }
  return await task;
}
