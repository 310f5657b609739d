// The data every scenario sends, identical for smartipc and the baseline.

/** S1, S2, S7: a ~100-byte JSON object (the request and its echo). */
export function smallObject(seq) {
  return { seq, user: 'bench-user-0001', action: 'update', tags: ['alpha', 'beta'], score: 42.5, active: true, note: 'x'.repeat(8) };
}

/** S3, S6: a small one-way message. */
export function tinyObject(seq) {
  return { seq, kind: 'tick', value: 42.5 };
}

/** S4: a JSON-able object of about 1 MiB once stringified (records, like a typical bulk payload). */
export function bigObject(targetBytes = 1024 * 1024) {
  const records = [];
  let size = 20;
  for (let i = 0; size < targetBytes; i++) {
    const record = {
      id: i,
      name: `record-${i}`,
      email: `user${i}@example.com`,
      score: (i * 7919) % 1000 / 10,
      active: i % 3 !== 0,
      tags: ['a', 'b', String(i % 17)],
    };
    records.push(record);
    size += JSON.stringify(record).length + 1;
  }
  return { kind: 'bulk', records };
}

/** S5, S7: the binary source, 1 MiB of non-zero bytes reused for every chunk. */
export function binaryBlock(bytes = 1024 * 1024) {
  const block = Buffer.allocUnsafeSlow(bytes);
  for (let i = 0; i < bytes; i++) block[i] = (i * 31 + 7) & 0xff;
  return block;
}

export const STREAM_CHUNK_BYTES = 64 * 1024;
