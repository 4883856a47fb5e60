/** Postgres type oids whose JS representation both backends must agree on. */
export const OID = { INT8: 20, BYTEA: 17, TIMESTAMPTZ: 1184, JSONB: 3802, JSON: 114 } as const;

/** int8 as bigint on both backends: a Number would silently lose precision above 2^53. */
export function parseInt8(value: string): bigint {
  return BigInt(value);
}
