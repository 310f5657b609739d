// A peer that speaks the wire format by hand: frames built byte by byte (any flags, any payload,
// malformed ones included), a handshake done over a plain socket, and the frames the server sends
// back decoded with the library's own decoder. For tests that forge what a real client never sends.
import * as net from 'node:net';
import assert from 'node:assert/strict';
import { EFrameKind, FLAG_HAS_BUDGET, type IFrame, type TSerialization } from '../../ts/internal.js';
import { collectFrames, helloFrame, rawConnect, uniqueId, waitUntil, type TClientEndpoint } from './fixtures.js';

export interface IRawFrame {
  kind: EFrameKind;
  /** The whole flags byte, as sent (encoding bits, attachments bit...); the budget bit is added when `budgetMs` is given. */
  flags: number;
  id?: number;
  type?: string;
  budgetMs?: number;
  payload?: Buffer | string;
}

/** One frame's bytes, exactly as described: nothing is checked, so it may be anything a hostile peer sends. */
export function rawFrame(frame: IRawFrame): Buffer {
  const type = Buffer.from(frame.type ?? '', 'utf8');
  const payload = frame.payload === undefined ? Buffer.alloc(0) : Buffer.isBuffer(frame.payload) ? frame.payload : Buffer.from(frame.payload, 'utf8');
  const hasBudget = frame.budgetMs !== undefined;
  const header = Buffer.alloc(4 + 8 + type.length + (hasBudget ? 4 : 0));
  header.writeUInt32BE(header.length - 4 + payload.length, 0);
  header.writeUInt8(frame.kind, 4);
  header.writeUInt8(frame.flags | (hasBudget ? FLAG_HAS_BUDGET : 0), 5);
  header.writeUInt32BE(frame.id ?? 0, 6);
  header.writeUInt16BE(type.length, 10);
  type.copy(header, 12);
  if (hasBudget) header.writeUInt32BE(frame.budgetMs!, 12 + type.length);
  return Buffer.concat([header, payload]);
}

/**
 * A JSON payload with an attachment table, as the serializer lays it out: u32 count, count x u32
 * length, the JSON text, the attachments' bytes. `count` and `lengths` may lie (malformed tables).
 */
export function attachmentPayload(json: string, attachments: Buffer[], lie: { count?: number; lengths?: number[] } = {}): Buffer {
  const count = lie.count ?? attachments.length;
  const lengths = lie.lengths ?? attachments.map((a) => a.length);
  const table = Buffer.alloc(4 + 4 * lengths.length);
  table.writeUInt32BE(count, 0);
  lengths.forEach((length, i) => table.writeUInt32BE(length, 4 + 4 * i));
  return Buffer.concat([table, Buffer.from(json, 'utf8'), ...attachments]);
}

export interface IRawPeer {
  socket: net.Socket;
  clientId: string;
  /** Every frame received so far (the WELCOME first). */
  frames: IFrame[];
  write(bytes: Buffer): void;
  /** Waits for the first frame after index `from` that matches. */
  nextFrame(predicate: (frame: IFrame) => boolean, ms?: number, from?: number): Promise<IFrame>;
  destroy(): void;
}

/** Connects a plain socket, says HELLO with the given serialization and waits for the WELCOME. */
export async function connectRawPeer(endpoint: TClientEndpoint, serverId: string, serialization: TSerialization = 'json'): Promise<IRawPeer> {
  const socket = await rawConnect(endpoint);
  socket.on('error', () => undefined);
  const frames = collectFrames(socket);
  const clientId = uniqueId('rawpeer');
  socket.write(helloFrame({ serverId, clientId, serialization }));
  await waitUntil(() => frames.length > 0, 5_000, 'WELCOME');
  assert.equal(frames[0].kind, EFrameKind.Welcome, `expected a WELCOME, got kind ${frames[0].kind}: ${frames[0].payload.toString()}`);
  const peer: IRawPeer = {
    socket,
    clientId,
    frames,
    write: (bytes) => void socket.write(bytes),
    nextFrame: async (predicate, ms = 5_000, from = 1) => {
      let found: IFrame | undefined;
      await waitUntil(() => (found = frames.slice(from).find(predicate)) !== undefined, ms, 'a matching frame');
      return found!;
    },
    destroy: () => socket.destroy(),
  };
  return peer;
}
