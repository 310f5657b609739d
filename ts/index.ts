// The public face of @push.rocks/smartipc. Internals (codec, links, media) are in internal.ts, for tests.
export { SmartIpc, type IWaitForServerOptions, type ISpawnAndConnectOptions, type IForkedChild } from './classes.smartipc.js';
export { IpcServer, type IClientInfo, type IIpcServerStats } from './server/classes.ipcserver.js';
export { IpcClient, type IIpcClientStats } from './client/classes.ipcclient.js';
export { IpcChannel, type IIpcChannelStats } from './channel/classes.ipcchannel.js';
export {
  TopicTrie,
  topicMatches,
  describeInvalidPattern,
  describeInvalidTopic,
  assertValidPattern,
  assertValidTopic,
} from './features/pubsub/classes.topictrie.js';
export { IpcError, isIpcError, IPC_ERROR_CODES, type TIpcErrorCode, type IRemoteError, type IIpcErrorOptions } from './smartipc.errors.js';
export type { TSerialization } from './interfaces/wire.js';
export type * from './interfaces/options.js';
export type * from './interfaces/events.js';
export type * from './interfaces/streams.js';
export type * from './interfaces/pubsub.js';
export type * from './interfaces/services.js';
export type * from './interfaces/security.js';
export type * from './interfaces/observability.js';
export type { ITraceContext, IStreamTraceContext, IConnectTrace, IMessageTrace, IPublishTrace } from './features/observability/tracing.js';
export type { IServerIntrospection } from './server/introspection.js';
export * as defaults from './smartipc.defaults.js';
export { Observable } from './plugins.rxjs.js';
