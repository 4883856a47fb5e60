import type { Command } from 'commander';
import { action } from '../action.js';
import { CLI_VERSION } from '../version.js';

export function registerVersionCommand(program: Command): void {
  program
    .command('version')
    .description('print the CLI version and the Node.js runtime')
    .action(
      action(async ({ out }) => {
        const info = {
          version: CLI_VERSION,
          node: process.versions.node,
          platform: `${process.platform}-${process.arch}`,
        };
        out.result(info, () => `quanta ${info.version} (node ${info.node}, ${info.platform})`);
        return Promise.resolve();
      }),
    );
}
