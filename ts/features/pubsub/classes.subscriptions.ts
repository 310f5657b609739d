import * as plugins from '../../plugins.js';
import { IpcError, invalidArgument, isIpcErrorCode } from '../../smartipc.errors.js';
import { EFrameKind, EPayloadEncoding, type IFrame, type TSerialization } from '../../interfaces/wire.js';
import type { IConnectionFeature, IConnectionHost } from '../../interfaces/hosts.js';
import { startTimer } from '../../smartipc.timers.js';
import type {
  IClientPubSubStats,
  IPublishInfo,
  IPublishedMessage,
  ISubscribeIteratorOptions,
  ISubscribeOptions,
  TSubscriptionHandler,
} from '../../interfaces/pubsub.js';
import { TopicTrie, PUBLISH_FROM_SEPARATOR, assertValidPattern, assertValidTopic } from './classes.topictrie.js';
import { subscriptionIterator, subscriptionObservable, type ISubscriptionSource } from './subscription.adapters.js';
import { encodePayload, type IEncodedPayload } from '../../channel/serializer.js';
import { debug } from '../../smartipc.log.js';
import { isThenable } from '../../smartipc.thenable.js';
import type { Observer } from '../observability/classes.observer.js';

/** What the registry needs from its client. */
export interface ISubscriptionsHost {
  channel: IConnectionHost;
  /** Dead letters: messages dropped from a full iterator, handlers that threw, publishes that did not decode. */
  observer: Pick<Observer, 'deadLetter'>;
  serialization: TSerialization;
  /** How long a subscribe waits for the server's acknowledgement (the client's requestTimeout). */
  ackTimeoutMs: number;
  /** Connected, or reconnecting (a subscribe made now is acknowledged after the reconnect). */
  isLive(): boolean;
  emitError(error: IpcError): void;
}

interface IHandlerRecord {
  handler: TSubscriptionHandler;
  /** Called when the handler is removed by unsubscribe or because the client stopped (iterators and Observables end). */
  onEnd?: () => void;
}

/** One pattern (in one queue group, or none) this client is subscribed to, with every local handler of it. */
interface IPatternEntry {
  readonly pattern: string;
  /** The queue group: of all its members whose pattern matches, one receives each publish. */
  readonly queue?: string;
  /** `pattern`, or `pattern` U+0000 `queue`: the registry key. */
  readonly key: string;
  readonly handlers: Map<TSubscriptionHandler, IHandlerRecord>;
  /** The server has acknowledged it on the current connection. */
  acked: boolean;
  /** Id of the SUBSCRIBE in flight, 0 when none. */
  ackId: number;
  /** subscribe() calls waiting for the acknowledgement. */
  waiters: Set<IWaiter>;
}

interface IWaiter {
  resolve(): void;
  reject(error: Error): void;
  /** The record this call added (undefined when the handler was already subscribed): removed again if the call fails. */
  added?: IHandlerRecord;
  timer: NodeJS.Timeout | undefined;
}

interface IPendingAck {
  kind: EFrameKind.Subscribe | EFrameKind.Unsubscribe;
  entry?: IPatternEntry;
  resolve?: () => void;
}

const EMPTY: IEncodedPayload = { encoding: EPayloadEncoding.None, payload: undefined };

/** A SUBSCRIBE or UNSUBSCRIBE names its queue group in a JSON payload; ordinary ones are empty. */
function queuePayload(entry: IPatternEntry): IEncodedPayload {
  return entry.queue === undefined ? EMPTY : { encoding: EPayloadEncoding.Json, payload: JSON.stringify({ queue: entry.queue }) };
}

/** Why a queue group name is not usable, or undefined. */
export function describeInvalidQueue(queue: unknown): string | undefined {
  if (typeof queue !== 'string' || queue.length === 0) return `a queue group name must be a non-empty string, got ${JSON.stringify(queue)}`;
  if (queue.includes(PUBLISH_FROM_SEPARATOR)) return 'a queue group name must not contain U+0000';
  if (queue.length > 256) return 'a queue group name must be at most 256 characters';
  return undefined;
}
const MAX_ACK_ID = 0xffffffff;
/** PUBLISH types (topic and publisher) whose dispatch is remembered, so a stream of publishes to a few topics skips the trie walk. */
const DISPATCH_CACHE_MAX_TYPES = 256;
/** Longer types are dispatched without the cache, so it holds at most a few hundred KiB. */
const DISPATCH_CACHE_MAX_TYPE_LENGTH = 256;

/** How to dispatch one PUBLISH frame type: its topic, its publisher and the entries whose pattern matches the topic. */
interface IDispatch {
  readonly topic: string;
  readonly from: string;
  /** A delivery for one queue group (only that group's entries get it), or undefined for ordinary subscribers. */
  readonly queue: string | undefined;
  readonly entries: IPatternEntry[];
}

/**
 * The client's side of pub/sub. Its own pattern registry is the source of truth: the server holds
 * a copy per connection, which is rebuilt after every (re)connection by sending each pattern
 * again. SUBSCRIBE and UNSUBSCRIBE frames carry an id; the server answers with a frame of the
 * same kind and id (empty payload: done; JSON `{ code, message }`: refused). Publishes arrive as
 * PUBLISH frames (type: the concrete topic, then U+0000 and the publisher's clientId unless the
 * server published it) and are dispatched to every local handler whose pattern matches.
 */
export class ClientSubscriptions implements IConnectionFeature {
  public readonly frameKinds = [EFrameKind.Subscribe, EFrameKind.Unsubscribe, EFrameKind.Publish] as const;
  private readonly entries = new Map<string, IPatternEntry>();
  private readonly trie = new TopicTrie<IPatternEntry>();
  /** PUBLISH frame type -> its dispatch; emptied whenever the trie changes. */
  private readonly dispatchCache = new Map<string, IDispatch>();
  private readonly pendingAcks = new Map<number, IPendingAck>();
  private lastAckId = 0;
  private published = 0;
  private received = 0;
  private droppedLocally = 0;

  constructor(private readonly host: ISubscriptionsHost) {}

  public onFrame(frame: IFrame): void {
    if (frame.kind === EFrameKind.Publish) this.onPublish(frame);
    else this.onAck(frame);
  }

  /** Every (re)connection: the server learns every pattern again before anything the user sends. */
  public onConnect(): void {
    this.restore();
  }

  public onDisconnect(): void {
    this.onConnectionLost();
  }

  // ---- public operations (IpcClient delegates here) --------------------------------------------

  /** Resolves once the server has acknowledged the pattern, so a publish after it is delivered. */
  public subscribe<T>(pattern: string, typedHandler: TSubscriptionHandler<T>, options: ISubscribeOptions = {}, onEnd?: () => void): Promise<void> {
    // The registry holds handlers of every data type; T is the caller's claim about the payload.
    const handler = typedHandler as TSubscriptionHandler;
    try {
      assertValidPattern(pattern);
      if (typeof handler !== 'function') throw invalidArgument('subscribe needs a handler function');
      if (options === null || typeof options !== 'object') throw invalidArgument('subscribe options must be an object');
      if (options.queue !== undefined) {
        const problem = describeInvalidQueue(options.queue);
        if (problem !== undefined) throw invalidArgument(problem);
      }
    } catch (err) {
      return Promise.reject(err);
    }
    if (!this.host.isLive()) {
      return Promise.reject(new IpcError('NOT_CONNECTED', `cannot subscribe to "${pattern}": not connected (call connect() first)`));
    }
    const queue = options.queue;
    const key = queue === undefined ? pattern : pattern + PUBLISH_FROM_SEPARATOR + queue;
    let entry = this.entries.get(key);
    const isNew = entry === undefined;
    if (entry === undefined) {
      entry = { pattern, key, ...(queue !== undefined ? { queue } : {}), handlers: new Map(), acked: false, ackId: 0, waiters: new Set() };
      this.entries.set(key, entry);
      this.trie.add(pattern, entry);
      this.dispatchCache.clear();
    }
    let added: IHandlerRecord | undefined;
    if (!entry.handlers.has(handler)) {
      added = { handler, onEnd };
      entry.handlers.set(handler, added);
    }
    if (entry.acked) return Promise.resolve();
    const target = entry;
    const promise = new Promise<void>((resolve, reject) => {
      const waiter: IWaiter = {
        resolve,
        reject,
        added,
        timer: startTimer(() => {
          target.waiters.delete(waiter);
          this.rollback(target, waiter.added);
          reject(new IpcError('TIMEOUT', `subscribe to "${pattern}" was not acknowledged within ${this.host.ackTimeoutMs} ms`));
        }, this.host.ackTimeoutMs),
      };
      target.waiters.add(waiter);
    });
    // While reconnecting, the restore after the reconnect sends it.
    if (isNew && this.host.channel.isConnected) this.sendSubscribe(entry);
    return promise;
  }

  /**
   * Removes one handler, or every handler of the pattern (ordinary and in queue groups); the
   * server forgets a subscription when no handler is left on it.
   */
  public unsubscribe(pattern: string, handler?: TSubscriptionHandler): Promise<void> {
    try {
      assertValidPattern(pattern);
    } catch (err) {
      return Promise.reject(err);
    }
    const removals: Promise<void>[] = [];
    for (const entry of [...this.entries.values()]) {
      if (entry.pattern !== pattern) continue;
      const removed: IHandlerRecord[] = [];
      if (handler === undefined) {
        removed.push(...entry.handlers.values());
        entry.handlers.clear();
      } else {
        const record = entry.handlers.get(handler);
        if (record === undefined) continue;
        entry.handlers.delete(handler);
        removed.push(record);
      }
      for (const record of removed) record.onEnd?.();
      if (entry.handlers.size === 0) removals.push(this.removeEntry(entry));
    }
    return Promise.all(removals).then(() => undefined);
  }

  public publish(topic: string, data: unknown): Promise<void> {
    let encoded: IEncodedPayload;
    try {
      assertValidTopic(topic);
      encoded = encodePayload(data, this.host.serialization, `publish to "${topic}"`);
    } catch (err) {
      return Promise.reject(err);
    }
    this.published++;
    return this.host.channel.send(EFrameKind.Publish, topic, encoded);
  }

  /**
   * The messages of a pattern as an async iterator. It ends (done) on `unsubscribe(pattern)`,
   * on `disconnect()`, or when the client stops reconnecting; breaking out of the loop
   * unsubscribes. A failed subscribe rejects the first `next()`.
   */
  public iterate<T>(pattern: string, options: ISubscribeIteratorOptions = {}): AsyncIterableIterator<IPublishedMessage<T>> {
    assertValidPattern(pattern);
    return subscriptionIterator(this.sourceFor<T>(pattern), options.maxBuffered, (dropped) => {
      this.droppedLocally++;
      this.host.observer.deadLetter({ reason: 'slowConsumer', type: dropped.topic, peerId: dropped.from, data: dropped.data, code: 'RATE_LIMITED', at: Date.now() });
    });
  }

  /**
   * The messages of a pattern as a cold rxjs Observable: each rxjs subscription subscribes (its
   * failure is the Observable's error) and unsubscribing from it unsubscribes. It completes on
   * `unsubscribe(pattern)`, on `disconnect()`, or when the client stops reconnecting.
   */
  public observe<T>(pattern: string): plugins.smartrx.rxjs.Observable<IPublishedMessage<T>> {
    assertValidPattern(pattern);
    return subscriptionObservable(this.sourceFor<T>(pattern));
  }

  private sourceFor<T>(pattern: string): ISubscriptionSource<T> {
    return {
      subscribe: (handler, onEnd) => this.subscribe(pattern, handler, {}, onEnd),
      unsubscribe: (handler) => this.unsubscribe(pattern, handler as TSubscriptionHandler).catch(() => undefined),
    };
  }

  public getStats(): IClientPubSubStats {
    return { subscriptions: this.entries.size, published: this.published, received: this.received, droppedLocally: this.droppedLocally };
  }

  // ---- connection lifecycle (IpcClient calls these) --------------------------------------------

  /** After every (re)connection: the server knows nothing of this client yet, so send every pattern. */
  public restore(): void {
    for (const entry of this.entries.values()) this.sendSubscribe(entry);
    if (this.entries.size > 0) debug('restoring %d subscriptions', this.entries.size);
  }

  /**
   * The client will not reconnect (disconnect(), reconnect off or given up): pending subscribes
   * reject, iterators and Observables end. Plain handlers stay registered and are restored if
   * connect() is called again.
   */
  public stop(error: IpcError): void {
    for (const entry of [...this.entries.values()]) {
      for (const waiter of [...entry.waiters]) {
        entry.waiters.delete(waiter);
        clearTimeout(waiter.timer);
        this.rollback(entry, waiter.added);
        waiter.reject(error);
      }
      for (const record of [...entry.handlers.values()]) {
        if (record.onEnd === undefined) continue;
        entry.handlers.delete(record.handler);
        record.onEnd();
      }
      if (entry.handlers.size === 0) this.detachEntry(entry);
    }
  }

  // ---- frames ----------------------------------------------------------------------------------

  private sendSubscribe(entry: IPatternEntry): void {
    const id = this.nextAckId();
    entry.acked = false;
    entry.ackId = id;
    this.pendingAcks.set(id, { kind: EFrameKind.Subscribe, entry });
    this.host.channel.send(EFrameKind.Subscribe, entry.pattern, queuePayload(entry), id).catch((err: IpcError) => {
      if (!this.pendingAcks.delete(id)) return;
      // Lost with the connection: the restore after the reconnect sends it again.
      if (err.code === 'NOT_CONNECTED' || err.code === 'CONNECTION_LOST') return;
      this.refused(entry, err);
    });
  }

  private removeEntry(entry: IPatternEntry): Promise<void> {
    this.detachEntry(entry);
    // A subscribe still waiting for its ack has nothing left to wait for.
    for (const waiter of entry.waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve();
    }
    entry.waiters.clear();
    if (!this.host.channel.isConnected) return Promise.resolve();
    const id = this.nextAckId();
    return new Promise<void>((resolve) => {
      this.pendingAcks.set(id, { kind: EFrameKind.Unsubscribe, resolve });
      this.host.channel.send(EFrameKind.Unsubscribe, entry.pattern, queuePayload(entry), id).catch(() => {
        // The server drops a leaving client's subscriptions by itself.
        if (this.pendingAcks.delete(id)) resolve();
      });
    });
  }

  private detachEntry(entry: IPatternEntry): void {
    if (this.entries.get(entry.key) !== entry) return;
    this.entries.delete(entry.key);
    this.trie.remove(entry.pattern, entry);
    this.dispatchCache.clear();
  }

  /** Undoes what a failed subscribe() added. */
  private rollback(entry: IPatternEntry, added: IHandlerRecord | undefined): void {
    if (added === undefined || entry.handlers.get(added.handler) !== added) return;
    entry.handlers.delete(added.handler);
    if (entry.handlers.size === 0 && this.entries.get(entry.key) === entry) void this.removeEntry(entry);
  }

  private onAck(frame: IFrame): void {
    const pending = this.pendingAcks.get(frame.id);
    if (pending === undefined || pending.kind !== frame.kind) {
      debug('unexpected pub/sub acknowledgement %d (kind %d)', frame.id, frame.kind);
      return;
    }
    this.pendingAcks.delete(frame.id);
    if (pending.kind === EFrameKind.Unsubscribe) {
      pending.resolve?.();
      return;
    }
    const entry = pending.entry!;
    if (entry.ackId !== frame.id) return;
    entry.ackId = 0;
    if (frame.payload.length > 0) {
      this.refused(entry, this.refusalError(entry.pattern, frame));
      return;
    }
    entry.acked = true;
    for (const waiter of entry.waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve();
    }
    entry.waiters.clear();
  }

  /** The server refused a pattern: every subscriber of it learns why, and it is gone. */
  private refused(entry: IPatternEntry, error: IpcError): void {
    this.detachEntry(entry);
    const hadWaiters = entry.waiters.size > 0;
    for (const waiter of entry.waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
    entry.waiters.clear();
    for (const record of entry.handlers.values()) record.onEnd?.();
    entry.handlers.clear();
    // Nobody awaits it (a refused restore): report it.
    if (!hadWaiters) this.host.emitError(error);
  }

  private refusalError(pattern: string, frame: IFrame): IpcError {
    try {
      const body = JSON.parse(frame.payload.toString('utf8')) as { code?: unknown; message?: unknown };
      const code = isIpcErrorCode(body.code) ? body.code : 'PROTOCOL_ERROR';
      return new IpcError(code, `server refused subscription "${pattern}": ${String(body.message)}`);
    } catch {
      return new IpcError('PROTOCOL_ERROR', `server refused subscription "${pattern}" with an unreadable answer`);
    }
  }

  private onPublish(frame: IFrame): void {
    this.received++;
    const { topic, from, entries } = this.dispatchOf(frame.type);
    // Collected first: a handler may unsubscribe or subscribe, which must not change who gets this message.
    const records: IHandlerRecord[] = [];
    for (const entry of entries) for (const record of entry.handlers.values()) records.push(record);
    if (records.length === 0) return;
    let data: unknown;
    try {
      data = this.host.channel.decode(frame);
    } catch (err) {
      this.host.observer.deadLetter({ reason: 'undecodable', type: topic, peerId: from, code: (err as IpcError).code ?? 'PROTOCOL_ERROR', at: Date.now() });
      this.host.emitError(err as IpcError);
      return;
    }
    const info: IPublishInfo = { topic, from };
    for (const record of records) {
      try {
        const result = record.handler(data, info);
        if (isThenable(result)) {
          result.then(undefined, (err: unknown) => this.handlerFailed(topic, from, data, err));
        }
      } catch (err) {
        this.handlerFailed(topic, from, data, err);
      }
    }
  }

  /**
   * Splits a PUBLISH type (`topic`; `topic` U+0000 `from`; or, for a queue group's delivery,
   * `topic` U+0000 `from` U+0000 `queue`) and finds the entries it is for, once per type.
   */
  private dispatchOf(type: string): IDispatch {
    const cached = this.dispatchCache.get(type);
    if (cached !== undefined) return cached;
    const split = type.indexOf(PUBLISH_FROM_SEPARATOR);
    const topic = split < 0 ? type : type.slice(0, split);
    let from = 'server';
    let queue: string | undefined;
    if (split >= 0) {
      const second = type.indexOf(PUBLISH_FROM_SEPARATOR, split + 1);
      from = second < 0 ? type.slice(split + 1) : type.slice(split + 1, second);
      if (second >= 0) queue = type.slice(second + 1);
    }
    const entries: IPatternEntry[] = [];
    this.trie.match(topic, (_pattern, matching) => {
      for (const entry of matching) if (entry.queue === queue) entries.push(entry);
    });
    const dispatch: IDispatch = { topic, from, queue, entries };
    if (type.length > DISPATCH_CACHE_MAX_TYPE_LENGTH) return dispatch;
    // Oldest first out: a few hot types stay, a stream of ever-new topics cannot grow it.
    if (this.dispatchCache.size >= DISPATCH_CACHE_MAX_TYPES) this.dispatchCache.delete(this.dispatchCache.keys().next().value!);
    this.dispatchCache.set(type, dispatch);
    return dispatch;
  }

  private handlerFailed(topic: string, from: string, data: unknown, thrown: unknown): void {
    const message = thrown instanceof Error ? thrown.message : String(thrown);
    this.host.observer.deadLetter({ reason: 'handlerError', type: topic, peerId: from, data, code: 'HANDLER_ERROR', at: Date.now() });
    this.host.emitError(new IpcError('HANDLER_ERROR', `subscription handler for "${topic}" threw: ${message}`, { cause: thrown }));
  }

  private onConnectionLost(): void {
    // Acknowledgements of the old connection will never come; subscribes keep waiting for the restore.
    for (const pending of this.pendingAcks.values()) pending.resolve?.();
    this.pendingAcks.clear();
    for (const entry of this.entries.values()) {
      entry.acked = false;
      entry.ackId = 0;
    }
  }

  private nextAckId(): number {
    this.lastAckId = this.lastAckId >= MAX_ACK_ID ? 1 : this.lastAckId + 1;
    return this.lastAckId;
  }
}
