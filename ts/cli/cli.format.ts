// Pure formatting: colours (on or off), values as readable JSON-like text, values as JSON-safe
// documents, tables, sizes and durations. Nothing here writes anywhere.

const ANSI = {
  bold: [1, 22],
  dim: [2, 22],
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  blue: [34, 39],
  magenta: [35, 39],
  cyan: [36, 39],
} as const;

export type TStyle = keyof typeof ANSI;

/** Paints text when colours are on; the identity otherwise. */
export class Painter {
  constructor(public readonly enabled: boolean) {}

  public paint(style: TStyle, text: string): string {
    if (!this.enabled || text === '') return text;
    const [open, close] = ANSI[style];
    return `\u001b[${open}m${text}\u001b[${close}m`;
  }
}

/**
 * Whether a stream gets colours: never with NO_COLOR (any non-empty value, no-color.org), else
 * with FORCE_COLOR (non-zero), else only on a TTY that has colours.
 */
export function wantsColors(stream: NodeJS.WriteStream, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '') return env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false';
  if (!stream.isTTY) return false;
  return typeof stream.hasColors === 'function' ? stream.hasColors() : true;
}

// eslint-disable-next-line no-control-regex
const ANSI_PATTERN = /\u001b\[[0-9;]*m/g;

/** Width of text as shown (colour codes take no room). */
export function visibleLength(text: string): number {
  return text.replace(ANSI_PATTERN, '').length;
}

function padEnd(text: string, width: number): string {
  return text + ' '.repeat(Math.max(0, width - visibleLength(text)));
}

/** Aligned columns with a header row; the last column is not padded. */
export function formatTable(headers: string[], rows: string[][], painter: Painter): string {
  const widths = headers.map((header, i) => Math.max(visibleLength(header), ...rows.map((row) => visibleLength(row[i] ?? ''))));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : padEnd(cell, widths[i])))
      .join('  ')
      .trimEnd();
  return [painter.paint('bold', line(headers.map((h, i) => padEnd(h, widths[i])))), ...rows.map(line)].join('\n');
}

/** Label/value lines with the labels aligned. */
export function formatFields(fields: Array<[label: string, value: string]>, painter: Painter): string {
  const width = Math.max(...fields.map(([label]) => label.length));
  return fields.map(([label, value]) => `${painter.paint('dim', label.padEnd(width))}  ${value}`).join('\n');
}

function isBinary(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array;
}

function binaryBytes(value: Uint8Array): Buffer {
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/**
 * A value as JSON can carry it, for --json: binary data becomes `{ "$base64": "..." }`, a BigInt
 * its decimal string, a Map `{ "$map": [[key, value], ...] }`, a Set an array, a Date its ISO
 * string, an Error `{ name, message }`, undefined null (in arrays) or nothing (in objects).
 */
export function toJsonSafe(value: unknown, seen: WeakSet<object> = new WeakSet()): unknown {
  if (value === undefined || value === null) return null;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (typeof value !== 'object') return typeof value === 'function' || typeof value === 'symbol' ? null : value;
  if (isBinary(value)) return { $base64: binaryBytes(value).toString('base64') };
  if (ArrayBuffer.isView(value)) return Array.from(value as unknown as ArrayLike<number | bigint>, (n) => (typeof n === 'bigint' ? n.toString() : n));
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (seen.has(value)) return '[Circular]';
  seen.add(value);
  try {
    if (value instanceof Error) return { name: value.name, message: value.message };
    if (value instanceof Map) return { $map: [...value].map(([k, v]) => [toJsonSafe(k, seen), toJsonSafe(v, seen)]) };
    if (value instanceof Set) return [...value].map((v) => toJsonSafe(v, seen));
    if (Array.isArray(value)) return value.map((v) => toJsonSafe(v, seen));
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value)) {
      if (v !== undefined && typeof v !== 'function' && typeof v !== 'symbol') out[key] = toJsonSafe(v, seen);
    }
    return out;
  } finally {
    seen.delete(value);
  }
}

/** One JSON document on one line (what --json prints). */
export function jsonLine(value: unknown): string {
  return JSON.stringify(toJsonSafe(value));
}

const BINARY_PREVIEW_BYTES = 24;

/**
 * A value for people: JSON layout (so plain data can be copied back into a command), keys, strings,
 * numbers and literals coloured, binary data as `<Buffer N bytes: hex...>`. `indent` 0: one line.
 */
export function formatValue(value: unknown, painter: Painter, indent = 2): string {
  const seen = new WeakSet<object>();
  const nl = indent > 0 ? '\n' : '';
  const sep = indent > 0 ? ': ' : ':';
  const render = (v: unknown, depth: number): string => {
    const pad = ' '.repeat(indent * (depth + 1));
    const closePad = ' '.repeat(indent * depth);
    if (v === null) return painter.paint('magenta', 'null');
    if (v === undefined) return painter.paint('dim', 'undefined');
    if (typeof v === 'string') return painter.paint('green', JSON.stringify(v));
    if (typeof v === 'number') return painter.paint('yellow', String(v));
    if (typeof v === 'bigint') return painter.paint('yellow', `${v}n`);
    if (typeof v === 'boolean') return painter.paint('magenta', String(v));
    if (typeof v !== 'object') return painter.paint('dim', String(v));
    if (isBinary(v)) {
      const bytes = binaryBytes(v);
      const hex = bytes.subarray(0, BINARY_PREVIEW_BYTES).toString('hex');
      return painter.paint('cyan', `<Buffer ${bytes.length} bytes${bytes.length ? `: ${hex}${bytes.length > BINARY_PREVIEW_BYTES ? '...' : ''}` : ''}>`);
    }
    if (v instanceof Date) return painter.paint('magenta', Number.isNaN(v.getTime()) ? 'Invalid Date' : v.toISOString());
    if (seen.has(v)) return painter.paint('dim', '[Circular]');
    seen.add(v);
    try {
      const list = (open: string, close: string, items: string[]) =>
        items.length === 0 ? `${open}${close}` : `${open}${nl}${items.map((item) => `${pad}${item}`).join(`,${nl}`)}${nl}${closePad}${close}`;
      if (v instanceof Error) return painter.paint('red', `${v.name}: ${v.message}`);
      if (Array.isArray(v)) return list('[', ']', v.map((item) => render(item, depth + 1)));
      if (v instanceof Set) return `Set ${list('[', ']', [...v].map((item) => render(item, depth + 1)))}`;
      if (v instanceof Map) return `Map ${list('{', '}', [...v].map(([k, item]) => `${render(k, depth + 1)} => ${render(item, depth + 1)}`))}`;
      const entries = Object.entries(v).filter(([, item]) => item !== undefined && typeof item !== 'function');
      return list('{', '}', entries.map(([key, item]) => `${painter.paint('cyan', JSON.stringify(key))}${sep}${render(item, depth + 1)}`));
    } finally {
      seen.delete(v);
    }
  };
  return render(value, 0);
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1536 -> '1.5 KiB'. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${BYTE_UNITS[unit]}`;
}

/** 0.4 -> '0.40 ms', 850 -> '850 ms', 3723000 -> '1 h 2 min'. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const totalMin = Math.floor(s / 60);
  if (totalMin < 60) return `${totalMin} min ${Math.floor(s % 60)} s`;
  const h = Math.floor(totalMin / 60);
  if (h < 48) return `${h} h ${totalMin % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** How long ago an epoch-ms time was: '3 ms ago', '2.2 s ago', '5 min 3 s ago'. */
export function formatAgo(epochMs: number, now = Date.now()): string {
  if (typeof epochMs !== 'number' || !Number.isFinite(epochMs)) return '?';
  const ms = Math.max(0, now - epochMs);
  return `${ms < 1000 ? `${Math.round(ms)} ms` : formatDuration(ms)} ago`;
}

/** An epoch-ms time as '2025-01-01 12:00:00 (5 min ago)'. */
export function formatTimeAgo(epochMs: number, now = Date.now()): string {
  if (typeof epochMs !== 'number' || !Number.isFinite(epochMs)) return '?';
  return `${formatClock(epochMs, true)} (${formatAgo(epochMs, now)})`;
}

/** Local wall-clock time, 'HH:MM:SS.mmm' (with the date when asked). */
export function formatClock(epochMs: number, withDate = false): string {
  const d = new Date(epochMs);
  const two = (n: number) => String(n).padStart(2, '0');
  const clock = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  if (withDate) return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${clock}`;
  return `${clock}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

/** 1234567 -> '1,234,567'. */
export function formatCount(n: unknown): string {
  return typeof n === 'number' && Number.isFinite(n) ? n.toLocaleString('en-US') : String(n);
}
