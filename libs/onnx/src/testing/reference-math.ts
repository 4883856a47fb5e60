// Plain TypeScript forward passes, written from the ONNX operator definitions, used as the second
// source for the outputs of the built models (accumulation in float64).
import type { ModelSpec } from '../model-spec.js';

/** A named initializer's values as float32 (raw data is little-endian). */
export function weightOf(spec: ModelSpec, name: string): Float32Array {
  const t = spec.graph.initializers.find((i) => i.name === name);
  if (t === undefined || !(t.raw instanceof Uint8Array)) throw new Error(`no initializer ${name}`);
  const view = new DataView(t.raw.buffer, t.raw.byteOffset, t.raw.byteLength);
  return Float32Array.from({ length: t.raw.length / 4 }, (_, i) => view.getFloat32(i * 4, true));
}

/** Gemm with transB = 1: y[n,m] = x[n,k] . w[m,k]^T + b[m]. */
export function gemm(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  n: number,
  k: number,
  m: number,
): Float64Array {
  const y = new Float64Array(n * m);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++) {
      let s = b[j]!;
      for (let q = 0; q < k; q++) s += x[i * k + q]! * w[j * k + q]!;
      y[i * m + j] = s;
    }
  return y;
}

export const relu = (x: Float64Array): Float64Array => x.map((v) => Math.max(0, v));

/** 3x3 convolution, stride 1, zero padding 1, NCHW: [n,c,h,w] * [o,c,3,3] + b[o] -> [n,o,h,w]. */
export function conv3x3(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  n: number,
  c: number,
  h: number,
  wd: number,
  o: number,
): Float64Array {
  const y = new Float64Array(n * o * h * wd);
  for (let ni = 0; ni < n; ni++)
    for (let oi = 0; oi < o; oi++)
      for (let yi = 0; yi < h; yi++)
        for (let xi = 0; xi < wd; xi++) {
          let s = b[oi]!;
          for (let ci = 0; ci < c; ci++)
            for (let ky = 0; ky < 3; ky++)
              for (let kx = 0; kx < 3; kx++) {
                const iy = yi + ky - 1;
                const ix = xi + kx - 1;
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                s += x[((ni * c + ci) * h + iy) * wd + ix]! * w[((oi * c + ci) * 3 + ky) * 3 + kx]!;
              }
          y[((ni * o + oi) * h + yi) * wd + xi] = s;
        }
  return y;
}

/** 2x2 max pooling, stride 2, NCHW. */
export function maxPool2(x: ArrayLike<number>, n: number, c: number, h: number, w: number): Float64Array {
  const oh = h / 2;
  const ow = w / 2;
  const y = new Float64Array(n * c * oh * ow);
  for (let p = 0; p < n * c; p++)
    for (let yi = 0; yi < oh; yi++)
      for (let xi = 0; xi < ow; xi++) {
        let m = -Infinity;
        for (let dy = 0; dy < 2; dy++)
          for (let dx = 0; dx < 2; dx++) m = Math.max(m, x[(p * h + yi * 2 + dy) * w + xi * 2 + dx]!);
        y[(p * oh + yi) * ow + xi] = m;
      }
  return y;
}

/** Softmax over each row of [n, m]. */
export function softmaxRows(x: Float64Array, n: number, m: number): Float64Array {
  const y = new Float64Array(n * m);
  for (let i = 0; i < n; i++) {
    const row = x.subarray(i * m, (i + 1) * m);
    const max = Math.max(...row);
    const e = row.map((v) => Math.exp(v - max));
    const sum = e.reduce((a, b) => a + b, 0);
    for (let j = 0; j < m; j++) y[i * m + j] = e[j]! / sum;
  }
  return y;
}

const sigmoid = (v: number): number => 1 / (1 + Math.exp(-v));

/**
 * One forward LSTM layer as the ONNX LSTM spec writes it (gate order i, o, f, c; f = sigmoid,
 * g = h = tanh; no peepholes): it = f(Xt.Wi^T + Ht-1.Ri^T + Wbi + Rbi), ft likewise, ct~ = g(...),
 * Ct = ft*Ct-1 + it*ct~, ot = f(...), Ht = ot*h(Ct). x [T,N,I], h0/c0 [N,H] -> y [T,N,H], hn, cn.
 */
export function lstmForward(
  x: ArrayLike<number>,
  h0: ArrayLike<number>,
  c0: ArrayLike<number>,
  W: ArrayLike<number>,
  R: ArrayLike<number>,
  B: ArrayLike<number>,
  T: number,
  N: number,
  I: number,
  H: number,
): { y: Float64Array; hn: Float64Array; cn: Float64Array } {
  let h = Float64Array.from(h0);
  let c = Float64Array.from(c0);
  const y = new Float64Array(T * N * H);
  // Row r of gate g: W row g*H + r; B holds Wb (4H) then Rb (4H).
  const gate = (g: number, r: number, t: number, n: number): number => {
    const row = g * H + r;
    let s = B[row]! + B[4 * H + row]!;
    for (let q = 0; q < I; q++) s += x[(t * N + n) * I + q]! * W[row * I + q]!;
    for (let q = 0; q < H; q++) s += h[n * H + q]! * R[row * H + q]!;
    return s;
  };
  for (let t = 0; t < T; t++) {
    const hNext = new Float64Array(N * H);
    const cNext = new Float64Array(N * H);
    for (let n = 0; n < N; n++)
      for (let r = 0; r < H; r++) {
        const i = sigmoid(gate(0, r, t, n));
        const o = sigmoid(gate(1, r, t, n));
        const f = sigmoid(gate(2, r, t, n));
        const g = Math.tanh(gate(3, r, t, n));
        const ct = f * c[n * H + r]! + i * g;
        cNext[n * H + r] = ct;
        hNext[n * H + r] = o * Math.tanh(ct);
      }
    h = hNext;
    c = cNext;
    y.set(h, t * N * H);
  }
  return { y, hn: h, cn: c };
}
