// UTF-8 to and from Buffers on the per-frame path. Buffer#write and #toString normalise their
// arguments on every call (about 7 % of a busy sender's or receiver's time in the bench); the
// native routines under them skip that. They are not documented, so they are feature-detected and
// the public methods stay the fallback.

interface INativeUtf8 {
  utf8Write(text: string, offset: number, length: number): number;
  utf8Slice(start: number, end: number): string;
}

const native = Buffer.prototype as unknown as Partial<INativeUtf8>;
const hasNative = typeof native.utf8Write === 'function' && typeof native.utf8Slice === 'function';

/** Writes `text` as UTF-8 at `offset`; the caller guarantees room for text.length * 3 bytes. Returns the bytes written. */
export const writeUtf8: (buf: Buffer, text: string, offset: number) => number = hasNative
  ? (buf, text, offset) => (buf as unknown as INativeUtf8).utf8Write(text, offset, buf.length - offset)
  : (buf, text, offset) => buf.write(text, offset, 'utf8');

/** Decodes buf[start, end) as UTF-8. */
export const readUtf8: (buf: Buffer, start: number, end: number) => string = hasNative
  ? (buf, start, end) => (buf as unknown as INativeUtf8).utf8Slice(start, end)
  : (buf, start, end) => buf.toString('utf8', start, end);
