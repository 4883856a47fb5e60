/** CPU seconds this process has used (all its threads, user + system). */
export function cpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/**
 * ops per CPU-second of `fn`, after a warm-up, over at least `seconds` of CPU time in batches (the
 * python side measures the same way, with time.process_time). CPU time, not wall time: on a shared
 * machine other processes' load then does not decide the result. It includes V8's GC threads.
 */
export function opsPerSecond(fn: () => unknown, seconds: number): number {
  for (let i = 0; i < 200; i++) fn();
  let n = 0;
  const start = cpuSeconds();
  for (;;) {
    for (let i = 0; i < 200; i++) fn();
    n += 200;
    const elapsed = cpuSeconds() - start;
    if (elapsed >= seconds) return n / elapsed;
  }
}

/** A GitHub-flavoured markdown table. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export function formatRate(value: number): string {
  return value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(1);
}
