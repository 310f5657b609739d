import * as plugins from '../plugins.js';

/**
 * Two connected in-memory Duplex streams: what one writes, the other reads. Ending one ends the
 * other's readable side. For tests of the layers above the link, and for in-process links.
 */
export function createDuplexPair(): [plugins.stream.Duplex, plugins.stream.Duplex] {
  let left!: plugins.stream.Duplex;
  let right!: plugins.stream.Duplex;
  const make = (other: () => plugins.stream.Duplex) =>
    new plugins.stream.Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        // A fresh copy: received bytes are never reused (see IFrame), and the writer may reuse its buffer.
        other().push(Buffer.from(chunk));
        callback();
      },
      final(callback) {
        other().push(null);
        callback();
      },
      destroy(error, callback) {
        const peer = other();
        if (!peer.destroyed) peer.destroy();
        callback(error);
      },
    });
  left = make(() => right);
  right = make(() => left);
  return [left, right];
}
