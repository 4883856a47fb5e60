import { OnnxDataType } from '../data-types.js';
import type { Rewriter } from './rewriter.js';
import { bytesOf, FLOAT16_MAX, toFloat16 } from './weight-math.js';

// fp16: float32 constants stored as float16, each cast back to float32 under its own name, so the
// graph computes in float32 as before.

/** Constants with fewer elements stay float32 under fp16: the Cast node costs more than it saves. */
export const MIN_FP16_ELEMENTS = 64;

export function fp16(r: Rewriter): void {
  const opset = r.model.opset;
  Object.assign(r.parameters, {
    storage: 'float16',
    compute: 'float32 (Cast after each weight)',
    minElements: String(MIN_FP16_ELEMENTS),
  });
  if (opset < 6) {
    r.leaveAll(`opset ${opset}: Cast with a numeric 'to' needs opset 6 or later`);
    return;
  }
  for (const [name, uses] of r.uses) {
    const source = r.floatSource(name);
    if (source === undefined || uses.length === 0 || r.removed.has(name)) continue;
    let reason = r.blocked(name);
    const w =
      reason === undefined && source.tensor.elementCount >= MIN_FP16_ELEMENTS ? r.data(name, source) : undefined;
    if (reason === undefined && w === undefined) {
      reason =
        `constant "${name}" has ${source.tensor.elementCount} elements, ` +
        `under ${MIN_FP16_ELEMENTS}: kept in float32`;
    }
    if (reason === undefined && w !== undefined) {
      const big = w.find((x) => Math.abs(x) > FLOAT16_MAX);
      if (big !== undefined)
        reason = `constant "${name}" holds ${big}, beyond float16's range (±${FLOAT16_MAX}): kept in float32`;
    }
    if (reason !== undefined || w === undefined) {
      r.leaveNodes(uses, reason ?? '');
      continue;
    }
    const halfName = r.fresh(`${name}_fp16`);
    r.replace(name, {
      tensors: [
        { name: halfName, dataType: OnnxDataType.FLOAT16, dims: source.tensor.dims, raw: bytesOf(toFloat16(w)) },
      ],
      nodes: [
        {
          opType: 'Cast',
          name: r.fresh(`${name}_Cast`),
          inputs: [halfName],
          outputs: [name],
          attributes: { to: { i: OnnxDataType.FLOAT } },
        },
      ],
    });
  }
}
