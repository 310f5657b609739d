// What tests (and the package's own CLI and NATS bridge) need beyond the public face. Not exported
// from the package root: nothing here is a stable API.
export * from './index.js';
export { FrameDecoder, FrameEncoder, encodeFrame, DecodedFrame, detachFrame, type IFrameDecoderSink } from './framing/classes.framecodec.js';
export { IpcTransport, type IIpcListener, type ITransportHandler, type ITransportLimits } from './framing/classes.transport.js';
export { UnixSocketTransport } from './framing/classes.unixsockettransport.js';
export { NamedPipeTransport, toPipePath } from './framing/classes.namedpipetransport.js';
export { TcpTransport } from './framing/classes.tcptransport.js';
export { createTransport } from './framing/transport.factory.js';
export { PendingRequests, type IPendingRequest } from './channel/classes.pendingrequests.js';
export { Heartbeat, type IHeartbeatHost, type IHeartbeatOptions } from './channel/classes.heartbeat.js';
export { Backoff } from './channel/classes.backoff.js';
export { Outbox } from './channel/classes.outbox.js';
export { SendCredit, ReceiveWindow } from './channel/streams/classes.creditwindow.js';
export { encodePayload, decodePayload, serialize, decodeRange, type IEncodedPayload } from './channel/serializer.js';
export { invalidArgument, isIpcErrorCode, toRemoteError } from './smartipc.errors.js';
export * as wire from './interfaces/wire.js';
export { OutgoingStream, type IOutgoingStreamSpec, type IStreamSendHost } from './channel/streams/classes.outgoingstream.js';
export { IncomingStream, type IStreamReceiveHost } from './channel/streams/classes.incomingstream.js';
export { FROM_SENDER, FROM_RECEIVER, parseCancelPayload, toCancelPayload, type IStreamOpenPayload, type IStreamEndPayload } from './channel/streams/protocol.js';
export { generateClientId } from './client/classes.ipcclient.js';
