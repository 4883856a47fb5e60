// Triton's request parameters that change how a request runs, read the same way from gRPC's
// InferParameter map and REST's JSON `parameters` object. Parameters we do not know are ignored,
// as Triton ignores them (clients send their own, e.g. `binary_data_output`).
import { invalidArgument } from '@quanta/service-kit';
import type { SequenceControl } from '../core/types.js';

/** A parameter's value: gRPC gives bool/int64/uint64 (bigint)/double/string, JSON bool/number/string. */
export type ParameterValue = boolean | bigint | number | string;

export interface RequestControls {
  readonly sequence?: SequenceControl;
  /** Triton's `timeout` parameter: microseconds the request may wait in the queue (see priority-queue.ts). */
  readonly timeoutUs?: number;
  /** Triton's `priority` parameter: 1 is the highest level; 0 the default one. */
  readonly priority?: number;
}

const UINT64_MAX = 0xffff_ffff_ffff_ffffn;
const NO_CONTROLS: RequestControls = Object.freeze({});

function sequenceId(value: ParameterValue): string | undefined {
  if (typeof value === 'string') return value === '' ? undefined : value;
  let id: bigint;
  if (typeof value === 'bigint') id = value;
  else if (typeof value === 'number' && Number.isSafeInteger(value)) id = BigInt(value);
  else throw invalidArgument(`parameter "sequence_id" must be an unsigned integer or a string, got ${describe(value)}`);
  if (id < 0n || id > UINT64_MAX)
    throw invalidArgument(`parameter "sequence_id" must be an unsigned 64-bit integer or a string, got ${id}`);
  // Triton: 0 means "not part of a sequence".
  return id === 0n ? undefined : id.toString();
}

function flag(name: string, value: ParameterValue | undefined): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw invalidArgument(`parameter "${name}" must be a bool, got ${describe(value)}`);
  return value;
}

function describe(value: ParameterValue): string {
  return typeof value === 'string' ? JSON.stringify(value) : `${typeof value} ${String(value)}`;
}

/** A non-negative integer parameter that fits a double exactly, or INVALID_ARGUMENT. */
function unsigned(name: string, value: ParameterValue, what: string): number {
  const n = typeof value === 'bigint' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0)
    throw invalidArgument(`parameter "${name}" must be a non-negative integer${what}, got ${describe(value)}`);
  return n;
}

/**
 * Reads sequence_id / sequence_start / sequence_end, timeout and priority; INVALID_ARGUMENT naming
 * the parameter when one is malformed.
 */
export function readControls(parameters: ReadonlyMap<string, ParameterValue>): RequestControls {
  // Most requests carry no parameters: no lookups.
  if (parameters.size === 0) return NO_CONTROLS;
  const rawId = parameters.get('sequence_id');
  const id = rawId === undefined ? undefined : sequenceId(rawId);
  const start = flag('sequence_start', parameters.get('sequence_start'));
  const end = flag('sequence_end', parameters.get('sequence_end'));
  if (id === undefined && (start || end)) {
    throw invalidArgument('parameters "sequence_start" and "sequence_end" need a non-zero "sequence_id"');
  }
  const timeout = parameters.get('timeout');
  // Triton: 0 means no timeout.
  const timeoutUs = timeout === undefined ? 0 : unsigned('timeout', timeout, ' of microseconds');
  const rawPriority = parameters.get('priority');
  // Triton: 0 means the default level.
  const priority = rawPriority === undefined ? 0 : unsigned('priority', rawPriority, ' (1 is the highest level)');
  return {
    ...(id === undefined ? {} : { sequence: { id, start, end } }),
    ...(timeoutUs === 0 ? {} : { timeoutUs }),
    ...(priority === 0 ? {} : { priority }),
  };
}
