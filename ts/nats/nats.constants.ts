// Defaults and names of the ./nats subpath, in one place. Units are in the names.

/** Subject prefix of every subject the bridge uses: one namespace per deployment. */
export const DEFAULT_NATS_NAMESPACE = 'smartipc';

/**
 * NATS header names (NATS headers are case-sensitive as sent; these are what a monitor shows).
 * A request or message that carries none of the optional ones has only From and Src.
 */
export const NATS_HEADER = {
  /** The sender's clientId: the handler's `clientId` argument, a subscriber's `from`. */
  from: 'Sipc-From',
  /** The sending instance (one random id per client or exposure): echo suppression, never shown to users. */
  src: 'Sipc-Src',
  /** The caller's `headers` option, as JSON. */
  headers: 'Sipc-Headers',
  /** Request: the caller's remaining time budget in ms when it was sent (no clock sync needed). */
  timeoutMs: 'Sipc-Timeout-Ms',
  /** Error reply: the IpcError code; the payload is JSON `{ message, remote? }`. */
  error: 'Sipc-Error',
  /** Stream control: open, accept, end, cancel, ping (chunks and credit carry no headers). */
  stream: 'Sipc-Stream',
  /** Stream open: the sender's streamId. */
  streamId: 'Sipc-Stream-Id',
  /** Phase 2 (services): the call's root id, its chain of service names (comma-separated) and W3C trace context. */
  root: 'Sipc-Root',
  chain: 'Sipc-Chain',
  traceparent: 'traceparent',
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
