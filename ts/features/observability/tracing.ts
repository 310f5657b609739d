// Tracing the Node way: diagnostics_channel. APM agents and OpenTelemetry subscribe to these
// without patching anything; when nobody does, nothing is built (every publisher checks
// hasSubscribers first).
//
//   smartipc:request  TracingChannel  caller side: a request, call or peer request (start .. asyncEnd)
//   smartipc:handle   TracingChannel  handler side: a handler or service method
//   smartipc:stream   TracingChannel  a stream sent (start .. asyncEnd when the receiver has it all)
//   smartipc:connect, smartipc:disconnect, smartipc:message, smartipc:publish, smartipc:deadLetter  plain channels
import * as plugins from '../../plugins.js';
import type { IDeadLetter } from '../../interfaces/observability.js';
import { isThenable } from '../../smartipc.thenable.js';

/**
 * The context object of a traced request or handler: the same object goes to start, end,
 * asyncStart, asyncEnd and error (with `result` or `error` added). Never payload data. `headers`
 * may be written by a `start` subscriber before the request is encoded (add a `traceparent`).
 */
export interface ITraceContext {
  /** The message type, or `service.method`. */
  type: string;
  /** The other side: the server's id seen from a client, the clientId seen from a server. */
  peerId: string;
  /** The request's correlation id on its connection (0 until it is sent). */
  id: number;
  service?: string;
  method?: string;
  headers: Record<string, unknown>;
  /** Frame bytes sent (request side) or received (handler side). */
  bytes: number;
  result?: unknown;
  error?: unknown;
}

/** The context of a traced stream. */
export interface IStreamTraceContext {
  streamId: string;
  peerId: string;
  meta: Record<string, unknown>;
  result?: unknown;
  error?: unknown;
}

export const requestChannel = plugins.diagnosticsChannel.tracingChannel<ITraceContext, ITraceContext>('smartipc:request');
export const handleChannel = plugins.diagnosticsChannel.tracingChannel<ITraceContext, ITraceContext>('smartipc:handle');
export const streamChannel = plugins.diagnosticsChannel.tracingChannel<IStreamTraceContext, IStreamTraceContext>('smartipc:stream');
export const connectChannel = plugins.diagnosticsChannel.channel('smartipc:connect');
export const disconnectChannel = plugins.diagnosticsChannel.channel('smartipc:disconnect');
export const messageChannel = plugins.diagnosticsChannel.channel('smartipc:message');
export const publishChannel = plugins.diagnosticsChannel.channel('smartipc:publish');
export const deadLetterChannel = plugins.diagnosticsChannel.channel('smartipc:deadLetter');

/** What `smartipc:connect` and `smartipc:disconnect` carry. */
export interface IConnectTrace {
  /** 'server': a server admitted a client; 'client': a client or channel connected. */
  side: 'server' | 'client';
  peerId: string;
  transport: string;
  /** `smartipc:disconnect` only. */
  code?: string;
}

/** What `smartipc:message` carries: a fire-and-forget message sent or received. */
export interface IMessageTrace {
  direction: 'sent' | 'received';
  type: string;
  peerId: string;
}

/** What `smartipc:publish` carries: a publish the broker fanned out. */
export interface IPublishTrace {
  topic: string;
  from: string;
  /** Clients it was queued for. */
  deliveredTo: number;
}

export function publishDeadLetter(letter: IDeadLetter): void {
  if (!deadLetterChannel.hasSubscribers) return;
  const { data: _data, ...withoutData } = letter;
  deadLetterChannel.publish(withoutData);
}

/**
 * TracingChannel#tracePromise, except that the resolved value is not put on the context
 * (`context.result`): contexts never carry payload data. start's stores are bound around `fn`;
 * a synchronous throw is published like a rejection (end, error, asyncStart, asyncEnd).
 */
export function traceWithoutResult<C extends object, T>(channel: plugins.diagnosticsChannel.TracingChannel<C, C>, context: C, fn: () => Promise<T>): Promise<T> {
  return traceMaybeAsync(channel, context, fn) as Promise<T>;
}

/**
 * Traces `fn`, which may answer synchronously (a handler) or with a promise: start, end, then
 * asyncStart and asyncEnd when it settles (error before them when it fails), on one context. A
 * synchronous answer publishes them at once and is returned as it is, so a traced synchronous
 * handler costs no promise.
 */
export function traceMaybeAsync<C extends object>(channel: plugins.diagnosticsChannel.TracingChannel<C, C>, context: C, fn: () => unknown): unknown {
  const { start, end, asyncStart, asyncEnd, error } = channel as unknown as Record<'start' | 'end' | 'asyncStart' | 'asyncEnd' | 'error', plugins.diagnosticsChannel.Channel & { runStores<R>(context: C, fn: () => R): R }>;
  const settled = (failed: boolean, err?: unknown): void => {
    if (failed) {
      (context as { error?: unknown }).error = err;
      error.publish(context);
    }
    asyncStart.publish(context);
    asyncEnd.publish(context);
  };
  return start.runStores(context, () => {
    let result: unknown;
    try {
      result = fn();
    } catch (err) {
      end.publish(context);
      settled(true, err);
      throw err;
    }
    end.publish(context);
    if (isThenable(result)) {
      return Promise.resolve(result).then(
        (value) => {
          settled(false);
          return value;
        },
        (err: unknown) => {
          settled(true, err);
          throw err;
        },
      );
    }
    settled(false);
    return result;
  });
}
