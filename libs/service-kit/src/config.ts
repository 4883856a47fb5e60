/**
 * Typed configuration from flags and QUANTA_* environment variables: flags win over the
 * environment, the environment over defaults. Every problem is collected and reported at once.
 */

export type FieldType = 'int' | 'port' | 'string' | 'bool' | 'duration' | 'enum' | 'list';

interface FieldSpec<T> {
  readonly type: FieldType;
  /** Environment variable, e.g. `QUANTA_CRYPTO_PORT`; none when omitted. */
  readonly env?: string;
  /** Flag name without dashes; the kebab-case of the key when omitted. */
  readonly flag?: string;
  readonly doc: string;
  readonly default?: T;
  readonly required?: boolean;
  /** Placeholder shown in help, e.g. `<port>`. */
  readonly hint: string;
  /** Parses one raw string; returns an error phrase (`is not a port number`) on failure. */
  parse(raw: string): { value: T } | { error: string };
  /** Renders the default for help. */
  show(value: T): string;
}

/** A field of a schema; `T` is the type of the loaded value. */
export interface Field<T> extends FieldSpec<T> {
  readonly __value?: T; // phantom: carries the value type
}

export type ConfigSchema = Record<string, Field<unknown>>;
type ValueOf<F> = F extends Field<infer T> ? T : never;
/** Marks a field whose key may be left out of a config written by hand (tests): added later, optional. */
export interface OptionalKey {
  readonly optionalKey: true;
}
type OptionalKeys<S> = { [K in keyof S]: S[K] extends OptionalKey ? K : never }[keyof S];
export type ConfigOf<S extends ConfigSchema> = { -readonly [K in Exclude<keyof S, OptionalKeys<S>>]: ValueOf<S[K]> } & {
  -readonly [K in OptionalKeys<S>]?: ValueOf<S[K]>;
};

interface Common {
  env?: string;
  flag?: string;
  doc: string;
}
type WithDefault<T> = Common & { default: T };
type Required = Common & { required: true };

function field<T>(spec: Omit<FieldSpec<T>, 'hint'> & { hint?: string }, hint: string): Field<T> {
  return { ...spec, hint: spec.hint ?? hint };
}

const INT = /^[-+]?\d+$/;

function parseInt(raw: string, min: number, max: number): { value: number } | { error: string } {
  const text = raw.trim();
  if (!INT.test(text)) return { error: 'is not an integer' };
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min || value > max) return { error: `is out of range (${min}-${max})` };
  return { value };
}

const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;
const DURATION = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `250ms`, `30s`, `5m`, `1h30m`, `7d` → milliseconds; `0` alone is also accepted. */
export function parseDuration(raw: string): number | undefined {
  const text = raw.trim();
  if (text === '0') return 0;
  if (!DURATION.test(text)) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(DURATION_PART)) total += Number(amount) * (UNIT_MS[unit ?? ''] ?? 0);
  return Math.round(total);
}

export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

const TRUE = new Set(['true', '1', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'no', 'off']);

/** Builders of schema fields; each infers the value type (`T | undefined` without a default). */
export const fields = {
  int<O extends (WithDefault<number> | Required | Common) & { min?: number; max?: number }>(o: O) {
    const min = o.min ?? Number.MIN_SAFE_INTEGER;
    const max = o.max ?? Number.MAX_SAFE_INTEGER;
    return field<number>(
      { ...o, type: 'int', parse: (raw) => parseInt(raw, min, max), show: String },
      '<n>',
    ) as FieldOf<O, number>;
  },
  port<O extends WithDefault<number> | Required | Common>(o: O) {
    return field<number>(
      {
        ...o,
        type: 'port',
        parse: (raw) => {
          const r = parseInt(raw, 0, 65535);
          return 'value' in r ? r : { error: 'is not a port number (0-65535)' };
        },
        show: String,
      },
      '<port>',
    ) as FieldOf<O, number>;
  },
  string<O extends WithDefault<string> | Required | Common>(o: O) {
    return field<string>(
      {
        ...o,
        type: 'string',
        parse: (raw) => (raw === '' ? { error: 'is empty' } : { value: raw }),
        show: (v) => JSON.stringify(v),
      },
      '<text>',
    ) as FieldOf<O, string>;
  },
  bool<O extends WithDefault<boolean> | Common>(o: O) {
    return field<boolean>(
      {
        ...o,
        type: 'bool',
        parse: (raw) => {
          const text = raw.trim().toLowerCase();
          if (TRUE.has(text)) return { value: true };
          if (FALSE.has(text)) return { value: false };
          return { error: 'is not a boolean (true/false)' };
        },
        show: String,
      },
      '',
    ) as FieldOf<O, boolean>;
  },
  /** A duration in milliseconds, written `250ms`, `30s`, `5m`, `1h30m`. */
  duration<O extends WithDefault<number> | Required | Common>(o: O) {
    return field<number>(
      {
        ...o,
        type: 'duration',
        parse: (raw) => {
          const value = parseDuration(raw);
          return value === undefined ? { error: 'is not a duration (like 500ms, 30s, 5m, 1h)' } : { value };
        },
        show: formatDuration,
      },
      '<duration>',
    ) as FieldOf<O, number>;
  },
  enum<const V extends string, O extends (WithDefault<NoInfer<V>> | Required | Common) & { values: readonly V[] }>(
    o: O & { values: readonly V[] },
  ) {
    return field<V>(
      {
        ...o,
        type: 'enum',
        parse: (raw) => {
          const text = raw.trim();
          return (o.values as readonly string[]).includes(text)
            ? { value: text as V }
            : { error: `is not one of ${o.values.join(', ')}` };
        },
        show: String,
      },
      `<${o.values.join('|')}>`,
    ) as FieldOf<O, V>;
  },
  /** Comma-separated; blanks around items and empty items are dropped. */
  list<O extends WithDefault<readonly string[]> | Required | Common>(o: O) {
    return field<readonly string[]>(
      {
        ...o,
        type: 'list',
        parse: (raw) => ({
          value: raw
            .split(',')
            .map((s) => s.trim())
            .filter((s) => s !== ''),
        }),
        show: (v) => v.join(','),
      },
      '<a,b,...>',
    ) as FieldOf<O, readonly string[]>;
  },
};

type FieldOf<O, T> = O extends { default: unknown } | { required: true } ? Field<T> : Field<T | undefined>;

/** Every problem found while loading a configuration, one per line. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Thrown by `loadConfig` when the arguments ask for `--help`; its message is the help text. */
export class HelpRequested extends Error {
  constructor(readonly help: string) {
    super(help);
    this.name = 'HelpRequested';
  }
}

const kebab = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const flagOf = (key: string, f: Field<unknown>): string => f.flag ?? kebab(key);

export interface ConfigSource {
  /** Arguments after the program name (default `process.argv.slice(2)`). */
  argv?: readonly string[];
  env?: NodeJS.ProcessEnv;
  /** Program name for the help text. */
  program?: string;
  /** Checks across fields, run when every field parsed; each returned string is one more problem. */
  check?: (config: Record<string, unknown>) => readonly string[];
}

export function loadConfig<S extends ConfigSchema>(schema: S, source: ConfigSource = {}): ConfigOf<S> {
  const argv = source.argv ?? process.argv.slice(2);
  const env = source.env ?? process.env;
  const problems: string[] = [];

  const byFlag = new Map<string, string>();
  for (const [key, f] of Object.entries(schema)) byFlag.set(flagOf(key, f), key);

  // Raw flag values by key; the last occurrence wins, like most CLIs.
  const fromFlags = new Map<string, { raw: string; label: string }>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--help' || arg === '-h') throw new HelpRequested(renderHelp(schema, { program: source.program }));
    const match = /^--([a-z0-9][a-z0-9-]*)(?:=(.*))?$/s.exec(arg);
    if (match === null) {
      problems.push(`unexpected argument "${arg}"`);
      continue;
    }
    const name = match[1] ?? '';
    let inline = match[2];
    let key = byFlag.get(name);
    if (key === undefined && name.startsWith('no-') && inline === undefined) {
      const positive = byFlag.get(name.slice(3));
      if (positive !== undefined && schema[positive]?.type === 'bool') {
        key = positive;
        inline = 'false';
      }
    }
    const f = key === undefined ? undefined : schema[key];
    if (key === undefined || f === undefined) {
      problems.push(`unknown flag --${name}`);
      // Its value, if it has one, is not a second problem.
      if (inline === undefined && argv[i + 1] !== undefined && !(argv[i + 1] ?? '').startsWith('--')) i++;
      continue;
    }
    if (inline === undefined) {
      if (f.type === 'bool') inline = 'true';
      else {
        const next = argv[i + 1];
        if (next === undefined || next.startsWith('--')) {
          problems.push(`--${name} needs a value ${f.hint}`.trimEnd());
          continue;
        }
        inline = next;
        i++;
      }
    }
    fromFlags.set(key, { raw: inline, label: `--${name}` });
  }

  const config: Record<string, unknown> = {};
  for (const [key, f] of Object.entries(schema)) {
    const flagged = fromFlags.get(key);
    const envRaw = f.env === undefined ? undefined : env[f.env];
    const given = flagged ?? (envRaw === undefined || envRaw === '' ? undefined : { raw: envRaw, label: f.env ?? key });
    if (given === undefined) {
      if (f.required === true && f.default === undefined) {
        problems.push(`${[f.env, `--${flagOf(key, f)}`].filter(Boolean).join(' or ')} is required: ${f.doc}`);
      }
      config[key] = f.default;
      continue;
    }
    const parsed = f.parse(given.raw);
    if ('error' in parsed) problems.push(`${given.label}: ${JSON.stringify(given.raw)} ${parsed.error}`);
    else config[key] = parsed.value;
  }
  if (problems.length === 0 && source.check !== undefined) problems.push(...source.check(config));
  if (problems.length > 0) throw new ConfigError(problems);
  return config as ConfigOf<S>;
}

/** `--help` text: one line per field with its flag, environment variable, doc and default. */
export function renderHelp(schema: ConfigSchema, options: { program?: string; description?: string } = {}): string {
  const rows = Object.entries(schema).map(([key, f]) => {
    const left = `--${flagOf(key, f)}${f.hint === '' ? '' : ` ${f.hint}`}`;
    const tail = f.default !== undefined ? ` (default ${f.show(f.default)})` : f.required === true ? ' (required)' : '';
    return { left, env: f.env ?? '', doc: `${f.doc}${tail}` };
  });
  const leftWidth = Math.max(0, ...rows.map((r) => r.left.length));
  const envWidth = Math.max(0, ...rows.map((r) => r.env.length));
  const lines = [`Usage: ${options.program ?? 'service'} [flags]`, ''];
  if (options.description !== undefined) lines.push(options.description, '');
  lines.push('Flags (each also read from the environment variable shown; flags win):');
  for (const r of rows) lines.push(`  ${r.left.padEnd(leftWidth)}  ${r.env.padEnd(envWidth)}  ${r.doc}`);
  lines.push(`  ${'--help'.padEnd(leftWidth)}  ${''.padEnd(envWidth)}  show this help`);
  return lines.join('\n') + '\n';
}

/**
 * For a service's main: loads the config, or prints the help (exit 0) or the problems (exit 2).
 */
export function loadConfigOrExit<S extends ConfigSchema>(schema: S, source: ConfigSource = {}): ConfigOf<S> {
  try {
    return loadConfig(schema, source);
  } catch (error: unknown) {
    if (error instanceof HelpRequested) {
      process.stdout.write(error.help);
      process.exit(0);
    }
    if (error instanceof ConfigError) {
      process.stderr.write(`${source.program ?? 'service'}: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}
