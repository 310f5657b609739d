// A subscription as an async iterator or an rxjs Observable, over any subscriber that takes a
// handler and an end callback: the local client's registry and the NATS client share these.
import * as plugins from '../../plugins.js';
import { invalidArgument } from '../../smartipc.errors.js';
import { DEFAULT_SUBSCRIBE_ITERATOR_MAX_BUFFERED } from '../../smartipc.defaults.js';
import type { IPublishedMessage, TSubscriptionHandler } from '../../interfaces/pubsub.js';

/** What an adapter needs: subscribe one handler (with a callback for when the subscription ends) and remove it again. */
export interface ISubscriptionSource<T> {
  /** Rejects when the subscribe fails; `onEnd` runs on unsubscribe(pattern), disconnect, or when the client gives up. */
  subscribe(handler: TSubscriptionHandler<T>, onEnd: () => void): Promise<unknown>;
  /** Removes the handler without calling its onEnd; never rejects. */
  unsubscribe(handler: TSubscriptionHandler<T>): Promise<unknown>;
}

/**
 * The messages as an async iterator. At most `maxBuffered` wait for the consumer; past it the
 * oldest goes to `onDropped`. Breaking out of the loop unsubscribes; a failed subscribe rejects
 * the first `next()`.
 */
export function subscriptionIterator<T>(
  source: ISubscriptionSource<T>,
  maxBufferedOption: number | undefined,
  onDropped: (message: IPublishedMessage<T>) => void,
): AsyncIterableIterator<IPublishedMessage<T>> {
  const maxBuffered = maxBufferedOption ?? DEFAULT_SUBSCRIBE_ITERATOR_MAX_BUFFERED;
  if (!Number.isInteger(maxBuffered) || maxBuffered < 1) throw invalidArgument(`maxBuffered must be a positive integer, got ${String(maxBuffered)}`);
  const buffer: IPublishedMessage<T>[] = [];
  let waiting: { resolve: (result: IteratorResult<IPublishedMessage<T>>) => void; reject: (error: Error) => void } | undefined;
  let done = false;
  let failure: Error | undefined;
  const finish = () => {
    done = true;
    const w = waiting;
    waiting = undefined;
    w?.resolve({ value: undefined, done: true });
  };
  const handler: TSubscriptionHandler<T> = (data, info) => {
    const message: IPublishedMessage<T> = { topic: info.topic, from: info.from, data };
    if (waiting !== undefined) {
      const w = waiting;
      waiting = undefined;
      w.resolve({ value: message, done: false });
      return;
    }
    buffer.push(message);
    if (buffer.length > maxBuffered) onDropped(buffer.shift()!);
  };
  source.subscribe(handler, finish).catch((err: Error) => {
    done = true;
    const w = waiting;
    waiting = undefined;
    if (w !== undefined) w.reject(err);
    else failure = err;
  });
  const stop = async (): Promise<IteratorResult<IPublishedMessage<T>>> => {
    buffer.length = 0;
    if (!done) {
      finish();
      await source.unsubscribe(handler);
    }
    return { value: undefined, done: true };
  };
  const iterator: AsyncIterableIterator<IPublishedMessage<T>> = {
    next: () => {
      if (buffer.length > 0) return Promise.resolve({ value: buffer.shift()!, done: false });
      if (failure !== undefined) {
        const error = failure;
        failure = undefined;
        return Promise.reject(error);
      }
      if (done) return Promise.resolve({ value: undefined, done: true });
      if (waiting !== undefined) return Promise.reject(invalidArgument('next() called again before the previous next() settled'));
      return new Promise((resolve, reject) => {
        waiting = { resolve, reject };
      });
    },
    return: () => stop(),
    throw: (error?: unknown) => stop().then(() => Promise.reject(error)),
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}

/**
 * The messages as a cold rxjs Observable: each rxjs subscription subscribes (its failure is the
 * Observable's error), unsubscribing from it unsubscribes, and it completes when the subscription ends.
 */
export function subscriptionObservable<T>(source: ISubscriptionSource<T>): plugins.smartrx.rxjs.Observable<IPublishedMessage<T>> {
  return new plugins.smartrx.rxjs.Observable<IPublishedMessage<T>>((observer) => {
    let active = true;
    const handler: TSubscriptionHandler<T> = (data, info) => observer.next({ topic: info.topic, from: info.from, data });
    source
      .subscribe(handler, () => {
        active = false;
        observer.complete();
      })
      .catch((err: Error) => {
        active = false;
        observer.error(err);
      });
    return () => {
      if (!active) return;
      active = false;
      void source.unsubscribe(handler);
    };
  });
}
