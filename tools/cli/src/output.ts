/** What a command prints: JSON with `--json` (one document on stdout), text otherwise. */
export interface Output {
  /** Prints `value` as JSON with --json, or `text()` otherwise. */
  result(value: unknown, text: () => string): void;
  /** Progress and hints for people; never printed with --json, always to stderr. */
  info(message: string): void;
}

export function createOutput(
  json: boolean,
  stdout: NodeJS.WritableStream = process.stdout,
  stderr: NodeJS.WritableStream = process.stderr,
): Output {
  return {
    result(value, text) {
      stdout.write(json ? `${toJson(value)}\n` : `${text()}\n`);
    },
    info(message) {
      if (!json) stderr.write(`${message}\n`);
    },
  };
}

/** JSON.stringify that also writes bigint (int64 fields) and Buffers (bytes fields, as base64). */
export function toJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v: unknown) => {
      if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
      if (
        v !== null &&
        typeof v === 'object' &&
        (v as { type?: unknown }).type === 'Buffer' &&
        Array.isArray((v as { data?: unknown }).data)
      ) {
        return Buffer.from((v as { data: number[] }).data).toString('base64');
      }
      return v;
    },
    2,
  );
}

/** Formats rows as an aligned text table. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}
