// Stream payloads: bytes that differ chunk by chunk (a swapped, repeated or lost chunk changes the
// digest), produced on demand (memory stays flat whatever the size) and hashed as they are made.
import * as crypto from 'node:crypto';
import { Readable, Writable } from 'node:stream';

const BLOCK_BYTES = 1024 * 1024 + 4093; // not a power of two: chunk offsets into it keep moving
let block: Buffer | undefined;

function randomBlock(): Buffer {
  block ??= crypto.randomBytes(BLOCK_BYTES);
  return block;
}

export interface IPatternSource {
  readable: Readable;
  /** The sha256 (hex) of everything the readable produced; resolves when it has ended. */
  sha256: Promise<string>;
}

/** A readable of `bytes` bytes in `chunkSize` chunks: each a fresh copy of a moving window of a random block, stamped with its index. */
export function patternSource(bytes: number, chunkSize = 64 * 1024, seed = 0): IPatternSource {
  const source = randomBlock();
  const hash = crypto.createHash('sha256');
  let produced = 0;
  let index = 0;
  let finish!: (digest: string) => void;
  const sha256 = new Promise<string>((resolve) => (finish = resolve));
  const readable = new Readable({
    highWaterMark: chunkSize,
    read() {
      if (produced >= bytes) {
        finish(hash.digest('hex'));
        this.push(null);
        return;
      }
      const size = Math.min(chunkSize, bytes - produced);
      const offset = ((index + seed) * 7919 * 64) % (BLOCK_BYTES - size);
      const chunk = Buffer.allocUnsafe(size);
      source.copy(chunk, 0, offset, offset + size);
      if (size >= 8) chunk.writeUInt32BE(index >>> 0, 0);
      index++;
      produced += size;
      hash.update(chunk);
      this.push(chunk);
    },
  });
  return { readable, sha256 };
}

/** Consumes a readable, hashing it; resolves with its size and sha256. */
export function hashSink(readable: Readable): Promise<{ bytes: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const hash = crypto.createHash('sha256');
    let bytes = 0;
    const sink = new Writable({
      highWaterMark: 1024 * 1024,
      write(chunk: Buffer, _encoding, callback) {
        bytes += chunk.length;
        hash.update(chunk);
        callback();
      },
    });
    readable.once('error', reject);
    sink.once('finish', () => resolve({ bytes, sha256: hash.digest('hex') }));
    readable.pipe(sink);
  });
}
