// Measurements from outside a process: RSS, peak RSS, CPU time and open fds read from /proc, so
// they work for any pid (a child that is SIGSTOPped included) and never ask the process itself.
// Linux only, like the suite (the scenarios SIGKILL, SIGSTOP and ulimit their children).
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';

export const MIB = 1024 * 1024;
export const KIB = 1024;

/** Milliseconds on a scale shared by every process of the machine (epoch, sub-ms resolution). */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

let clockTicks: number | undefined;

/** Clock ticks per second of /proc/<pid>/stat CPU times (usually 100). */
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

function statusField(pid: number, field: string): number | undefined {
  try {
    const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return match ? Number(match[1]) * KIB : undefined;
  } catch {
    return undefined;
  }
}

/** Resident set size of a process in bytes (undefined when it is gone). */
export function rssOf(pid: number = process.pid): number | undefined {
  return statusField(pid, 'VmRSS');
}

/** The kernel's lifetime peak RSS of a process in bytes: it cannot miss a short spike. */
export function peakRssOf(pid: number = process.pid): number | undefined {
  return statusField(pid, 'VmHWM');
}

/**
 * Open file descriptors of a process (undefined when it is gone). libuv's one inotify descriptor
 * per loop is not counted: the first fs.watch (a client watching for its server's socket file)
 * opens it and libuv keeps it for the life of the process, so it is no leak.
 */
export function fdsOf(pid: number = process.pid): number | undefined {
  try {
    const dir = `/proc/${pid}/fd`;
    let count = 0;
    for (const fd of fs.readdirSync(dir)) {
      let target = '';
      try {
        target = fs.readlinkSync(`${dir}/${fd}`);
      } catch {
        continue; // closed meanwhile
      }
      if (target !== 'anon_inode:inotify') count++;
    }
    return count;
  } catch {
    return undefined;
  }
}

/** User + system CPU time of a process in ms. */
export function cpuMsOf(pid: number = process.pid): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) in parentheses: utime is the 12th, stime the 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) / ticksPerSecond()) * 1000;
  } catch {
    return undefined;
  }
}

/** Whether a process exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** CPU use of a process over `ms`, in percent of one core. */
export async function cpuPercentOver(pid: number, ms: number): Promise<number | undefined> {
  const before = cpuMsOf(pid);
  const t0 = performance.now();
  await sleep(ms);
  const after = cpuMsOf(pid);
  if (before === undefined || after === undefined) return undefined;
  return ((after - before) / (performance.now() - t0)) * 100;
}

/** Samples a process's RSS every `everyMs`; `stop()` returns the samples and the peak seen. */
export function sampleRss(pid: number, everyMs = 100): { stop(): { peak: number; samples: Array<[number, number]> } } {
  const samples: Array<[number, number]> = [];
  let peak = 0;
  const take = () => {
    const rss = rssOf(pid);
    if (rss === undefined) return;
    samples.push([now(), rss]);
    if (rss > peak) peak = rss;
  };
  take();
  const timer = setInterval(take, everyMs);
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
      take();
      return { peak, samples };
    },
  };
}

// ---- small statistics ------------------------------------------------------------------------

/** The q-quantile (0..1), nearest rank. NaN for no values. */
export function quantile(values: ArrayLike<number>, q: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank];
}

export function maxOf(values: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) if (values[i] > max) max = values[i];
  return max;
}

/** Least-squares slope of [x, y] points (y per unit of x). */
export function slope(points: Array<[number, number]>): number {
  const n = points.length;
  if (n < 2) return 0;
  let sx = 0;
  let sy = 0;
  for (const [x, y] of points) {
    sx += x;
    sy += y;
  }
  const mx = sx / n;
  const my = sy / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

// ---- formatting ------------------------------------------------------------------------------

export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (Math.abs(ms) >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (Math.abs(ms) >= 10) return `${Math.round(ms)} ms`;
  return `${ms.toFixed(1)} ms`;
}

export function fmtMiB(bytes: number): string {
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

export function fmtBytes(bytes: number): string {
  if (bytes >= 1024 * MIB && bytes % (1024 * MIB) === 0) return `${bytes / (1024 * MIB)} GiB`;
  if (bytes >= MIB) return `${+(bytes / MIB).toFixed(1)} MiB`;
  if (bytes >= KIB) return `${+(bytes / KIB).toFixed(1)} KiB`;
  return `${bytes} B`;
}

/**
 * RSS growth of a process from now on: the peak of RSS sampled every `everyMs` and of the kernel's
 * high-water mark (when it moved past where it was at the start), minus RSS at the start.
 */
export class RssWatch {
  public readonly baseBytes: number;
  private readonly hwmBase: number;
  private readonly sampler: ReturnType<typeof sampleRss>;

  constructor(private readonly pid: number = process.pid, everyMs = 50) {
    this.baseBytes = rssOf(pid) ?? 0;
    this.hwmBase = peakRssOf(pid) ?? 0;
    this.sampler = sampleRss(pid, everyMs);
  }

  /** Stops sampling; growth in bytes (never negative) and the samples. */
  public stop(): { growthBytes: number; peakBytes: number; samples: Array<[number, number]> } {
    const { peak, samples } = this.sampler.stop();
    const hwm = peakRssOf(this.pid) ?? 0;
    const peakBytes = Math.max(peak, hwm > this.hwmBase ? hwm : 0);
    return { growthBytes: Math.max(0, peakBytes - this.baseBytes), peakBytes, samples };
  }
}

/** Theil–Sen slope of [x, y] points: the median of the pairwise slopes, robust to a few jumps. */
export function robustSlope(points: Array<[number, number]>): number {
  const slopes: number[] = [];
  for (let i = 0; i < points.length; i++) {
    for (let j = i + 1; j < points.length; j++) {
      const dx = points[j][0] - points[i][0];
      if (dx !== 0) slopes.push((points[j][1] - points[i][1]) / dx);
    }
  }
  return slopes.length === 0 ? 0 : quantile(slopes, 0.5);
}
