/** What a subscriber learns beside the data. */
export interface IPublishInfo {
  /** The concrete topic the message was published to (never a pattern). */
  topic: string;
  /** The publisher's clientId, or 'server' for `server.publish`. */
  from: string;
}

/** A subscribe handler: `(data, { topic, from })`. A throw or rejection is reported as a client `error` event. */
export type TSubscriptionHandler<T = unknown> = (data: T, info: IPublishInfo) => void | Promise<void>;

/** One published message, as yielded by `subscribeIterator` and emitted by `subscribeObservable`. */
export interface IPublishedMessage<T = unknown> extends IPublishInfo {
  data: T;
}

export interface ISubscribeOptions {
  /**
   * A queue group: of all subscriptions in this group whose pattern matches a publish (on any
   * client), exactly one receives it, in turn. Ordinary subscribers still receive it too.
   */
  queue?: string;
}

export interface ISubscribeIteratorOptions {
  /**
   * Messages held for a consumer that has not asked for them yet. When full, the oldest is
   * dropped and counted in the client's `pubsub.droppedLocally`. @default 1000
   */
  maxBuffered?: number;
}

/** Counters of one subscription pattern on the server (summed over the clients that hold it). */
export interface IPubSubPatternStats {
  /** Clients subscribed with this pattern. */
  subscribers: number;
  /** Publishes whose topic matched this pattern. */
  published: number;
  /** Deliveries to subscribers of this pattern (one per subscribing client and publish). */
  delivered: number;
  /** Deliveries skipped because the subscriber's queue was full (see `pubsubMaxQueuedBytes`). */
  dropped: number;
}

/** Pub/sub counters of a server, in `server.getStats().pubsub`. */
export interface IServerPubSubStats {
  /** Publishes the broker handled (from clients and from `server.publish`). */
  published: number;
  /** Frames queued to subscribers (one per client, however many of its patterns matched). */
  delivered: number;
  /** Frames not queued because the subscriber's queue was full. */
  dropped: number;
  /** (client, pattern) pairs held. */
  subscriptions: number;
  /** Clients currently skipped as slow consumers. */
  slowConsumers: number;
  /** Per pattern currently subscribed; a pattern's counters go when its last subscriber does. */
  patterns: Record<string, IPubSubPatternStats>;
}

/** Pub/sub counters of a client, in `client.getStats().pubsub`. */
export interface IClientPubSubStats {
  /** Patterns this client is subscribed to. */
  subscriptions: number;
  /** `publish` calls. */
  published: number;
  /** Published messages that arrived. */
  received: number;
  /** Messages dropped from a full `subscribeIterator` buffer. */
  droppedLocally: number;
}
