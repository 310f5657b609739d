// Every import of the ./nats subpath, in one place: node built-ins, then the library (through its
// index and internal faces, and the two pieces named below), then types of the NATS client. The NATS client itself is loaded
// at run time by NatsBridge.connect (dynamic import), never here: importing the package root, or
// even this subpath, does not load it.
import * as crypto from 'node:crypto';
import * as events from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as stream from 'node:stream';
import * as util from 'node:util';
import * as v8 from 'node:v8';

export { crypto, events, fs, path, stream, util, v8 };

export * as smartipc from '../internal.js';
// Two core pieces internal.ts does not list: the async context that nested requests and calls read
// (a service method called over NATS must run in it, like one called through the hub), and the
// rule for service and method names.
export { handlerContextStorage } from '../channel/rpc/classes.handlercontext.js';
export { assertValidName } from '../features/services/callchain.js';

export type {
  NatsConnection,
  NodeConnectionOptions,
  Msg,
  MsgHdrs,
  Subscription,
  Status,
} from '@nats-io/transport-node';

/** The part of `@nats-io/transport-node` the bridge uses, as loaded by `import()`. */
export type TNatsModule = typeof import('@nats-io/transport-node');
