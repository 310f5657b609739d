// Defaults and names of the ./nats subpath, in one place. Units are in the names.

/** Subject prefix of every subject the bridge uses: one namespace per deployment. */
export const DEFAULT_NATS_NAMESPACE = 'smartipc';

/**
 * NATS header names (NATS headers are case-sensitive as sent; these are what a monitor shows).
 * A request or message that carries none of the optional ones has only From (and Src on publishes);
 * a successful JSON reply carries none.
 */
export const NATS_HEADER = {
  /** The sender's clientId: the handler's `peerId`, a subscriber's `from`, a service method's `callerId`. */
  from: 'Sipc-From',
  /** The sending instance (one random id per client or exposure): echo suppression, never shown to users. */
  src: 'Sipc-Src',
  /** How the payload is encoded (see NATS_ENCODING); absent: JSON (or undefined when the payload is empty). */
  encoding: 'Sipc-Enc',
  /** The caller's `headers` option, as JSON (without traceparent, which travels in its own header). */
  headers: 'Sipc-Headers',
  /** Request or call: the caller's remaining time budget in ms when it was sent (no clock sync needed). */
  timeoutMs: 'Sipc-Timeout-Ms',
  /** Error reply: the IpcError code; the payload is JSON `{ message, remote? }`. */
  error: 'Sipc-Error',
  /** Stream control: open, accept, end, cancel, ping (chunks and credit carry no headers). */
  stream: 'Sipc-Stream',
  /** Stream open: the sender's streamId. */
  streamId: 'Sipc-Stream-Id',
  /** Service call: the root id of its call chain (URI-encoded). */
  root: 'Sipc-Root',
  /** Service call: the chain's service names so far, the callee last, each URI-encoded, comma-separated; the depth is its length. */
  chain: 'Sipc-Chain',
  /** W3C trace context, passed through unchanged between `headers.traceparent` and NATS. */
  traceparent: 'traceparent',
} as const;

/** Values of the Sipc-Enc header. JSON, the common case, is the header's absence. */
export const NATS_ENCODING = {
  json: 'json',
  /** node:v8 structured clone (serialization 'advanced'). */
  v8: 'v8',
  /** The payload is the bytes of a Buffer / Uint8Array, raw. */
  binary: 'binary',
  /**
   * JSON with nested Buffers: u32 count, u32 length per Buffer, the JSON text (placeholders where
   * the Buffers were), then the Buffers' bytes (the frame layout of the core's flag bit 4).
   */
  jsonAttachments: 'json+attachments',
} as const;

/** nats.js reconnects 10 times by default and then gives up; smartipc clients are stubborn by default. */
export const DEFAULT_NATS_MAX_RECONNECT_ATTEMPTS = -1;

/** After a reconnect, sends that waited in the outbox go out once the server ids they address answer again, at most this long (ms). */
export const DEFAULT_NATS_RECOVERY_TIMEOUT_MS = 10_000;
/** Presence probes during recovery and waitForReady: first retry delay and its cap (ms). */
export const NATS_PROBE_INITIAL_DELAY_MS = 25;
export const NATS_PROBE_MAX_DELAY_MS = 500;
/** One presence probe's own timeout (ms). */
export const NATS_PROBE_TIMEOUT_MS = 1_000;

/** Streams: bytes a receiver lets a sender have in flight or buffered unread (its credit window). */
export const NATS_STREAM_WINDOW_BYTES = 2 * 1024 * 1024;
/** Streams: a side that has sent nothing for this long sends a ping, so the other knows it is alive (ms). */
export const NATS_STREAM_PING_INTERVAL_MS = 2_000;
/** Streams: a peer silent for this long is gone: the stream fails with CONNECTION_LOST (ms). */
export const NATS_STREAM_PEER_TIMEOUT_MS = 10_000;
/** Streams: room left beside a chunk under the server's max_payload. */
export const NATS_STREAM_CHUNK_HEADROOM_BYTES = 256;
/** Streams: open streams per client or exposure and direction. */
export const DEFAULT_NATS_MAX_CONCURRENT_STREAMS = 32;

/** Bytes of NATS header framing per message beside the names and values ("NATS/1.0\r\n", "\r\n\r\n"). */
export const NATS_HEADER_OVERHEAD_BYTES = 16;

/** close(): how long the NATS connection may take to drain before it is closed anyway (ms). */
export const NATS_CLOSE_DRAIN_TIMEOUT_MS = 5_000;

/** Services: a list request (`<ns>.svclist`) gathers answers until none came for this long (ms)... */
export const NATS_SERVICE_LIST_STALL_MS = 100;
/** ...or at most this long (ms). */
export const NATS_SERVICE_LIST_MAX_WAIT_MS = 1_000;
/** Services: the "does anyone provide it?" probe after a no-responders answer, at most this long (ms). */
export const NATS_SERVICE_PROBE_TIMEOUT_MS = 1_000;
/** Handlers serving NATS callers are aborted at their deadline with this granularity (ms): never early, at most this late. */
export const NATS_DEADLINE_GRANULARITY_MS = 10;
