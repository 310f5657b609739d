// One framed connection of the baseline: a FrameWriter, a FrameReader and request correlation by id.
import * as net from 'node:net';
import { once } from 'node:events';
import { FrameReader, FrameWriter, KIND, parseJson } from './framer.js';

export class Connection {
  /** `onFrame(kind, id, buf, start, end)` receives every frame that is not a response. */
  constructor(socket, onFrame = () => {}) {
    this.socket = socket;
    this.writer = new FrameWriter(socket);
    this.pending = new Map();
    this.nextId = 1;
    this.onFrame = onFrame;
    const reader = new FrameReader((kind, id, buf, start, end) => {
      if (kind === KIND.RES) {
        const resolve = this.pending.get(id);
        this.pending.delete(id);
        resolve?.(parseJson(buf, start, end));
      } else {
        this.onFrame(kind, id, buf, start, end);
      }
    });
    socket.setNoDelay?.(true);
    socket.on('data', (chunk) => reader.push(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      const error = new Error('baseline connection closed');
      for (const resolve of this.pending.values()) resolve(Promise.reject(error));
      this.pending.clear();
    });
  }

  request(data) {
    const id = this.nextId;
    this.nextId = id >= 0xffffffff ? 1 : id + 1;
    this.writer.writeString(KIND.REQ, id, JSON.stringify(data));
    return new Promise((resolve) => this.pending.set(id, resolve));
  }

  /** Fire-and-forget; resolves when the caller may send more (after 'drain' when the socket is full). */
  send(kind, data) {
    this.writer.writeString(kind, 0, data === undefined ? '' : JSON.stringify(data));
    return this.drained();
  }

  drained() {
    if (!this.writer.needsDrain) return Promise.resolve();
    this.writer.flush();
    return once(this.socket, 'drain');
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
