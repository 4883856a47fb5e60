/** The buffers without their first n bytes (views into them, never copies). */
export function dropPrefix(parts: readonly Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  let skip = n;
  for (const part of parts) {
    if (skip >= part.length) skip -= part.length;
    else {
      out.push(skip > 0 ? part.subarray(skip) : part);
      skip = 0;
    }
  }
  return out;
}
