import type { Command } from 'commander';
import { CliError, describeError } from './errors.js';
import { createOutput, type Output } from './output.js';
import { resolveSettings, type GlobalOptions, type Settings } from './settings.js';

/** What every command gets: the resolved settings and where to print. */
export interface CommandContext {
  readonly settings: Settings;
  readonly out: Output;
}

/**
 * Wraps a command's action: resolves the global options into settings, runs it, and turns a
 * failure into one readable line on stderr and a non-zero exit code.
 */
export function action<A extends unknown[]>(
  run: (ctx: CommandContext, ...args: A) => Promise<void>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const command = args[args.length - 1] as Command;
    const settings = resolveSettings(command.optsWithGlobals<GlobalOptions>());
    const out = createOutput(settings.json);
    try {
      await run({ settings, out }, ...args);
    } catch (error: unknown) {
      process.stderr.write(`quanta: ${describeError(error)}\n`);
      process.exitCode = error instanceof CliError ? error.exitCode : 1;
    }
  };
}
