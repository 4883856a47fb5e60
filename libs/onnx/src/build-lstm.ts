import { OnnxDataType } from './data-types.js';
import { encodeModel, floatTensor, type DimSpec, type ModelSpec } from './model-spec.js';
import { createRng, uniform } from './rng.js';

export interface LstmOptions {
  /** Default 4. */
  readonly inputSize?: number;
  /** Default 8. */
  readonly hiddenSize?: number;
  /** Weight seed, default 1. */
  readonly seed?: number;
  /** Sequence length dim; default 'T'. */
  readonly seqLength?: DimSpec;
  /** Batch dim; default 'N'. */
  readonly batch?: DimSpec;
}

/** Input and output names of the LSTM model: a deployment maps state `h -> hn` and `c -> cn`. */
export const LSTM_NAMES = { input: 'x', h: 'h', c: 'c', output: 'y', hn: 'hn', cn: 'cn' } as const;

/**
 * One forward ONNX `LSTM` layer with its state as inputs and outputs: `x [T,N,in]`, `h [1,N,H]`,
 * `c [1,N,H]` -> `y [T,1,N,H]`, `hn [1,N,H]`, `cn [1,N,H]`. Weights `W` [1,4H,in], `R` [1,4H,H],
 * `B` [1,8H] in ONNX gate order i, o, f, c, uniform in +-1/sqrt(H).
 */
export function lstmModel(options: LstmOptions = {}): ModelSpec {
  const inputSize = options.inputSize ?? 4;
  const hidden = options.hiddenSize ?? 8;
  const t = options.seqLength ?? 'T';
  const n = options.batch ?? 'N';
  const rng = createRng(options.seed ?? 1);
  const bound = 1 / Math.sqrt(hidden);
  const state = (name: string): { name: string; dataType: number; shape: DimSpec[] } => ({
    name,
    dataType: OnnxDataType.FLOAT,
    shape: [1, n, hidden],
  });
  return {
    producerName: 'quanta-onnx',
    docString: `LSTM ${inputSize}->${hidden}, seed ${options.seed ?? 1}`,
    graph: {
      name: 'lstm',
      nodes: [
        {
          opType: 'LSTM',
          name: 'lstm',
          // sequence_lens (the 5th input) is omitted with an empty name.
          inputs: [LSTM_NAMES.input, 'W', 'R', 'B', '', LSTM_NAMES.h, LSTM_NAMES.c],
          outputs: [LSTM_NAMES.output, LSTM_NAMES.hn, LSTM_NAMES.cn],
          attributes: { hidden_size: { i: hidden } },
        },
      ],
      initializers: [
        floatTensor('W', [1, 4 * hidden, inputSize], uniform(rng, 4 * hidden * inputSize, bound)),
        floatTensor('R', [1, 4 * hidden, hidden], uniform(rng, 4 * hidden * hidden, bound)),
        floatTensor('B', [1, 8 * hidden], uniform(rng, 8 * hidden, bound)),
      ],
      inputs: [
        { name: LSTM_NAMES.input, dataType: OnnxDataType.FLOAT, shape: [t, n, inputSize] },
        state(LSTM_NAMES.h),
        state(LSTM_NAMES.c),
      ],
      outputs: [
        { name: LSTM_NAMES.output, dataType: OnnxDataType.FLOAT, shape: [t, 1, n, hidden] },
        state(LSTM_NAMES.hn),
        state(LSTM_NAMES.cn),
      ],
    },
  };
}

export function buildLstm(options: LstmOptions = {}): Uint8Array {
  return encodeModel(lstmModel(options));
}
