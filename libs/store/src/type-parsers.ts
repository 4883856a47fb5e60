/** Postgres type oids whose JS representation both backends must agree on. */
export const OID = {
  INT8: 20,
  INT8_ARRAY: 1016,
  BYTEA: 17,
  TIMESTAMPTZ: 1184,
  JSONB: 3802,
  JSON: 114,
  INTERVAL: 1186,
} as const;

/** int8 as bigint on both backends: a Number would silently lose precision above 2^53. */
export function parseInt8(value: string): bigint {
  return BigInt(value);
}

/** Applies `parseInt8` through nested arrays of strings (pg's bigint[] parser yields strings). */
export function int8Elements(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(int8Elements);
  return typeof value === 'string' ? BigInt(value) : value;
}
