/**
 * Throws when JSON text nests deeper than `maxDepth` (V8 parses any depth, taking seconds and
 * hundreds of MiB for millions of levels). One pass over the bytes, strings skipped; about 1 ms
 * per MiB, and skipped for text too short to nest that deep.
 */
export function checkJsonDepth(buf: Buffer, start: number, end: number, maxDepth: number): void {
  if (end - start <= maxDepth * 2) return;
  let depth = 0;
  let i = start;
  while (i < end) {
    const c = buf[i++];
    if (c === 0x22) {
      while (i < end) {
        const d = buf[i++];
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) throw new Error(`JSON nested deeper than maxJsonDepth ${maxDepth}`);
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
}
