/** Metadata sent with a stream; `sendFile` fills the file fields (the caller's meta wins on conflict). */
export interface IStreamMeta {
  /** 'file' for `sendFile`. */
  type?: string;
  /** The file's name without its directory (`sendFile`). */
  basename?: string;
  /** The file's size in bytes when sending started (`sendFile`). */
  size?: number;
  [key: string]: unknown;
}

/** What the receiver learns about a stream with the `stream (info, readable)` event. */
export interface IStreamInfo {
  /** The sender's id for this stream; use it to cancel. */
  streamId: string;
  meta: IStreamMeta;
  /** The sender's `headers` ({} when none). */
  headers: Record<string, unknown>;
  /** The sending client's id, on a server. undefined on a client or a standalone channel. */
  clientId?: string;
  /** The peer that sends: its clientId seen from a server, the server's id seen from a client. */
  peerId: string;
  /** true: the readable yields objects (one per chunk the sender wrote), false: Buffers. */
  objectMode: boolean;
}

/** What a stream can be read from: a node Readable (or any async iterable of chunks). */
export type TStreamSource = NodeJS.ReadableStream | AsyncIterable<unknown>;

export interface ISendStreamOptions {
  /** Delivered to the receiver as `info.meta`. Serialized like a message (JSON or structured clone). */
  meta?: IStreamMeta;
  /** Largest chunk frame payload in bytes; bigger source chunks are split (without copying). @default 64 KiB */
  chunkSize?: number;
  /** The stream's id, unique among this side's open outgoing streams. @default a random UUID */
  streamId?: string;
  /** Aborting cancels the stream: the receiver's readable errors with STREAM_CANCELLED, the send rejects with ABORTED. */
  signal?: AbortSignal;
  /** Small JSON object delivered as `info.headers`. */
  headers?: Record<string, unknown>;
  /**
   * true: every chunk the source yields is a value (serialized like a message), and the receiver's
   * readable is in object mode. @default the source's `readableObjectMode`
   */
  objectMode?: boolean;
  /** 'sha256': the sender hashes what it sends and the receiver checks it before ending its readable. @default 'none' for sendStream, 'sha256' for sendFile */
  checksum?: 'sha256' | 'none';
}

export type ISendFileOptions = ISendStreamOptions;
