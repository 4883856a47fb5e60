// `quanta batch MODEL --input PATH --out PATH`: a dataset through a model (batch-run.ts runs it).
import type { Command } from 'commander';
import { action } from '../action.js';
import type { BatchFlags } from './batch-run.js';

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

export function registerBatchCommand(program: Command): void {
  program
    .command('batch')
    .description('run a dataset through a model (ModelStreamInfer, bounded memory, resumable) — scope infer')
    .argument('<model>', 'model name')
    .requiredOption('--input <path>', 'a folder of .npy files, or a .npy, .npz, .jsonl, .csv or .parquet file')
    .requiredOption('--out <path>', 'where the outputs go (a folder for npy from a folder)')
    .option('--format <format>', 'npy, npz, jsonl or csv (default: as the input; parquet input writes jsonl)')
    .option('--errors <file>', 'failed rows as JSON lines {id, index, code, message} (default OUT.errors.jsonl)')
    .option('--checkpoint <file>', 'progress, for --resume (default OUT.checkpoint.json)')
    .option('--max-failures <n>', 'stop with exit code 1 once more rows than this have failed')
    .option('--window <n>', 'requests in flight (and waiting to be written) at most (default: 64 rows worth)')
    .option(
      '--batch-rows <n|auto>',
      'rows stacked into one request along dim 0; auto: up to 32 where the deployment batches (max batch > 0)',
      'auto',
    )
    .option('--resume', 'continue a stopped or crashed job from its checkpoint')
    .option(
      '--encrypt-with <key>',
      'encrypt the output (jsonl, csv) with a key of the tenant: an AEAD key seals the file, a fernet key each row',
    )
    .option(
      '--sequence-column <name>',
      "stateful models: the column (field in jsonl) naming each row's sequence; a sequence's rows are contiguous",
    )
    .option('--id-column <name>', 'the column (field in jsonl) of the row id (default "id" when there is one)')
    .option(
      '--input-name <name>',
      'the model input that the columns of a table (or a .npy of rows) fill (default the first)',
    )
    .option('--output <name>', 'an output to ask for (repeatable; default all)', collect)
    .option('--version <version>', 'model version (default: the one the server serves)')
    .option('--no-progress', 'no progress bar on stderr')
    .action(
      action(async (ctx, model: string, flags: BatchFlags) => {
        const { runBatch } = await import('./batch-run.js');
        await runBatch(ctx, model, flags);
      }),
    );
}
