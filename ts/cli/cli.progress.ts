// A one-line progress bar for a transfer on a terminal: bar, percentage, bytes, rate and ETA,
// redrawn in place at most every REDRAW_INTERVAL_MS and cleared when done.
import { formatBytes, formatDuration, type Painter } from './cli.format.js';

const REDRAW_INTERVAL_MS = 100;

export interface IProgressSnapshot {
  bytes: number;
  total: number;
  elapsedMs: number;
}

/** The bar's text for a width (pure, so it is testable): `[=====>    ]  45%  4.5 MiB / 10.0 MiB  8.3 MiB/s  ETA 1.2 s`. */
export function renderProgress({ bytes, total, elapsedMs }: IProgressSnapshot, columns: number, painter: Painter): string {
  const fraction = total > 0 ? Math.min(1, bytes / total) : 1;
  const rate = elapsedMs > 0 ? (bytes / elapsedMs) * 1000 : 0;
  const eta = rate > 0 ? ((total - bytes) / rate) * 1000 : Infinity;
  const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
  const amounts = `${formatBytes(bytes)} / ${formatBytes(total)}`;
  const speed = `${formatBytes(Math.round(rate))}/s`;
  const remaining = fraction >= 1 ? 'done' : `ETA ${Number.isFinite(eta) ? formatDuration(eta) : '?'}`;
  const info = `${percent}  ${amounts}  ${speed}  ${remaining}`;
  const barWidth = Math.max(10, Math.min(40, columns - info.length - 4));
  const filled = Math.round(fraction * barWidth);
  const bar = '='.repeat(Math.max(0, filled - (fraction < 1 ? 1 : 0))) + (fraction < 1 && filled > 0 ? '>' : '') + ' '.repeat(barWidth - filled);
  return `[${painter.paint('green', bar)}] ${info}`;
}

export class ProgressBar {
  private readonly startedAt = performance.now();
  private lastDrawAt = -Infinity;
  private bytes = 0;
  private drawnWidth = 0;

  constructor(
    private readonly total: number,
    private readonly write: (text: string) => void,
    private readonly columns: () => number,
    private readonly painter: Painter,
  ) {
    this.draw();
  }

  public update(bytes: number): void {
    this.bytes = bytes;
    if (performance.now() - this.lastDrawAt >= REDRAW_INTERVAL_MS) this.draw();
  }

  /** Draws the final state and leaves the line (or clears it with `clear`). */
  public finish({ clear = false } = {}): void {
    this.draw();
    this.write(clear ? `\r${' '.repeat(this.drawnWidth)}\r` : '\n');
  }

  private draw(): void {
    this.lastDrawAt = performance.now();
    const text = renderProgress({ bytes: this.bytes, total: this.total, elapsedMs: this.lastDrawAt - this.startedAt }, this.columns() - 1, this.painter);
    const width = text.replace(/\u001b\[[0-9;]*m/g, '').length;
    // Pad over a longer previous line; \r returns to the start without scrolling.
    this.write(`\r${text}${' '.repeat(Math.max(0, this.drawnWidth - width))}`);
    this.drawnWidth = Math.max(width, this.drawnWidth);
  }
}
