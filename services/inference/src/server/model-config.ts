// Triton's model configuration of one loaded version, derived from what it is served with: the
// model's own inputs and outputs (its onnxruntime session) and its deployment's serving config.
// Both front ends answer with it (gRPC ModelConfig, REST GET .../config).
import { inferenceConfig as tc } from '@quanta/contracts';
import type { Datatype } from '@quanta/tensor';
import { defaultLevel } from '../core/priority-queue.js';
import type { LoadedModel, QueuePolicy, TensorSpec } from '../core/types.js';
/** Every model runs on onnxruntime; Triton's names for that platform and backend. */
export const PLATFORM = 'onnxruntime_onnx';
export const BACKEND = 'onnxruntime';
/** The sequence idle timeout the core applies when a deployment says 0 (ServingConfig). */
const DEFAULT_SEQUENCE_IDLE_MS = 60_000;
/** Execution providers whose sessions run on a GPU. */
const GPU_PROVIDERS = new Set(['cuda', 'tensorrt', 'rocm', 'dml', 'webgpu']);

/** KServe's datatype name in Triton's DataType enum: FP32 is TYPE_FP32, BYTES is TYPE_STRING. */
export function tritonDataType(datatype: Datatype): tc.DataType {
  const name = datatype === 'BYTES' ? 'TYPE_STRING' : `TYPE_${datatype}`;
  return tc.dataTypeFromJSON(name);
}

/** The dims Triton shows: the whole shape, or without dim 0 when requests are batched; -1 for an undeclared shape. */
function dimsOf(spec: TensorSpec, batched: boolean): bigint[] {
  const shape = spec.shape ?? [-1];
  return (batched ? shape.slice(1) : shape).map(BigInt);
}

/**
 * Triton's queue policy of one level: its own max queue size, or the deployment's (over all levels)
 * when it has none; a request's own `timeout` applies unless the level has a timeout it may not
 * override (see dynamic-batcher.ts).
 */
function queuePolicyOf(policy: QueuePolicy | undefined, maxQueueSize: number): tc.ModelQueuePolicy {
  const timeoutUs = policy?.timeoutUs ?? 0;
  return {
    timeoutAction:
      policy?.delayOnTimeout === true
        ? tc.ModelQueuePolicy_TimeoutAction.DELAY
        : tc.ModelQueuePolicy_TimeoutAction.REJECT,
    defaultTimeoutMicroseconds: BigInt(timeoutUs),
    allowTimeoutOverride: timeoutUs === 0 || policy?.allowTimeoutOverride === true,
    maxQueueSize: policy !== undefined && policy.maxQueueSize > 0 ? policy.maxQueueSize : maxQueueSize,
  };
}

export function describeModelConfig(model: LoadedModel): tc.ModelConfig {
  const { config, signature } = model;
  const stateful = config.sequenceState.length > 0;
  // The same rule as the core's (loaded-model.ts): only then are requests stacked along dim 0.
  const batched = !stateful && signature.batchable && config.maxBatchSize > 1;
  const stateInputs = new Set(config.sequenceState.map((s) => s.input));
  const stateOutputs = new Set(config.sequenceState.map((s) => s.output));

  const input = signature.inputs
    .filter((spec) => !stateInputs.has(spec.name))
    .map((spec): tc.ModelInput => ({
      name: spec.name,
      dataType: tritonDataType(spec.datatype),
      format: tc.ModelInput_Format.FORMAT_NONE,
      dims: dimsOf(spec, batched),
      allowRaggedBatch: false,
      optional: false,
    }));
  const output = signature.outputs
    .filter((spec) => !stateOutputs.has(spec.name))
    .map((spec): tc.ModelOutput => ({
      name: spec.name,
      dataType: tritonDataType(spec.datatype),
      dims: dimsOf(spec, batched),
      labelFilename: '',
    }));

  const levels = config.priorityLevels ?? 0;
  let schedulingChoice: tc.ModelConfig['schedulingChoice'];
  if (stateful) {
    const state = config.sequenceState.map((pair): tc.ModelSequenceBatching_State => {
      const spec = signature.inputs.find((s) => s.name === pair.input);
      const dataType = spec === undefined ? tc.DataType.TYPE_INVALID : tritonDataType(spec.datatype);
      const dims = spec === undefined ? [] : dimsOf(spec, false);
      return {
        inputName: pair.input,
        outputName: pair.output,
        dataType,
        dims,
        initialState: [{ name: `${pair.input}_zeros`, dataType, dims, stateData: { $case: 'zeroData', value: true } }],
      };
    });
    const idleMs = config.sequenceIdleTimeoutMs > 0 ? config.sequenceIdleTimeoutMs : DEFAULT_SEQUENCE_IDLE_MS;
    schedulingChoice = {
      $case: 'sequenceBatching',
      value: {
        strategyChoice: { $case: 'direct', value: { maxQueueDelayMicroseconds: 0n, minimumSlotUtilization: 0 } },
        maxSequenceIdleMicroseconds: BigInt(idleMs) * 1000n,
        controlInput: [],
        state,
      },
    };
  } else if (batched || levels > 0) {
    // Also without batching when the deployment has priorities: the same queue orders requests.
    schedulingChoice = {
      $case: 'dynamicBatching',
      value: {
        preferredBatchSize: batched ? [...model.preferredBatchSizes] : [],
        maxQueueDelayMicroseconds: batched ? BigInt(config.maxQueueDelayUs) : 0n,
        preserveOrdering: false,
        priorityLevels: BigInt(levels),
        defaultPriorityLevel: BigInt(levels === 0 ? 0 : defaultLevel(config)),
        defaultQueuePolicy: queuePolicyOf(config.defaultQueuePolicy, config.maxQueueSize),
        priorityQueuePolicy: new Map(
          Object.entries(config.priorityQueuePolicies ?? {})
            .filter(([level]) => Number(level) >= 1 && Number(level) <= levels)
            .map(([level, policy]) => [BigInt(level), queuePolicyOf(policy, config.maxQueueSize)]),
        ),
      },
    };
  }

  const onGpu = GPU_PROVIDERS.has(config.executionProviders?.[0] ?? 'cpu');
  return {
    name: model.name,
    platform: PLATFORM,
    backend: BACKEND,
    runtime: '',
    versionPolicy: { policyChoice: { $case: 'latest', value: { numVersions: 1 } } },
    maxBatchSize: batched ? config.maxBatchSize : 0,
    input,
    output,
    schedulingChoice,
    instanceGroup: [
      {
        name: `${model.name}_0`,
        kind: onGpu ? tc.ModelInstanceGroup_Kind.KIND_GPU : tc.ModelInstanceGroup_Kind.KIND_CPU,
        count: config.instanceCount,
        gpus: [],
      },
    ],
    defaultModelFilename: 'model.onnx',
    parameters: { execution: { stringValue: model.execution } },
    modelTransactionPolicy: { decoupled: false },
    // Stateful models never use it (ServingConfig.responseCacheBytes).
    ...((config.responseCacheBytes ?? 0) > 0 && !stateful ? { responseCache: { enable: true } } : {}),
  };
}
