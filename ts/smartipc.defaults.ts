// Every default and bound of the library, in one place. Units are in the names.

/**
 * Wire protocol version sent in the handshake; both ends must speak the same one. 2: deadline
 * budgets, raw binary attachments, cancel frames, services and peer frames (docs/protocol.md).
 */
export const PROTOCOL_VERSION = 2;

export const DEFAULT_MAX_MESSAGE_SIZE_BYTES = 8 * 1024 * 1024;
export const DEFAULT_SERIALIZATION = 'json' as const;

export const DEFAULT_HEARTBEAT_ENABLED = true;
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 5_000;
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 15_000;
export const DEFAULT_HEARTBEAT_INITIAL_GRACE_MS = 5_000;
export const DEFAULT_HEARTBEAT_THROW_ON_TIMEOUT = false;

export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
export const DEFAULT_REGISTER_TIMEOUT_MS = 5_000;
export const DEFAULT_STOP_GRACE_MS = 5_000;
export const DEFAULT_MAX_CLIENTS = Infinity;
export const DEFAULT_MAX_CONCURRENT_STREAMS = 32;
/** Services: the longest call chain the hub routes (order -> user -> role is 3). */
export const DEFAULT_MAX_CALL_DEPTH = 16;

export const DEFAULT_CONNECT_RETRY = {
  enabled: false,
  initialDelay: 100,
  maxDelay: 1_500,
  maxAttempts: 10,
  totalTimeout: 15_000,
} as const;

export const DEFAULT_RECONNECT = {
  enabled: true,
  initialDelay: 100,
  maxDelay: 5_000,
  maxAttempts: Infinity,
} as const;

/** Backoff grows by this factor per attempt; jitter spreads a retry over +-this fraction. */
export const BACKOFF_MULTIPLIER = 2;
export const BACKOFF_JITTER_FRACTION = 0.2;
/**
 * After the endpoint changed (a socket file appeared), failed attempts are retried every
 * ENDPOINT_SETTLE_POLL_MS for ENDPOINT_SETTLE_MS instead of backing off: a server that has bound
 * its file refuses connections until it listens, a moment later.
 */
export const ENDPOINT_SETTLE_MS = 200;
export const ENDPOINT_SETTLE_POLL_MS = 10;

/** Messages and requests issued while reconnecting wait here, bounded by count and bytes. */
export const DEFAULT_OUTBOX_MAX_MESSAGES = 1_000;
export const DEFAULT_OUTBOX_MAX_BYTES = 16 * 1024 * 1024;

/** Node's timers overflow past 2^31-1 ms and fire at once; every delay is clamped to this. */
export const MAX_TIMER_DELAY_MS = 2_147_483_647;

/** Small frames are copied into one slab and written together; larger payloads are written by reference. */
export const WRITE_SLAB_BYTES = 64 * 1024;
export const WRITE_COPY_THRESHOLD_BYTES = 16 * 1024;
/**
 * A frame that spans socket reads is joined when its last byte arrives; from this size on it is
 * assembled in place once three quarters have arrived (later chunks copied while fresh).
 */
export const ASSEMBLE_IN_PLACE_FROM_BYTES = 256 * 1024;
/**
 * Frames sent while a received chunk is being dispatched (answers to a batch of requests) are
 * written once this much is queued, instead of after the whole chunk: the peer can work on the
 * first answers meanwhile. 4 KiB doubled pipelined request throughput between two processes.
 */
export const EARLY_FLUSH_BYTES = 4 * 1024;
/** A transport asks its callers to wait for 'drain' once this much is queued but not yet flushed to the kernel. */
export const WRITE_HIGH_WATER_MARK_BYTES = 1024 * 1024;

/** Pub/sub: bytes queued for one client (not yet taken by its socket) past which publishes to it are dropped until it drains. */
export const DEFAULT_PUBSUB_MAX_QUEUED_BYTES = 8 * 1024 * 1024;
/** Pub/sub: messages a subscribeIterator holds for a consumer that has not asked for them yet (the oldest goes first). */
export const DEFAULT_SUBSCRIBE_ITERATOR_MAX_BUFFERED = 1_000;

/** Streams: payload bytes per chunk frame when the caller does not say. */
export const DEFAULT_STREAM_CHUNK_SIZE_BYTES = 64 * 1024;
/**
 * Bytes a receiver lets a sender have in flight or buffered unread per stream (its credit window).
 * 4 MiB: ~5-8 % more throughput than 1 MiB on a Unix socket; 8 MiB gained little more for twice the
 * worst case (maxConcurrentStreams windows per connection).
 */
export const STREAM_WINDOW_BYTES = 4 * 1024 * 1024;
/**
 * Streams: unsent bytes on a link past which a sending stream waits for the socket to drain. Requests
 * queue behind them: 256 KiB halves request latency during a stream against 1 MiB, at the same throughput.
 */
export const STREAM_SEND_QUEUE_BYTES = 256 * 1024;
/** Object-mode streams: values a receiver's readable buffers before it stops granting credit. */
export const STREAM_OBJECT_HIGH_WATER_MARK = 256;
/** Object-mode streams: what one value costs in credit beyond its encoded bytes (so tiny values are bounded too). */
export const STREAM_OBJECT_CHUNK_OVERHEAD_BYTES = 32;

/** `connect({ waitForReady })` without a waitTimeout. */
export const DEFAULT_WAIT_FOR_READY_TIMEOUT_MS = 10_000;
/** SmartIpc.waitForServer and spawnAndConnect without a timeoutMs. */
export const DEFAULT_WAIT_FOR_SERVER_TIMEOUT_MS = 10_000;
export const DEFAULT_SPAWN_TIMEOUT_MS = 15_000;
/** One probe's handshake in waitForServer. */
export const PROBE_HANDSHAKE_TIMEOUT_MS = 2_000;
/** waitForServer probes with backoff from this delay up to the next one. */
export const WAIT_FOR_SERVER_INITIAL_DELAY_MS = 25;
export const WAIT_FOR_SERVER_MAX_DELAY_MS = 500;
/** The readiness probe of `start({ readyWhen: 'accepting' })`: a plain connect must be accepted within this. */
export const READINESS_PROBE_TIMEOUT_MS = 2_000;
/** Before removing a socket file: how long a connect may take before the file counts as live. */
export const SOCKET_PROBE_TIMEOUT_MS = 1_000;
/** SmartIpc.fork: the child must call connectParent() and complete the handshake within this. */
export const DEFAULT_FORK_TIMEOUT_MS = 10_000;
/** A peer that never closes its side after our end() is destroyed after this. */
export const END_DESTROY_AFTER_MS = 2_000;

/** Security: a connection that has not completed its handshake by then is closed. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000;
/** Security: connections still in their handshake beyond this many are closed at once. */
export const DEFAULT_MAX_PENDING_HANDSHAKES = 64;
/**
 * Past maxPendingHandshakes, a pending handshake is closed to make room only once it has waited
 * this long (ms): a burst of clients that connect at once is accepted faster than their HELLOs can
 * be read, and none of them should be closed for it.
 */
export const PENDING_HANDSHAKE_GRACE_MS = 250;
/** Security: the largest frame accepted before the handshake completes (a HELLO needs well under 1 KiB). */
export const DEFAULT_HANDSHAKE_MAX_FRAME_BYTES = 16 * 1024;
/** Security: a frame that began to arrive must be complete within this. */
export const DEFAULT_FRAME_TIMEOUT_MS = 10_000;
/** Security: bytes all connections of a server may hold for incomplete frames together. */
export const DEFAULT_MAX_PARTIAL_FRAME_BYTES = 256 * 1024 * 1024;
/** Security: decoded JSON nested deeper than this is refused (V8 parses any depth, slowly). */
export const DEFAULT_MAX_JSON_DEPTH = 1_000;
/** How often a server looks for frames that take too long to arrive. */
export const FRAME_TIMEOUT_SWEEP_MS = 1_000;

/** Dead letters kept for getDeadLetters(). */
export const DEFAULT_DEAD_LETTER_CAPACITY = 1_000;
/** A dead letter carries its data only when the encoded payload is at most this big. */
export const DEAD_LETTER_MAX_DATA_BYTES = 64 * 1024;
/** Latency metrics cover the current window and the previous one. */
export const LATENCY_WINDOW_MS = 60_000;
/** Latency metrics keep at most this many keys (types, service.method); later ones count as '(other)'. */
export const LATENCY_MAX_KEYS = 256;
/** Handlers of fire-and-forget messages are timed one call in this many per type (a power of two); every call is counted. */
export const LATENCY_SAMPLE_EVERY = 8;

/** Retry (opt-in): defaults of IRetryOptions. */
export const DEFAULT_RETRY = { initialDelay: 50, maxDelay: 1_000, on: ['CONNECTION_LOST', 'SERVICE_NOT_FOUND', 'NOT_CONNECTED', 'TIMEOUT'] } as const;
/** Circuit breaker (opt-in): defaults of ICircuitBreakerOptions. */
export const DEFAULT_CIRCUIT_BREAKER = { failureThreshold: 5, resetTimeoutMs: 10_000, on: ['TIMEOUT', 'CONNECTION_LOST', 'NOT_CONNECTED', 'SERVICE_NOT_FOUND', 'SERVER_UNAVAILABLE'] } as const;
