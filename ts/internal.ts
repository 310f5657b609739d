// What tests (and the package's own CLI and NATS bridge) need beyond the public face. Not exported
// from the package root: nothing here is a stable API.
export * from './index.js';
export * as wire from './interfaces/wire.js';
export { EFrameKind, EPayloadEncoding, FLAG_HAS_ATTACHMENTS, FLAG_HAS_BUDGET, FLAG_HAS_HEADERS, FRAME_KIND_MAX, type IRejectPayload, type IFrame, type IOutgoingFrame, type IHelloPayload, type IWelcomePayload } from './interfaces/wire.js';
export { FrameDecoder, FrameEncoder, encodeFrame, DecodedFrame, detachFrame, type IFrameDecoderSink } from './framing/classes.framecodec.js';
export { FramedLink, type ILinkHandler, type ILinkOptions, type ILinkPeer, type IByteCounters } from './framing/classes.framedlink.js';
export { createMedium, describeEndpoint, resolveEndpoint, mediumModuleFor, toPipePath, type IMedium, type IMediumListener, type IOpenedStream } from './framing/media/index.js';
export { childProcessMedium, parentProcessMedium, readParentLink, PARENT_LINK_ENV } from './framing/media/child.js';
export { IpcConnection, type IConnectionConfig, type IConnectionOwner } from './channel/classes.connection.js';
export { PendingRequests, type IPendingRequest } from './channel/rpc/classes.pendingrequests.js';
export { HandlerContext, currentHandlerContext } from './channel/rpc/classes.handlercontext.js';
export { IdTable } from './channel/rpc/classes.idtable.js';
export { systemClock, type IClock, type TClockTimer } from './channel/clock.js';
export { Heartbeat, type IHeartbeatHost, type IHeartbeatOptions } from './channel/classes.heartbeat.js';
export { Backoff } from './channel/classes.backoff.js';
export { Outbox } from './channel/classes.outbox.js';
export { SendCredit, ReceiveWindow } from './features/streams/classes.creditwindow.js';
export { StreamFeature } from './features/streams/classes.streamfeature.js';
export { encodePayload, encodeInto, decodePayload, isAllowedEncoding, type IEncodedPayload } from './channel/serializer.js';
export { invalidArgument, isIpcErrorCode, toRemoteError } from './smartipc.errors.js';
export { startTimer, clampDelay } from './smartipc.timers.js';
export { isThenable } from './smartipc.thenable.js';
export { resolveClient, resolveServer, resolveChannel, durationMs, count, bytes } from './smartipc.options.js';
export type { IConnectionHost, IConnectionFeature } from './interfaces/hosts.js';
export { createDuplexPair } from './framing/duplexpair.js';

// ---- test seams: reach the connections behind the public classes (never used by the library) ----
import type { IpcServer } from './server/classes.ipcserver.js';
import type { IpcClient } from './client/classes.ipcclient.js';
import type { IpcChannel } from './channel/classes.ipcchannel.js';
import type { IpcConnection } from './channel/classes.connection.js';
import type { EFrameKind as TFrameKind, IFrame as TFrame } from './interfaces/wire.js';

/** The server's connection to one client. */
export function serverConnectionOf(server: IpcServer, clientId: string): IpcConnection | undefined {
  return (server as unknown as { clients: Map<string, { connection: IpcConnection }> }).clients.get(clientId)?.connection;
}

/** The client's (only) connection. */
export function clientConnectionOf(client: IpcClient): IpcConnection {
  return (client as unknown as { connection: IpcConnection }).connection;
}

export function channelConnectionOf(channel: IpcChannel): IpcConnection {
  return (channel as unknown as { connection: IpcConnection }).connection;
}

/** Routes frames of one kind to `onFrame` instead of the feature that owns them (forging tests). */
export function interceptFrames(connection: IpcConnection, kind: TFrameKind, onFrame: (frame: TFrame) => void): void {
  (connection as unknown as { featureByKind: Array<{ frameKinds: readonly TFrameKind[]; onFrame(frame: TFrame): void } | undefined> }).featureByKind[kind] = { frameKinds: [kind], onFrame };
}

/** Fresh zeroed counters (tests that build connections by hand). */
export { emptyMetrics as emptyMetricsForTests } from './smartipc.options.js';

export { createBridgeHooks, type IBridgeHooks, type IBridgeInvocation, type IBridgeCall } from './server/bridgehooks.js';
export { RawPayload, passThrough, isPassThrough } from './channel/rpc/rawpayload.js';
export { CallContext, nextChain, encodeCall, decodeCall, callLabel, joinNames, splitNames } from './features/services/callchain.js';
export { decodeEncoded } from './channel/serializer.js';

export { OutgoingStream, type IOutgoingStreamSpec, type IStreamSendHost } from './features/streams/classes.outgoingstream.js';
export { IncomingStream, type IStreamReceiveHost } from './features/streams/classes.incomingstream.js';
export { FROM_SENDER, FROM_RECEIVER, parseCancelPayload, toCancelPayload, type IStreamOpenPayload, type IStreamEndPayload } from './features/streams/protocol.js';
export { generateClientId } from './client/classes.ipcclient.js';
export { Observer } from './features/observability/classes.observer.js';
export { LatencyRecorder } from './features/observability/classes.latency.js';
export { DeadLetters } from './features/observability/classes.deadletters.js';
export { CircuitBreakers } from './features/policies/circuitbreaker.js';
export { withRetry, resolveRetry } from './features/policies/retry.js';
export { TokenBucket } from './features/security/ratelimit.js';
export { nameMatches, patternCovers, CompiledPermissions } from './features/security/permissions.js';
/** Calls `onFrame` for every frame of one kind before the feature that owns it handles it (observing tests). */
export function observeFrames(connection: IpcConnection, kind: TFrameKind, onFrame: (frame: TFrame) => void): void {
  const features = (connection as unknown as { featureByKind: Array<{ frameKinds: readonly TFrameKind[]; onFrame(frame: TFrame): void } | undefined> }).featureByKind;
  const owner = features[kind];
  features[kind] = {
    frameKinds: [kind],
    onFrame: (frame) => {
      onFrame(frame);
      owner?.onFrame(frame);
    },
  };
}

// A subscription as an iterator or Observable (the NATS client uses them too).
export { subscriptionIterator, subscriptionObservable, type ISubscriptionSource } from './features/pubsub/subscription.adapters.js';

// The library's own diagnostics channel objects (a test spies on them to prove nothing is traced unobserved).
export { requestChannel, handleChannel, streamChannel, connectChannel, disconnectChannel, messageChannel, publishChannel, deadLetterChannel } from './features/observability/tracing.js';

// ---- security test seams -----------------------------------------------------------------------
export { checkJsonDepth } from './framing/jsondepth.js';

/** Fire-and-forget frames (messages, publishes) a server dropped for a permission or its rate limit: kept in a private field, not in getStats(). */
export function serverRefusalsOf(server: IpcServer): { readonly forbidden: number; readonly rateLimited: number } {
  return { ...(server as unknown as { refusals: { forbidden: number; rateLimited: number } }).refusals };
}

/** Connections a server holds that have not completed their handshake (maxPendingHandshakes counts these). */
export function pendingHandshakesOf(server: IpcServer): number {
  return (server as unknown as { handshaking: Map<unknown, number> }).handshaking.size;
}
