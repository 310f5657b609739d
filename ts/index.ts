// The public face of @push.rocks/smartipc.
export { SmartIpc, type IWaitForServerOptions, type ISpawnAndConnectOptions } from './classes.smartipc.js';
export { IpcServer, type IClientInfo, type IIpcServerStats } from './server/classes.ipcserver.js';
export { IpcClient, type IIpcClientStats } from './client/classes.ipcclient.js';
export {
  TopicTrie,
  topicMatches,
  describeInvalidPattern,
  describeInvalidTopic,
  assertValidPattern,
  assertValidTopic,
} from './channel/classes.topictrie.js';
export type * from './interfaces/pubsub.js';
export { IpcChannel } from './channel/classes.ipcchannel.js';
export { IpcStandaloneChannel } from './channel/classes.standalonechannel.js';
export { IpcTransport, type IIpcListener } from './framing/classes.transport.js';
export { UnixSocketTransport } from './framing/classes.unixsockettransport.js';
export { NamedPipeTransport, toPipePath } from './framing/classes.namedpipetransport.js';
export { TcpTransport } from './framing/classes.tcptransport.js';
export { createTransport } from './framing/transport.factory.js';
export { FrameDecoder, FrameEncoder, encodeFrame, type IFrameDecoderSink } from './framing/classes.framecodec.js';
export { IpcError, isIpcError, IPC_ERROR_CODES, type TIpcErrorCode, type IRemoteError } from './smartipc.errors.js';
export * from './interfaces/wire.js';
export type * from './interfaces/options.js';
export type * from './interfaces/events.js';
export type * from './interfaces/streams.js';
export * as defaults from './smartipc.defaults.js';
