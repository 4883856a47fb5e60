import { Command, Option } from 'commander';
import { registerCommands } from './commands/index.js';
import { CliError, describeError } from './errors.js';
import { createOutput, type Output } from './output.js';
import { resolveSettings, type GlobalOptions, type Settings } from './settings.js';

export const CLI_VERSION = '0.1.0';

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

export function createProgram(): Command {
  const program = new Command('quanta')
    .description('Quanta: register, encrypt, deploy, serve and watch ONNX models over gRPC')
    .version(CLI_VERSION, '-V, --version-flag', 'print the version number')
    .option('--json', 'print machine-readable JSON on stdout')
    .option('--home <dir>', 'data and credentials folder (env QUANTA_HOME, default ./.quanta)')
    .option('--token <jwt>', 'bearer token (env QUANTA_TOKEN, default: $QUANTA_HOME/admin.token)')
    .addOption(new Option('--registry-addr <host:port>', 'model-registry address (env QUANTA_REGISTRY_ADDR)').default(undefined, '127.0.0.1:9001'))
    .addOption(new Option('--crypto-addr <host:port>', 'crypto address (env QUANTA_CRYPTO_ADDR)').default(undefined, '127.0.0.1:9002'))
    .addOption(new Option('--monitoring-addr <host:port>', 'monitoring address (env QUANTA_MONITORING_ADDR)').default(undefined, '127.0.0.1:9003'))
    .addOption(new Option('--inference-addr <host:port>', 'inference gRPC address (env QUANTA_INFERENCE_ADDR)').default(undefined, '127.0.0.1:8001'))
    .option('--tls', 'connect with TLS, trusting the system roots (env QUANTA_CLIENT_TLS=1; implied by --tls-ca)')
    .option('--tls-ca <file>', 'PEM CA the services\' certificates must chain to (env QUANTA_CLIENT_TLS_CA; see `quanta certs dev`)')
    .option('--tls-cert <file>', 'PEM client certificate for mTLS (env QUANTA_CLIENT_TLS_CERT)')
    .option('--tls-key <file>', 'PEM private key of --tls-cert (env QUANTA_CLIENT_TLS_KEY)')
    .showHelpAfterError()
    .configureOutput({ outputError: (text, write) => write(text) })
    .exitOverride((error) => {
      // commander's own exits (help, version, usage errors) keep their exit codes.
      process.exit(error.exitCode);
    });
  registerCommands(program);
  return program;
}
