// The checkpoint of a batch job: which records are done and where each output stood then. It is
// replaced atomically (written to a temporary file, fsynced, renamed over the old one, and the
// folder fsynced), so a crash at any moment leaves either the old checkpoint or the new one.
import { open, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

/** One resumable point: records before `records` are done; the outputs stood at these positions. */
export interface CheckpointMark {
  readonly records: number;
  /** Where to start sending again: the start of a sequence still open at `records`, or `records`. */
  readonly replayFrom: number;
  readonly succeeded: number;
  readonly failures: number;
  readonly sink: unknown;
  readonly errors: unknown;
}

export interface Checkpoint {
  readonly format: 'quanta-batch-checkpoint';
  readonly version: 1;
  /** What the job was run on (model, input, options): a resume with other settings is refused. */
  readonly fingerprint: Readonly<Record<string, unknown>>;
  /** Oldest first; the last is the latest. Most sinks keep only the latest. */
  readonly marks: readonly CheckpointMark[];
  /** True once the job finished. */
  readonly complete: boolean;
}

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function writeCheckpoint(path: string, checkpoint: Checkpoint): Promise<void> {
  const temporary = `${path}.tmp`;
  const handle = await open(temporary, 'w');
  try {
    await handle.writeFile(`${JSON.stringify(checkpoint)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, path);
  // The rename itself is durable only once the folder's entry is.
  await fsyncPath(dirname(path)).catch(() => undefined);
}

/** The checkpoint at `path`, or undefined when there is none. */
export async function readCheckpoint(path: string): Promise<Checkpoint | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let parsed: Partial<Checkpoint>;
  try {
    parsed = JSON.parse(text) as Partial<Checkpoint>;
  } catch {
    throw new Error(`${path} is not a batch checkpoint (not JSON)`);
  }
  if (parsed.format !== 'quanta-batch-checkpoint' || parsed.version !== 1 || !Array.isArray(parsed.marks)) {
    throw new Error(`${path} is not a batch checkpoint of this version`);
  }
  return parsed as Checkpoint;
}

export async function removeCheckpoint(path: string): Promise<void> {
  await rm(path, { force: true });
  await rm(`${path}.tmp`, { force: true });
}

/** The first key whose value differs between two fingerprints, for the refusal's message. */
export function fingerprintDifference(
  saved: Readonly<Record<string, unknown>>,
  now: Readonly<Record<string, unknown>>,
): string | undefined {
  for (const key of new Set([...Object.keys(saved), ...Object.keys(now)])) {
    if (JSON.stringify(saved[key]) !== JSON.stringify(now[key])) {
      return `${key} was ${JSON.stringify(saved[key])}, now ${JSON.stringify(now[key])}`;
    }
  }
  return undefined;
}
