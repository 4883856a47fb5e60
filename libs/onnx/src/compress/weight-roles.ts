import type { NodeView } from './onnx-graph.js';
import type { Rewriter, Source } from './rewriter.js';

// Which constants are weights (and along which axis their output channels run), which are biases,
// and which weights the weight methods (int8-weights, prune) may rewrite.

/**
 * Weights with fewer elements stay float32 under int8-weights, int8-dynamic and prune: the nodes,
 * names and per-channel scales that restore them cost about as much as they save.
 */
export const MIN_WEIGHT_ELEMENTS = 256;

/** Where a tensor is a weight: the axis of its output channels, -1 for one scale per tensor. */
export function weightAxis(node: NodeView, index: number, dims: readonly number[]): number | undefined {
  if (node.domain !== '') return undefined;
  switch (node.opType) {
    case 'Conv':
      return index === 1 && dims.length >= 3 ? 0 : undefined;
    case 'MatMul':
      return index === 1 ? (dims.length >= 2 ? dims.length - 1 : -1) : undefined;
    case 'Gemm':
      return index === 1 && dims.length === 2 ? ((node.attributes.get('transB')?.i ?? 0) === 1 ? 0 : 1) : undefined;
    case 'LSTM':
    case 'GRU':
    case 'RNN':
      // W [directions, gates*hidden, input] and R [directions, gates*hidden, hidden].
      return (index === 1 || index === 2) && dims.length === 3 ? 1 : undefined;
    default:
      return undefined;
  }
}

export function isBias(node: NodeView, index: number): boolean {
  if (node.domain !== '') return false;
  if (node.opType === 'Conv' || node.opType === 'Gemm') return index === 2;
  if (node.opType === 'LSTM' || node.opType === 'GRU' || node.opType === 'RNN') return index === 3;
  return false;
}

/** Weights read only as weights by the same layout: name -> [source, axis]. */
export function weights(r: Rewriter): Map<string, { source: Source; axis: number }> {
  const out = new Map<string, { source: Source; axis: number }>();
  for (const [name, uses] of r.uses) {
    const source = r.floatSource(name);
    if (source === undefined) continue;
    const axes = uses.map((u) => weightAxis(u.node, u.index, source.tensor.dims));
    const weightUses = uses.filter((_, k) => axes[k] !== undefined);
    if (weightUses.length === 0) continue;
    const other = uses.find((_, k) => axes[k] === undefined);
    let reason: string | undefined;
    if (other !== undefined)
      reason = `weight "${name}" is also input ${other.index} of ${other.node.opType}, so it stays float32`;
    else if (new Set(axes).size > 1) reason = `weight "${name}" is read with different layouts, so it stays float32`;
    else reason = r.blocked(name);
    if (reason === undefined && source.tensor.elementCount < MIN_WEIGHT_ELEMENTS) {
      reason =
        `weight "${name}" has ${source.tensor.elementCount} elements, ` +
        `under ${MIN_WEIGHT_ELEMENTS}: kept in float32`;
    }
    if (reason !== undefined) r.leaveNodes(weightUses, reason);
    else out.set(name, { source, axis: axes[0]! });
  }
  return out;
}

/** Lists the float32 biases of rewritten nodes in `left`. */
export function noteBiases(r: Rewriter): void {
  for (const index of r.rewrittenNodes) {
    const node = r.graph.nodes[index]!;
    node.inputs.forEach((name, k) => {
      if (isBias(node, k) && r.floatSource(name) !== undefined && !r.replacements.has(name)) {
        r.extraLeft.push({ op: node.opType, reason: 'bias stays float32 (added after the product, small)' });
      }
    });
  }
}
