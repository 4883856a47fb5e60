import { humanBytes } from './models-report.js';
import type { Settings } from '../settings.js';

export interface Progress {
  update(done: number): void;
  end(): void;
}

/** A one-line progress bar on stderr, only on a terminal and never with --json. */
export function progress(settings: Settings, label: string, total: number): Progress {
  if (settings.json || !process.stderr.isTTY) return { update: () => undefined, end: () => undefined };
  let last = -1;
  const draw = (done: number): void => {
    const pct = total === 0 ? 100 : Math.floor((done / total) * 100);
    if (pct === last) return;
    last = pct;
    const width = 30;
    const filled = Math.round((pct / 100) * width);
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
    process.stderr.write(`\r${label} ${bar} ${String(pct).padStart(3)}% ${humanBytes(done)}/${humanBytes(total)}`);
  };
  return { update: draw, end: () => process.stderr.write('\n') };
}
