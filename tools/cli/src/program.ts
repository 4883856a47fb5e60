import { Command, Option } from 'commander';
import { registerCommands } from './commands/index.js';
import { CLI_VERSION } from './version.js';

export function createProgram(): Command {
  const program = new Command('quanta')
    .description('Quanta: register, encrypt, deploy, serve and watch ONNX models over gRPC')
    .version(CLI_VERSION, '-V, --version-flag', 'print the version number')
    .option('--json', 'print machine-readable JSON on stdout')
    .option('--home <dir>', 'data and credentials folder (env QUANTA_HOME, default ./.quanta)')
    .option('--token <jwt>', 'bearer token (env QUANTA_TOKEN, default: $QUANTA_HOME/admin.token)')
    .addOption(
      new Option('--registry-addr <host:port>', 'model-registry address (env QUANTA_REGISTRY_ADDR)').default(
        undefined,
        '127.0.0.1:9001',
      ),
    )
    .addOption(
      new Option('--crypto-addr <host:port>', 'crypto address (env QUANTA_CRYPTO_ADDR)').default(
        undefined,
        '127.0.0.1:9002',
      ),
    )
    .addOption(
      new Option('--monitoring-addr <host:port>', 'monitoring address (env QUANTA_MONITORING_ADDR)').default(
        undefined,
        '127.0.0.1:9003',
      ),
    )
    .addOption(
      new Option('--inference-addr <host:port>', 'inference gRPC address (env QUANTA_INFERENCE_ADDR)').default(
        undefined,
        '127.0.0.1:8001',
      ),
    )
    .option('--tls', 'connect with TLS, trusting the system roots (env QUANTA_CLIENT_TLS=1; implied by --tls-ca)')
    .option(
      '--tls-ca <file>',
      "PEM CA the services' certificates must chain to (env QUANTA_CLIENT_TLS_CA; see `quanta certs dev`)",
    )
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
