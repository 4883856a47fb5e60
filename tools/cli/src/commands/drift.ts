import { readFile, readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { monitoring as pb } from '@quanta/contracts';
import { InputAccumulator, psiVerdict } from '@quanta/monitoring-client/input-summary';
import type { Command } from 'commander';
import { action } from '../action.js';
import { CliError } from '../errors.js';
import { readNpy } from '../npy.js';
import { table } from '../output.js';
import { parseWindow, withMonitoring } from './monitoring.js';

const seconds = (n: number) => ({ seconds: BigInt(n), nanos: 0 });
const num = (v: number) => (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : v.toFixed(4));

/** `START..END` (ISO times; END may be left out: now) → a TimeRange. */
export function parseRange(text: string): pb.TimeRange {
  const [start, end, ...rest] = text.split('..');
  const parse = (t: string, what: string): Date => {
    const d = new Date(t.trim());
    if (Number.isNaN(d.getTime()))
      throw new CliError(`--range ${what} "${t}" is not a time (like 2026-01-01T12:00:00Z)`, 2);
    return d;
  };
  if (start === undefined || end === undefined || rest.length > 0 || start.trim() === '')
    throw new CliError(`--range "${text}" is not START..END (ISO times; END may be left out for now)`, 2);
  return { startTime: parse(start, 'start'), ...(end.trim() === '' ? {} : { endTime: parse(end, 'end') }) };
}

/**
 * The .npy files to summarize, by input: each file is the input its name says (`pixels.npy`), or
 * with `input` every file is that input. A folder stands for the .npy files in it.
 */
async function npyFiles(paths: readonly string[], input: string | undefined): Promise<Map<string, string[]>> {
  const files: string[] = [];
  for (const path of paths) {
    const info = await stat(path).catch(() => undefined);
    if (info === undefined) throw new CliError(`${path}: no such file or folder`, 2);
    if (info.isDirectory()) {
      const found = (await readdir(path)).filter((f) => f.endsWith('.npy')).sort();
      if (found.length === 0) throw new CliError(`${path} holds no .npy files`, 2);
      files.push(...found.map((f) => join(path, f)));
    } else files.push(path);
  }
  const byInput = new Map<string, string[]>();
  for (const file of files) {
    const name = input ?? basename(file).replace(/\.npy$/, '');
    if (name === '') throw new CliError(`${file}: cannot tell the input from the file name; give --input NAME`, 2);
    byInput.set(name, [...(byInput.get(name) ?? []), file]);
  }
  return byInput;
}

/** One summary per input of every value in its files, with the binning monitoring uses. */
async function summarizeNpy(
  byInput: ReadonlyMap<string, readonly string[]>,
  model: string,
  version: string,
): Promise<pb.InputSummary[]> {
  const summaries: pb.InputSummary[] = [];
  for (const [input, files] of byInput) {
    const acc = new InputAccumulator();
    for (const file of files) {
      const tensor = readNpy(await readFile(file), file);
      if (tensor.datatype === 'BYTES') throw new CliError(`${file}: string arrays have no values to summarize`, 2);
      acc.addTensor(tensor);
    }
    summaries.push(acc.toSummary({ tenant: '', model, version, deployment: '', input, time: undefined }));
  }
  return summaries;
}

function baselineText(b: pb.DriftBaseline): string {
  const span =
    b.startTime === undefined
      ? 'from the summaries sent'
      : `from ${b.startTime.toISOString()} .. ${b.endTime?.toISOString()}`;
  return [
    `drift baseline of ${b.model}${b.version ? `:${b.version}` : ''} (${span})`,
    table(
      ['INPUT', 'VALUES', 'MEAN', 'STDDEV', 'MIN', 'MAX'],
      b.inputs.map((s) => {
        const acc = InputAccumulator.of([s]);
        return [s.input, String(s.count), num(acc.mean()), num(acc.stddev()), num(s.min), num(s.max)];
      }),
    ),
  ].join('\n');
}

function driftText(d: pb.GetDriftResponse): string {
  const span = `${d.startTime?.toISOString() ?? '?'} .. ${d.endTime?.toISOString() ?? '?'}`;
  const head = `${d.model}${d.version ? `:${d.version}` : ''}  ${span} against the baseline of ${
    d.baselineTime?.toISOString() ?? '?'
  }  max PSI ${d.maxPsi.toFixed(3)} (${psiVerdict(d.maxPsi)})`;
  return [
    head,
    table(
      ['INPUT', 'PSI', 'VERDICT', 'VALUES', 'MEAN', 'BASELINE MEAN', 'STDDEV', 'BASELINE STDDEV'],
      d.inputs.map((i) => [
        i.input,
        i.psi.toFixed(3),
        i.count === 0n ? 'no data' : psiVerdict(i.psi),
        String(i.count),
        num(i.mean),
        num(i.baselineMean),
        num(i.stddev),
        num(i.baselineStddev),
      ]),
    ),
  ].join('\n');
}

interface SpanOptions {
  window?: string;
  range?: string;
  modelVersion?: string;
}

/** The options of `drift` a subcommand uses: --window only when given, --range, --model-version. */
function parentOptions(command: Command): SpanOptions {
  const parent = command.parent;
  if (parent === null) return {};
  const { window, range, modelVersion } = parent.opts<SpanOptions>();
  return {
    ...(window === undefined || parent.getOptionValueSource('window') === 'default' ? {} : { window }),
    ...(range === undefined ? {} : { range }),
    ...(modelVersion === undefined ? {} : { modelVersion }),
  };
}

export function registerDriftCommands(program: Command): void {
  const drift = program
    .command('drift')
    .description(
      "each input's population stability index against the model's drift baseline " +
        '(below 0.1 stable, to 0.25 moderate, above major); `drift baseline` freezes one',
    )
    .argument('[model]', 'model name')
    // --window, --range and --model-version are this command's, and its subcommands read them from
    // here (commander gives an option that parent and subcommand share to the parent).
    .option('--window <duration>', 'the window compared with the baseline, or frozen by `baseline` (60, 5m, 1h)', '5m')
    .option('--range <start..end>', 'instead of --window: between two ISO times (end left out: now)')
    .option('--model-version <version>', "one version (default: every version together, the model's baseline)")
    .configureHelp({ showGlobalOptions: true })
    .action(
      action(async ({ settings, out }, model: string | undefined, opts: SpanOptions & { window: string }) => {
        if (model === undefined) throw new CliError('name a model: quanta drift MODEL [--window 5m]', 2);
        const span: pb.GetDriftRequest['span'] =
          opts.range === undefined
            ? { $case: 'window', value: seconds(parseWindow(opts.window)) }
            : { $case: 'range', value: parseRange(opts.range) };
        const reply = await withMonitoring(settings, (rpc) =>
          rpc('getDrift', { model, version: opts.modelVersion ?? '', span }),
        );
        out.result(reply, () => driftText(reply));
      }),
    );

  drift
    .command('baseline')
    .description(
      "freeze a model's drift baseline: the inputs inference sampled over --window or --range, or every value " +
        'of .npy files (--from-npy a.npy b.npy or a folder; each file is the input its name says, or --input NAME)',
    )
    .argument('<model>', 'model name')
    .option('--from-npy <paths...>', '.npy files or folders of them, summarized here')
    .option('--input <name>', 'with --from-npy: every file is this input (a single-input model)')
    .action(
      action(
        async ({ settings, out }, model: string, own: { fromNpy?: string[]; input?: string }, command: Command) => {
          const opts = { ...own, ...parentOptions(command) };
          const given = [opts.window, opts.range, opts.fromNpy].filter((o) => o !== undefined).length;
          if (given !== 1) throw new CliError('give exactly one of --window, --range or --from-npy', 2);
          if (opts.input !== undefined && opts.fromNpy === undefined)
            throw new CliError('--input goes with --from-npy', 2);
          const version = opts.modelVersion ?? '';
          let source: pb.SetDriftBaselineRequest['source'];
          if (opts.window !== undefined) source = { $case: 'window', value: seconds(parseWindow(opts.window)) };
          else if (opts.range !== undefined) source = { $case: 'range', value: parseRange(opts.range) };
          else {
            const summaries = await summarizeNpy(await npyFiles(opts.fromNpy ?? [], opts.input), model, version);
            source = { $case: 'inputs', value: { summaries } };
          }
          const { baseline } = await withMonitoring(settings, (rpc) =>
            rpc('setDriftBaseline', { model, version, source }),
          );
          if (baseline === undefined) throw new CliError('the server sent no baseline');
          out.result(baseline, () => baselineText(baseline));
        },
      ),
    );

  drift
    .command('show-baseline')
    .description("print a model's drift baseline")
    .argument('<model>', 'model name')
    .action(
      action(async ({ settings, out }, model: string, _: unknown, command: Command) => {
        const opts = parentOptions(command);
        const { baseline } = await withMonitoring(settings, (rpc) =>
          rpc('getDriftBaseline', { model, version: opts.modelVersion ?? '' }),
        );
        if (baseline === undefined) throw new CliError('the server sent no baseline');
        out.result(baseline, () => baselineText(baseline));
      }),
    );

  drift
    .command('delete')
    .description("delete a model's drift baseline (drift alerts on it stop holding)")
    .argument('<model>', 'model name')
    .action(
      action(async ({ settings, out }, model: string, _: unknown, command: Command) => {
        const opts = parentOptions(command);
        const version = opts.modelVersion ?? '';
        await withMonitoring(settings, (rpc) => rpc('deleteDriftBaseline', { model, version }));
        out.result(
          { deleted: { model, version } },
          () => `drift baseline of ${model}${version ? `:${version}` : ''} deleted`,
        );
      }),
    );
}
