import { OnnxDataType } from '../data-types.js';
import type { NodeView, TensorView } from './onnx-graph.js';
import { reencodeNode, type Rewriter } from './rewriter.js';

/**
 * Conv -> BatchNormalization (inference form, constant parameters, the Conv's output read by the
 * BatchNormalization alone) becomes one Conv with W' = W * s and b' = (b - mean) * s + beta per
 * output channel, s = scale / sqrt(var + epsilon): the same function, as onnxruntime computes it
 * after its own folding at load, and as its quantizer prepares models. Skipped in models with
 * subgraphs, which could read the Conv's output by name.
 */
export function foldBatchNorms(r: Rewriter): void {
  // Before IR 4 every initializer must also be a graph input, so no bias initializer can be added.
  if (r.model.irVersion < 4 || r.graph.nodes.some((n) => [...n.attributes.values()].some((a) => a.hasGraph))) return;
  const producer = new Map<string, NodeView>();
  for (const n of r.graph.nodes) for (const o of n.outputs) producer.set(o, n);
  let folded = 0;
  for (const bn of r.graph.nodes) {
    if (bn.domain !== '' || bn.opType !== 'BatchNormalization') continue;
    if (
      bn.outputs.slice(1).some((o) => o !== '') ||
      (bn.attributes.get('training_mode')?.i ?? 0) !== 0 ||
      (bn.attributes.get('spatial')?.i ?? 1) !== 1
    )
      continue;
    const [x, scaleName, betaName, meanName, varName] = bn.inputs;
    const y = bn.outputs[0];
    const conv = x === undefined ? undefined : producer.get(x);
    if (
      conv === undefined ||
      x === undefined ||
      y === undefined ||
      conv.domain !== '' ||
      conv.opType !== 'Conv' ||
      conv.outputs.length !== 1
    )
      continue;
    if ((r.uses.get(x)?.length ?? 0) !== 1 || r.graphOutputs.has(x) || r.nodeReplacements.has(conv.index)) continue;
    const params = [scaleName, betaName, meanName, varName].map((n) =>
      n === undefined ? undefined : r.floatSource(n),
    );
    const [wName, bName] = [conv.inputs[1], conv.inputs[2]];
    const w = wName === undefined ? undefined : r.floatSource(wName);
    const b = bName === undefined || bName === '' ? undefined : r.floatSource(bName);
    if (params.some((p) => p === undefined) || w === undefined || wName === undefined) continue;
    if (bName !== undefined && bName !== '' && b === undefined) continue;
    // The weight and bias change value: no other node may read them.
    if ((r.uses.get(wName)?.length ?? 0) !== 1 || r.blocked(wName) !== undefined) continue;
    if (b !== undefined && ((r.uses.get(bName!)?.length ?? 0) !== 1 || r.blocked(bName!) !== undefined)) continue;
    const channels = w.tensor.dims[0] ?? 0;
    const [gamma, beta, mean, variance] = params.map((p, k) => r.data(bn.inputs[k + 1]!, p!));
    if ([gamma, beta, mean, variance].some((a) => a!.length !== channels)) continue;
    const epsilon = bn.attributes.get('epsilon')?.f ?? 1e-5;
    const weights = Float32Array.from(r.data(wName, w));
    const bias = b === undefined ? new Float32Array(channels) : Float32Array.from(r.data(bName!, b));
    const inner = weights.length / channels;
    for (let c = 0; c < channels; c++) {
      const s = gamma![c]! / Math.sqrt(variance![c]! + epsilon);
      for (let i = c * inner; i < (c + 1) * inner; i++) weights[i] = weights[i]! * s;
      bias[c] = (bias[c]! - mean![c]!) * s + beta![c]!;
    }
    r.overrides.set(wName, weights);
    let biasName = bName;
    if (b !== undefined) r.overrides.set(bName!, bias);
    else {
      biasName = r.fresh(`${conv.name === '' ? wName : conv.name}_bias`);
      const tensor: TensorView = {
        name: biasName,
        dataType: OnnxDataType.FLOAT,
        dims: [channels],
        elementCount: channels,
        external: false,
        fields: [],
      };
      r.sources.set(biasName, { tensor, added: true });
      r.overrides.set(biasName, bias);
      r.uses.set(biasName, [{ node: conv, index: 2 }]);
    }
    // The BatchNormalization's parameters lose this reader; those read by nothing else go.
    for (const name of bn.inputs.slice(1)) {
      const rest = (r.uses.get(name) ?? []).filter((u) => u.node !== bn);
      r.uses.set(name, rest);
      if (rest.length === 0 && !r.graphOutputs.has(name) && !r.graphInputs.has(name)) r.removed.add(name);
    }
    r.uses.delete(x);
    r.removedValues.add(x);
    const inputs = [conv.inputs[0] ?? '', wName, biasName!];
    r.nodeReplacements.set(conv.index, [reencodeNode(conv, inputs, [y])]);
    r.nodeReplacements.set(bn.index, []);
    r.foldedNodes.add(bn.index);
    r.rewrittenNodes.add(conv.index);
    folded += 1;
  }
  if (folded > 0) r.parameters['batchNorm'] = `${folded} folded into the Conv before each`;
}
