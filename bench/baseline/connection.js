// One framed connection of the baseline: a FrameWriter, a FrameReader and request correlation by id.
import * as net from 'node:net';
import { once } from 'node:events';
import { FrameReader, FrameWriter, KIND, parseJson } from './framer.js';

const RESOLVED = Promise.resolve();

/**
 * Requests awaiting their response, in a power-of-two slot array indexed by `id & mask`. Ids are
 * sequential, so slots rarely collide (the table doubles when they do). Not a Map on purpose: a
 * Map with constant set/delete churn keeps rehashing, and once a mark-compact has moved one of
 * its tables to old space, the obsolete tables chain young entries into old space (every
 * scavenge then promotes megabytes and takes milliseconds).
 */
class PendingTable {
  constructor(capacity = 1024) {
    this.ids = new Uint32Array(capacity);
    this.resolvers = new Array(capacity).fill(undefined);
    this.mask = capacity - 1;
  }

  add(id, resolve) {
    while (this.ids[id & this.mask] !== 0) this.grow();
    this.ids[id & this.mask] = id;
    this.resolvers[id & this.mask] = resolve;
  }

  take(id) {
    const slot = id & this.mask;
    if (this.ids[slot] !== id) return undefined;
    const resolve = this.resolvers[slot];
    this.ids[slot] = 0;
    this.resolvers[slot] = undefined;
    return resolve;
  }

  /** Every pending resolver, removed. */
  drain() {
    const all = this.resolvers.filter((r) => r !== undefined);
    this.ids.fill(0);
    this.resolvers.fill(undefined);
    return all;
  }

  grow() {
    const { ids, resolvers } = this;
    this.ids = new Uint32Array(ids.length * 2);
    this.resolvers = new Array(ids.length * 2).fill(undefined);
    this.mask = ids.length * 2 - 1;
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] !== 0) {
        this.ids[ids[i] & this.mask] = ids[i];
        this.resolvers[ids[i] & this.mask] = resolvers[i];
      }
    }
  }
}

export class Connection {
  /** `onFrame(kind, id, buf, start, end)` receives every frame that is not a response. */
  constructor(socket, onFrame = () => {}) {
    this.socket = socket;
    this.writer = new FrameWriter(socket);
    this.pending = new PendingTable();
    this.nextId = 1;
    this.onFrame = onFrame;
    this.drain = undefined;
    const reader = new FrameReader((kind, id, buf, start, end) => {
      if (kind === KIND.RES) {
        this.pending.take(id)?.(parseJson(buf, start, end));
      } else {
        this.onFrame(kind, id, buf, start, end);
      }
    });
    socket.setNoDelay?.(true);
    socket.on('data', (chunk) => reader.push(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      const error = new Error('baseline connection closed');
      for (const resolve of this.pending.drain()) resolve(Promise.reject(error));
    });
  }

  request(data) {
    const id = this.nextId;
    this.nextId = id >= 0xffffffff ? 1 : id + 1;
    this.writer.writeString(KIND.REQ, id, JSON.stringify(data));
    return new Promise((resolve) => this.pending.add(id, resolve));
  }

  /** Fire-and-forget; resolves when the caller may send more (after 'drain' when the socket is full). */
  send(kind, data) {
    this.writer.writeString(kind, 0, data === undefined ? '' : JSON.stringify(data));
    return this.drained();
  }

  /** One shared promise per full socket (not a listener per caller), and one shared resolved promise otherwise. */
  drained() {
    if (!this.writer.needsDrain) return RESOLVED;
    this.writer.flush();
    this.drain ??= once(this.socket, 'drain').then(
      () => {
        this.drain = undefined;
      },
      () => {
        this.drain = undefined;
      },
    );
    return this.drain;
  }

  close() {
    this.writer.flush();
    this.socket.end();
  }
}

export function connect(socketPath, onFrame) {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ path: socketPath });
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.removeListener('error', reject);
      resolve(new Connection(socket, onFrame));
    });
  });
}
