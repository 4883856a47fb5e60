// The accuracy gates of a CompressVersion call, checked against what calibration measured.
import type { registry as pb } from '@quanta/contracts';

/** The gate a figure misses, as the error names it; undefined when every gate holds. */
export function missedGate(
  outputs: readonly pb.OutputAccuracy[],
  gates: pb.CompressionGates | undefined,
): string | undefined {
  if (gates === undefined) return undefined;
  for (const o of outputs) {
    if (gates.minCosine !== undefined && !(o.cosine >= gates.minCosine)) {
      return `output "${o.name}": cosine ${o.cosine.toFixed(6)} is below min_cosine ${gates.minCosine}`;
    }
    if (gates.maxAbsError !== undefined && !(o.maxAbsError <= gates.maxAbsError)) {
      return (
        `output "${o.name}": max abs error ${o.maxAbsError.toPrecision(6)} is above max_abs_error ` +
        `${gates.maxAbsError}`
      );
    }
    if (
      gates.minTop1Agreement !== undefined &&
      o.top1Agreement !== undefined &&
      !(o.top1Agreement >= gates.minTop1Agreement)
    ) {
      return (
        `output "${o.name}": top-1 agreement ${(o.top1Agreement * 100).toFixed(2)}% is below min_top1_agreement ` +
        `${gates.minTop1Agreement}`
      );
    }
  }
  if (gates.minTop1Agreement !== undefined && !outputs.some((o) => o.top1Agreement !== undefined)) {
    return 'min_top1_agreement is set, but no output is shaped like class scores ([N, C] with C > 1)';
  }
  return undefined;
}
