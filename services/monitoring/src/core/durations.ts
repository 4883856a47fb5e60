/** google.protobuf.Duration as ts-proto gives it. */
export interface ProtoDuration {
  seconds: bigint;
  nanos: number;
}

export const durationMs = (d: ProtoDuration | undefined): number =>
  d === undefined ? 0 : Number(d.seconds) * 1000 + d.nanos / 1e6;

export const toDuration = (ms: number): ProtoDuration => {
  const seconds = Math.floor(ms / 1000);
  return { seconds: BigInt(seconds), nanos: Math.round((ms - seconds * 1000) * 1e6) };
};
