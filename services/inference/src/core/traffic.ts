// A deployment's traffic split: which version a request that names none goes to (the primary, or
// the canary for its share), and the shadow copies run after the primary answered, off the
// caller's path, whose outputs are compared with the primary's for monitoring.
import type { Tensor } from '@quanta/tensor';
import { bfloat16BitsToNumber, float16BitsToNumber } from '@quanta/tensor';
import type { InferRequest, InferResult, LoadedModel, Traffic, TrafficRoute } from './types.js';

/** FNV-1a of a string, as an unsigned 32-bit number: the same sequence always lands in one bucket. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/**
 * Where a request that names no version goes: to the canary with its percent, chosen per request,
 * or per sequence id for a request of a sequence (so a sequence never changes version while the
 * weights stay).
 */
export function chooseRoute(traffic: Traffic | undefined, request: InferRequest, random = Math.random): TrafficRoute {
  const canary = traffic?.canary;
  if (canary === undefined || canary.percent <= 0) return 'primary';
  const draw = request.sequence === undefined ? random() * 100 : fnv1a(request.sequence.id) % 100;
  return draw < canary.percent ? 'canary' : 'primary';
}

/** Whether a request gets a shadow copy: never for a sequence; a percent of 0 means every request. */
export function takesShadow(traffic: Traffic | undefined, request: InferRequest, random = Math.random): boolean {
  const shadow = traffic?.shadow;
  if (shadow === undefined || request.sequence !== undefined) return false;
  const percent = shadow.percent === 0 ? 100 : shadow.percent;
  return percent >= 100 || random() * 100 < percent;
}

/** How a shadow's outputs compare with the primary's (monitoring's ShadowComparison). */
export interface OutputComparison {
  /** The largest absolute difference of any numeric element; Infinity for a missing or reshaped output. */
  readonly maxAbsError: number;
  /** Rows of class-shaped outputs ([batch, classes] or [classes], at least two classes). */
  readonly top1Rows: number;
  /** Of those, the rows whose arg-max is the same on both sides. */
  readonly top1AgreedRows: number;
}

const sameShape = (a: readonly number[], b: readonly number[]): boolean =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/** The elements of a numeric tensor (FP16 and BF16 decoded from their bits); undefined for BYTES. */
function numbers(tensor: Tensor): ArrayLike<number | bigint> | undefined {
  switch (tensor.datatype) {
    case 'BYTES':
      return undefined;
    case 'FP16':
      return Array.from(tensor.data, float16BitsToNumber);
    case 'BF16':
      return Array.from(tensor.data, bfloat16BitsToNumber);
    default:
      return tensor.data;
  }
}

function argMax(values: ArrayLike<number | bigint>, start: number, length: number): number {
  let best = start;
  for (let i = start + 1; i < start + length; i++) if (Number(values[i]) > Number(values[best])) best = i;
  return best - start;
}

/**
 * Compares every output the primary returned with the shadow's output of the same name: the max
 * abs error over numeric elements, whatever their numeric types (a missing output, another shape,
 * or BYTES against numbers counts as Infinity; BYTES outputs count only when they differ), and
 * top-1 agreement per row of class-shaped outputs.
 */
export function compareOutputs(primary: readonly Tensor[], shadow: readonly Tensor[]): OutputComparison {
  let maxAbsError = 0;
  let top1Rows = 0;
  let top1AgreedRows = 0;
  for (const p of primary) {
    const s = shadow.find((t) => t.name === p.name);
    if (s === undefined || !sameShape(p.shape, s.shape) || (p.datatype === 'BYTES') !== (s.datatype === 'BYTES')) {
      maxAbsError = Infinity;
      continue;
    }
    const a = numbers(p);
    const b = numbers(s);
    if (a === undefined || b === undefined) {
      const [x, y] = [p.data as readonly Uint8Array[], s.data as readonly Uint8Array[]];
      if (x.length !== y.length || x.some((e, i) => Buffer.compare(e, y[i] ?? new Uint8Array()) !== 0))
        maxAbsError = Infinity;
      continue;
    }
    for (let i = 0; i < a.length; i++) {
      const diff = Math.abs(Number(a[i]) - Number(b[i]));
      // NaN on one side only is as far as it gets; NaN on both sides agrees.
      if (diff > maxAbsError) maxAbsError = diff;
      else if (Number.isNaN(diff) && !(Number.isNaN(Number(a[i])) && Number.isNaN(Number(b[i]))))
        maxAbsError = Infinity;
    }
    const shape = p.shape;
    const classes = shape[shape.length - 1] ?? 0;
    if ((shape.length === 1 || shape.length === 2) && classes >= 2) {
      const rows = shape.length === 2 ? (shape[0] ?? 0) : 1;
      for (let r = 0; r < rows; r++) {
        top1Rows++;
        if (argMax(a, r * classes, classes) === argMax(b, r * classes, classes)) top1AgreedRows++;
      }
    }
  }
  return { maxAbsError, top1Rows, top1AgreedRows };
}

export interface ShadowRunner {
  /**
   * Runs a copy of `request` on `shadow` once `primary` answered it, without holding the caller;
   * dropped when `maxInFlight` copies are already running.
   */
  run(shadow: LoadedModel, request: InferRequest, primary: InferResult): void;
  /** Copies running now. */
  inFlight(): number;
  /** Copies dropped because the bound was reached. */
  dropped(): number;
}

/** Shadow copies in flight at once per replica unless told otherwise. */
export const DEFAULT_MAX_SHADOWS_IN_FLIGHT = 256;

export function createShadowRunner(maxInFlight = DEFAULT_MAX_SHADOWS_IN_FLIGHT): ShadowRunner {
  let running = 0;
  let dropped = 0;
  const done = (): void => {
    running--;
  };
  return {
    run(shadow, request, primary) {
      // A shadow being replaced would pass the copy on to the current version: drop it instead, so
      // a shadow record is always the shadow version's answer.
      if (shadow.state !== 'READY') return;
      if (running >= maxInFlight) {
        dropped++;
        return;
      }
      running++;
      // Neither the caller's cancellation nor its deadline: the caller has its answer already. The
      // shadow's own observer call reports the outcome (with the comparison) to monitoring.
      const copy: InferRequest = {
        id: request.id,
        inputs: request.inputs,
        ...(request.outputs === undefined ? {} : { outputs: request.outputs }),
        route: 'shadow',
        primary,
      };
      shadow.infer(copy).then(done, done);
    },
    inFlight: () => running,
    dropped: () => dropped,
  };
}
