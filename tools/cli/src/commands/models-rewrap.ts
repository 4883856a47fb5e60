import type * as grpc from '@grpc/grpc-js';
import { registry as pb } from '@quanta/contracts';
import type { Command } from 'commander';
import { CliError } from '../errors.js';
import { connect } from '../grpc.js';
import { action } from '../action.js';
import type { Settings } from '../settings.js';
import { withRegistry } from './registry-rpc.js';

/** `models rewrap`: every stored file's data key under the latest version of its key, with progress on stderr. */
export function registerModelsRewrapCommand(program: Command): void {
  const models = program.commands.find((c) => c.name() === 'models');
  if (models === undefined) throw new Error('register the models command first');
  models
    .command('rewrap')
    .description(
      "rewrap every stored version's data key under the latest version of the registry's key " +
        '(after `quanta keys rotate`, before raising its min decryption version); resumable (scope admin)',
    )
    .action(
      action(async ({ settings, out }) => {
        const client = connect(pb.RegistryServiceClient, settings, 'registry');
        let last: pb.RewrapDataKeysResponse | undefined;
        const tty = !settings.json && process.stderr.isTTY;
        try {
          for await (const message of client.rewrapDataKeys({}) as AsyncIterable<pb.RewrapDataKeysResponse>) {
            last = message;
            if (tty)
              process.stderr.write(
                `\rrewrap: ${message.done}/${message.total} files ` +
                  `(${message.rewrapped} rewrapped, ${message.skipped} already current)`,
              );
          }
        } finally {
          if (tty) process.stderr.write('\n');
          client.close();
        }
        if (last === undefined) throw new CliError('the registry ended the call without reporting progress');
        const done = last;
        out.result(done, () =>
          done.total === 0n
            ? 'no stored files: nothing to rewrap'
            : `rewrapped ${done.rewrapped} of ${done.total} stored files under "${done.keyName}" v${done.keyVersion} ` +
              `(${done.skipped} were already current)`,
        );
      }),
    );
}

/**
 * Before raising the min decryption version of `keyName` to `minVersion`: when it is the registry's
 * key, refuses while stored versions still need a lower key version (crypto cannot know the
 * registry's data, so the CLI asks the registry). A registry that cannot be reached refuses too,
 * unless `force`: a stranded model is not recoverable.
 */
export async function checkRegistryKeyFloor(
  settings: Settings,
  keyName: string,
  minVersion: number,
  force: boolean,
): Promise<void> {
  if (force) return;
  let status: pb.GetDataKeyStatusResponse;
  try {
    status = await withRegistry(settings, (rpc) => rpc('getDataKeyStatus', { belowKeyVersion: minVersion }));
  } catch (error: unknown) {
    const e = error as Partial<grpc.ServiceError>;
    throw new CliError(
      `could not ask the model registry whether stored models still need "${keyName}" below version ${minVersion} ` +
        `(${e.details ?? String(error)}); ` +
        'raising it could make them unreadable. Use --force to raise it without asking.',
    );
  }
  if (status.keyName !== keyName || status.versionsBelow === 0n) return;
  throw new CliError(
    `refused: ${status.versionsBelow} model version(s) (${status.filesBelow} stored file(s)) ` +
      `still need key "${keyName}" below version ${minVersion}; ` +
      'run `quanta models rewrap` first, then raise it',
  );
}
