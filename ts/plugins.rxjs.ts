// rxjs through smartrx, re-exported so users of subscribeObservable need no transitive import.
import { smartrx } from './plugins.js';

export const Observable = smartrx.rxjs.Observable;
export type Observable<T> = import('@push.rocks/smartrx').rxjs.Observable<T>;
