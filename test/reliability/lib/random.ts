// A seeded PRNG (mulberry32): a failing run can be repeated with RELIABILITY_SEED=<seed>.

export class Random {
  private state: number;

  constructor(public readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** [0, 1) */
  public next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  public int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  public pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  public bytes(length: number): Buffer {
    const buf = Buffer.allocUnsafe(length);
    for (let i = 0; i < length; i++) buf[i] = Math.floor(this.next() * 256);
    return buf;
  }

  /** Splits `bytes` into 1..max pieces at random offsets. */
  public split(bytes: Buffer, maxPieces: number): Buffer[] {
    const pieces = this.int(1, Math.min(maxPieces, Math.max(1, bytes.length)));
    const cuts = new Set<number>();
    while (cuts.size < pieces - 1) cuts.add(this.int(1, bytes.length - 1));
    const sorted = [...cuts].sort((a, b) => a - b);
    const out: Buffer[] = [];
    let at = 0;
    for (const cut of sorted) {
      out.push(bytes.subarray(at, cut));
      at = cut;
    }
    out.push(bytes.subarray(at));
    return out;
  }
}

/** RELIABILITY_SEED, or a fresh seed. */
export function seedFromEnv(): number {
  const env = Number(process.env.RELIABILITY_SEED);
  return Number.isInteger(env) && env > 0 ? env : (Date.now() ^ (process.pid << 8)) >>> 0;
}
