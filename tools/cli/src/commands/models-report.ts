import type { registry as pb } from '@quanta/contracts';
import { table } from '../output.js';

/** A byte count for people: 812 B, 1.2 MiB. */
export function humanBytes(n: number | bigint): string {
  const value = Number(n);
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = value;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return u === 0 ? `${value} B` : `${v.toFixed(1)} ${units[u]}`;
}

const ops = (counts: readonly pb.CompressionOpCount[]): string =>
  counts.length === 0 ? '(none)' : counts.map((c) => `${c.op} ×${c.count}`).join(', ');

/** The ops left, one line per reason: `Relu ×2, MaxPool ×2: no float32 constants to rewrite`. */
function leftByReason(counts: readonly pb.CompressionOpCount[]): string[] {
  if (counts.length === 0) return ['(none)'];
  const byReason = new Map<string, pb.CompressionOpCount[]>();
  for (const c of counts) byReason.set(c.reason, [...(byReason.get(c.reason) ?? []), c]);
  return [...byReason].map(([reason, group]) => `${ops(group)}${reason === '' ? '' : `: ${reason}`}`);
}

const figure = (x: number): string => (x === 0 ? '0' : Math.abs(x) >= 0.001 ? x.toFixed(4) : x.toExponential(2));

/** A version's compression report as the `show`, `compress` and `compare` commands print it. */
export function describeCompression(report: pb.CompressionReport): string {
  const params = Object.entries(report.parameters).map(([k, v]) => `${k}=${v}`);
  const before = Number(report.sizeBeforeBytes);
  const after = Number(report.sizeAfterBytes);
  const lines: [string, string][] = [
    ['method', `${report.method}${params.length > 0 ? ` (${params.join(', ')})` : ''}`],
    [
      'size',
      `${humanBytes(before)} → ${humanBytes(after)} (${before === 0 ? '?' : ((after / before) * 100).toFixed(1)}%)`,
    ],
    ['rewritten', ops(report.opsRewritten)],
    ...leftByReason(report.opsLeft).map((line, i): [string, string] => [i === 0 ? 'left float' : '', line]),
    ['calibration', report.calibration?.description ?? ''],
    ...report.latency.map((l): [string, string] => {
      const speedup = (l.p50BeforeMs / l.p50AfterMs).toFixed(2);
      const times = `${l.p50BeforeMs.toFixed(3)} ms → ${l.p50AfterMs.toFixed(3)} ms`;
      return [`p50 batch ${l.batchSize}`, `${times} (${speedup}× as fast, ${l.runs} runs each)`];
    }),
    ['measured on', report.measuredOn],
  ];
  const width = Math.max(...lines.map(([k]) => k.length));
  const accuracy = table(
    ['OUTPUT', 'MAX ABS ERR', 'MEAN ABS ERR', 'COSINE', 'TOP-1 AGREE'],
    report.outputs.map((o) => [
      o.name,
      figure(o.maxAbsError),
      figure(o.meanAbsError),
      o.cosine.toFixed(6),
      o.top1Agreement === undefined ? '-' : `${(o.top1Agreement * 100).toFixed(2)}%`,
    ]),
  );
  return [...lines.map(([k, v]) => `${k.padEnd(width)}  ${v}`), accuracy].join('\n');
}
