import { IpcError } from '../../smartipc.errors.js';
import { EFrameKind, EPayloadEncoding, FLAG_ENCODING_MASK, FLAG_HAS_ATTACHMENTS, type IFrame, type TSerialization } from '../../interfaces/wire.js';
import type { IPubSubPatternStats, IServerPubSubStats } from '../../interfaces/pubsub.js';
import type { IConnectionFeature, IConnectionHost } from '../../interfaces/hosts.js';
import { TopicTrie, PUBLISH_FROM_SEPARATOR, assertValidTopic, describeInvalidPattern, describeInvalidTopic } from './classes.topictrie.js';
import { FrameEncoder } from '../../framing/classes.framecodec.js';
import { encodePayload, payloadSize, type IEncodedPayload } from '../../channel/serializer.js';
import { debug } from '../../smartipc.log.js';
import type { IDeadLetter } from '../../interfaces/observability.js';
import { publishChannel } from '../observability/tracing.js';

/** What the broker needs from its server. */
export interface IPubSubBrokerHost {
  serialization: TSerialization;
  /** Bytes queued for one client past which publishes to it are dropped. */
  maxQueuedBytes: number;
  /** 'drop': a slow consumer misses publishes until it has read its queue; 'disconnect': it is disconnected. */
  slowConsumerPolicy: 'drop' | 'disconnect';
  /** A client's queue reached the bound; its publishes are dropped until its socket drains. */
  onSlowConsumer(clientId: string, queuedBytes: number): void;
  /** A client broke the pub/sub protocol, or a delivery failed for a reason other than backpressure. */
  onError(error: IpcError, clientId: string): void;
  /** A publish not delivered to one subscriber (slow consumer, too large for it). */
  onDeadLetter(letter: IDeadLetter): void;
}

/** The body of a refused SUBSCRIBE or UNSUBSCRIBE acknowledgement. */
export interface IPubSubRefusal {
  code: string;
  message: string;
}

/** One client's subscriptions and delivery state. */
interface ISubscriber {
  readonly clientId: string;
  readonly channel: IConnectionHost;
  /** Its subscriptions: `pattern`, or `pattern` U+0000 `queue` for a queue group membership. */
  readonly patterns: Set<string>;
  /** Its queue group memberships, by the same key. */
  readonly members: Map<string, IQueueMember>;
  /** The publish this subscriber was last considered for: one frame per publish, however many patterns match. */
  seenSeq: number;
  /** Whether that publish was queued for it (false: dropped). */
  seenQueued: boolean;
  /** Over its bound: every publish is dropped until its socket has written out its queue. */
  slow: boolean;
}

/** One publish on its way out: its frame is encoded when the first subscriber takes it, then shared. */
interface IOutgoingPublish {
  readonly topic: string;
  /** The frame type: the topic, then U+0000 and the publisher's clientId for a client's publish. */
  readonly type: string;
  readonly encoded: IEncodedPayload;
  /** An estimate of the frame's size on the wire, to judge whether it fits a queue. */
  readonly frameBytes: number;
  frame: Buffer | undefined;
  /** Encoding it failed: every subscriber's delivery fails alike. */
  failure: IpcError | undefined;
}

/** One subscription of a client in a queue group. */
interface IQueueMember {
  readonly subscriber: ISubscriber;
  readonly queue: string;
}

/** Frame header bytes beside the topic and `from`, rounded up: used to judge whether a frame fits a queue. */
const FRAME_OVERHEAD_BYTES = 64;
const EMPTY: IEncodedPayload = { encoding: EPayloadEncoding.None, payload: undefined };

/**
 * The server as a pub/sub broker. It holds each client's subscription patterns in one topic trie,
 * so a publish visits only the patterns that can match. A publish is encoded once and the same
 * bytes are queued to every matching client except the publisher.
 *
 * Backpressure: a client whose queue (bytes not yet taken by its socket) would exceed
 * `maxQueuedBytes` becomes a slow consumer: publishes to it are dropped and counted until its
 * socket has written everything queued, then it receives again. Publishers and other
 * subscribers are never held back, and the server never queues more than the bound per client.
 */
export class PubSubBroker {
  private readonly trie = new TopicTrie<ISubscriber>();
  /** Queue group memberships by pattern; each publish goes to one member per group. */
  private readonly queueTrie = new TopicTrie<IQueueMember>();
  /** Per queue group: whose turn it is. */
  private readonly queueTurns = new Map<string, number>();
  /** Encodes each publish once; the frames it hands out are never rewritten (see FrameEncoder.take). */
  private readonly encoder = new FrameEncoder();
  private readonly patternStats = new Map<string, IPubSubPatternStats>();
  private seq = 0;
  private tap?: (topic: string, encoded: IEncodedPayload, from: string) => void;
  private published = 0;
  private delivered = 0;
  private dropped = 0;
  private slowConsumers = 0;

  constructor(private readonly host: IPubSubBrokerHost) {}

  /** The pub/sub frames of one client connection, as a feature to attach before its first frame. */
  public featureFor(clientId: string, channel: IConnectionHost): IConnectionFeature {
    const subscriber: ISubscriber = { clientId, channel, patterns: new Set(), members: new Map(), seenSeq: 0, seenQueued: false, slow: false };
    return {
      frameKinds: [EFrameKind.Subscribe, EFrameKind.Unsubscribe, EFrameKind.Publish],
      onFrame: (frame) => {
        if (frame.kind === EFrameKind.Publish) this.onPublish(subscriber, frame);
        else if (frame.kind === EFrameKind.Subscribe) this.onSubscribe(subscriber, frame);
        else this.onUnsubscribe(subscriber, frame);
      },
      // A client's subscriptions live as long as its connection; a reconnecting client restores them.
      onDisconnect: () => this.detach(subscriber),
    };
  }

  /** Publishes from the server itself (`from` is 'server'). Throws INVALID_ARGUMENT for an invalid topic. Returns the number of clients it was queued for. */
  public publish(topic: string, data: unknown): number {
    assertValidTopic(topic);
    const encoded = encodePayload(data, this.host.serialization, `publish to "${topic}"`);
    this.tap?.(topic, encoded, 'server');
    return this.fanOut(topic, encoded, 'server', undefined);
  }

  /**
   * Publishes as `from` (a publisher beyond this hub, e.g. over a NATS bridge): local subscribers
   * get it, the tap does not (so a bridge never echoes it back).
   */
  public publishFrom(topic: string, encoded: IEncodedPayload, from: string): number {
    assertValidTopic(topic);
    return this.fanOut(topic, encoded, from, undefined);
  }

  /** Sees every publish this broker handles (from clients and the server), except publishFrom's. One tap. */
  public setTap(tap: ((topic: string, encoded: IEncodedPayload, from: string) => void) | undefined): void {
    this.tap = tap;
  }

  public getStats(): IServerPubSubStats {
    const patterns: Record<string, IPubSubPatternStats> = {};
    for (const [pattern, stats] of this.patternStats) patterns[pattern] = { ...stats };
    return {
      published: this.published,
      delivered: this.delivered,
      dropped: this.dropped,
      subscriptions: this.trie.size + this.queueTrie.size,
      slowConsumers: this.slowConsumers,
      patterns,
    };
  }

  // ---- frames from clients ---------------------------------------------------------------------

  private onSubscribe(subscriber: ISubscriber, frame: IFrame): void {
    const pattern = frame.type;
    const queue = this.queueOf(frame);
    const problem = describeInvalidPattern(pattern) ?? (queue instanceof Error ? queue.message : undefined);
    if (problem !== undefined) {
      this.acknowledge(subscriber, EFrameKind.Subscribe, frame, { code: 'PROTOCOL_ERROR', message: problem });
      return;
    }
    const key = queue === undefined ? pattern : pattern + PUBLISH_FROM_SEPARATOR + (queue as string);
    if (!subscriber.patterns.has(key)) {
      subscriber.patterns.add(key);
      if (queue === undefined) this.trie.add(pattern, subscriber);
      else {
        const member: IQueueMember = { subscriber, queue: queue as string };
        subscriber.members.set(key, member);
        this.queueTrie.add(pattern, member);
      }
      const stats = this.patternStats.get(pattern);
      if (stats) stats.subscribers++;
      else this.patternStats.set(pattern, { subscribers: 1, published: 0, delivered: 0, dropped: 0 });
    }
    this.acknowledge(subscriber, EFrameKind.Subscribe, frame);
  }

  private onUnsubscribe(subscriber: ISubscriber, frame: IFrame): void {
    const queue = this.queueOf(frame);
    const key = queue === undefined || queue instanceof Error ? frame.type : frame.type + PUBLISH_FROM_SEPARATOR + queue;
    if (subscriber.patterns.delete(key)) this.forget(key, subscriber);
    this.acknowledge(subscriber, EFrameKind.Unsubscribe, frame);
  }

  /** The queue group a SUBSCRIBE or UNSUBSCRIBE names (its JSON payload), undefined for none, an Error for a bad one. */
  private queueOf(frame: IFrame): string | undefined | Error {
    if (frame.payloadEnd === frame.payloadStart) return undefined;
    try {
      const body = JSON.parse(frame.payload.toString('utf8')) as { queue?: unknown };
      const queue = body?.queue;
      if (typeof queue !== 'string' || queue.length === 0 || queue.includes(PUBLISH_FROM_SEPARATOR)) return new Error('a queue group name must be a non-empty string without U+0000');
      return queue;
    } catch {
      return new Error('unreadable subscription options');
    }
  }

  private onPublish(publisher: ISubscriber, frame: IFrame): void {
    const topic = frame.type;
    const problem = describeInvalidTopic(topic);
    if (problem !== undefined) {
      this.host.onError(new IpcError('PROTOCOL_ERROR', `client "${publisher.clientId}" published to an invalid topic: ${problem}`), publisher.clientId);
      return;
    }
    // The payload may stay a view into the received chunk: the frame built from it is a copy, made before this returns.
    const payload = frame.payload;
    // Attachments stay inside the payload bytes: the frame keeps its flag bit, nothing is decoded.
    const encoded: IEncodedPayload = { encoding: frame.flags & (FLAG_ENCODING_MASK | FLAG_HAS_ATTACHMENTS), payload: payload.length > 0 ? payload : undefined };
    this.tap?.(topic, encoded, publisher.clientId);
    this.fanOut(topic, encoded, publisher.clientId, publisher);
  }

  /** Answers a SUBSCRIBE or UNSUBSCRIBE with a frame of the same kind and id: empty for done, a JSON refusal otherwise. */
  private acknowledge(subscriber: ISubscriber, kind: EFrameKind, frame: IFrame, refusal?: IPubSubRefusal): void {
    const body: IEncodedPayload = refusal === undefined ? EMPTY : { encoding: EPayloadEncoding.Json, payload: JSON.stringify(refusal) };
    try {
      subscriber.channel.sendNow(kind, frame.type, body, frame.id);
    } catch (err) {
      debug('pub/sub acknowledgement to %s not sent: %s', subscriber.clientId, (err as Error).message);
    }
  }

  // ---- fan-out ---------------------------------------------------------------------------------

  private fanOut(topic: string, encoded: IEncodedPayload, from: string, publisher: ISubscriber | undefined): number {
    this.published++;
    const seq = ++this.seq;
    const outgoing: IOutgoingPublish = {
      topic,
      type: from === 'server' ? topic : topic + PUBLISH_FROM_SEPARATOR + from,
      encoded,
      frameBytes: payloadSize(encoded) + topic.length * 3 + from.length * 3 + FRAME_OVERHEAD_BYTES,
      frame: undefined,
      failure: undefined,
    };
    let queuedFor = 0;
    if (this.queueTrie.size > 0) queuedFor += this.fanOutToQueues(topic, encoded, from, publisher, outgoing.frameBytes);
    if (publishChannel.hasSubscribers) process.nextTick(() => publishChannel.publish({ topic, from, deliveredTo: queuedFor }));
    this.trie.match(topic, (pattern, subscribers) => {
      const stats = this.patternStats.get(pattern)!;
      stats.published++;
      for (const subscriber of subscribers) {
        if (subscriber === publisher) continue;
        if (subscriber.seenSeq !== seq) {
          subscriber.seenSeq = seq;
          subscriber.seenQueued = this.deliver(subscriber, outgoing);
          if (subscriber.seenQueued) queuedFor++;
        }
        if (subscriber.seenQueued) stats.delivered++;
        else stats.dropped++;
      }
    });
    return queuedFor;
  }

  /**
   * Queue groups: of the members of each group whose pattern matches (the publisher's own left
   * out), one receives the publish, in turn; a slow member is passed over for the next one.
   */
  private fanOutToQueues(topic: string, encoded: IEncodedPayload, from: string, publisher: ISubscriber | undefined, frameBytes: number): number {
    const groups = new Map<string, IQueueMember[]>();
    this.queueTrie.match(topic, (_pattern, members) => {
      for (const member of members) {
        if (member.subscriber === publisher) continue;
        let group = groups.get(member.queue);
        if (group === undefined) groups.set(member.queue, (group = []));
        group.push(member);
      }
    });
    let queuedFor = 0;
    for (const [queue, members] of groups) {
      const turn = this.queueTurns.get(queue) ?? 0;
      const outgoing: IOutgoingPublish = {
        topic,
        type: topic + PUBLISH_FROM_SEPARATOR + from + PUBLISH_FROM_SEPARATOR + queue,
        encoded,
        frameBytes: frameBytes + queue.length * 3,
        frame: undefined,
        failure: undefined,
      };
      for (let i = 0; i < members.length; i++) {
        const member = members[(turn + i) % members.length];
        if (member.subscriber.slow && i < members.length - 1) continue;
        this.queueTurns.set(queue, (turn + i + 1) % members.length);
        if (this.deliver(member.subscriber, outgoing)) queuedFor++;
        break;
      }
    }
    return queuedFor;
  }

  /** Queues one publish frame for one client unless its queue is full. */
  private deliver(subscriber: ISubscriber, outgoing: IOutgoingPublish): boolean {
    if (subscriber.slow) {
      this.dropped++;
      this.droppedFor(subscriber, outgoing, 'slowConsumer', 'RATE_LIMITED');
      return false;
    }
    const queued = subscriber.channel.queuedBytes;
    if (queued + outgoing.frameBytes > this.host.maxQueuedBytes) {
      this.dropped++;
      this.markSlow(subscriber, queued);
      this.droppedFor(subscriber, outgoing, 'slowConsumer', 'RATE_LIMITED');
      return false;
    }
    try {
      // Checked against this client's maxMessageSize here (MESSAGE_TOO_LARGE), not when encoding.
      subscriber.channel.sendPrebuiltNow(outgoing.frame ?? this.encode(outgoing));
    } catch (err) {
      this.dropped++;
      const error = err as IpcError;
      // NOT_CONNECTED: the client is leaving and its subscriptions go with it. Anything else (a
      // message over this client's maxMessageSize) is worth reporting.
      if (error.code !== 'NOT_CONNECTED') {
        const clientId = subscriber.clientId;
        const topic = outgoing.topic;
        this.droppedFor(subscriber, outgoing, 'tooLarge', error.code);
        process.nextTick(() => this.host.onError(new IpcError(error.code, `publish to "${topic}" not delivered to "${clientId}": ${error.message}`, { cause: error }), clientId));
      }
      return false;
    }
    this.delivered++;
    return true;
  }

  /** A dead letter for one subscriber's missed publish (no data: a flood must not decode what it drops). */
  private droppedFor(subscriber: ISubscriber, outgoing: IOutgoingPublish, reason: 'slowConsumer' | 'tooLarge', code: IpcError['code']): void {
    const split = outgoing.type.indexOf(PUBLISH_FROM_SEPARATOR);
    const from = split < 0 ? 'server' : outgoing.type.slice(split + 1).split(PUBLISH_FROM_SEPARATOR)[0];
    this.host.onDeadLetter({ reason, type: outgoing.topic, peerId: from, to: subscriber.clientId, code, at: Date.now() });
  }

  /** The publish as one complete frame, encoded on first use. Throws what encoding threw, for every subscriber. */
  private encode(outgoing: IOutgoingPublish): Buffer {
    if (outgoing.failure !== undefined) throw outgoing.failure;
    const { encoding, payload, attachments } = outgoing.encoded;
    try {
      this.encoder.appendFrame(EFrameKind.Publish, encoding, 0, outgoing.type, undefined, payload, Infinity, -1, attachments);
    } catch (err) {
      outgoing.failure = err as IpcError;
      throw err;
    }
    // One segment unless the payload went by reference (large): then one copy joins them, which
    // also stops the frame from being a view into a received chunk.
    const segments = this.encoder.take();
    outgoing.frame = segments.length === 1 ? segments[0] : Buffer.concat(segments);
    return outgoing.frame;
  }

  private markSlow(subscriber: ISubscriber, queuedBytes: number): void {
    subscriber.slow = true;
    this.slowConsumers++;
    debug('client %s is a slow consumer (%d bytes queued); dropping its publishes until it drains', subscriber.clientId, queuedBytes);
    // Reported after the fan-out: a listener must not run in the middle of it.
    process.nextTick(() => this.host.onSlowConsumer(subscriber.clientId, queuedBytes));
    if (this.host.slowConsumerPolicy === 'disconnect') {
      // Cut it loose at once: what is queued for it is freed with the socket; it reconnects and resubscribes.
      debug('slowConsumerPolicy disconnect: closing %s', subscriber.clientId);
      subscriber.channel.destroy(new IpcError('CONNECTION_LOST', `client "${subscriber.clientId}" was disconnected as a slow consumer (${queuedBytes} bytes queued, bound ${this.host.maxQueuedBytes})`));
      return;
    }
    void subscriber.channel.waitForDrain().then(() => this.clearSlow(subscriber));
  }

  private clearSlow(subscriber: ISubscriber): void {
    if (!subscriber.slow) return;
    subscriber.slow = false;
    this.slowConsumers--;
  }

  // ---- bookkeeping -----------------------------------------------------------------------------

  private detach(subscriber: ISubscriber): void {
    for (const pattern of subscriber.patterns) this.forget(pattern, subscriber);
    subscriber.patterns.clear();
    this.clearSlow(subscriber);
  }

  /** Drops one subscription (`pattern`, or `pattern` U+0000 `queue`) of a subscriber. */
  private forget(key: string, subscriber: ISubscriber): void {
    const split = key.indexOf(PUBLISH_FROM_SEPARATOR);
    const pattern = split < 0 ? key : key.slice(0, split);
    if (split < 0) {
      this.trie.remove(pattern, subscriber);
    } else {
      const member = subscriber.members.get(key);
      if (member !== undefined) {
        subscriber.members.delete(key);
        this.queueTrie.remove(pattern, member);
      }
    }
    const stats = this.patternStats.get(pattern);
    if (stats && --stats.subscribers === 0) this.patternStats.delete(pattern);
  }
}
