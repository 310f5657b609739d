import type { Duplex } from 'node:stream';
import type { TAddress, TEndpoint, TTransportKind } from '../../interfaces/options.js';
import type { ILinkPeer } from '../classes.framedlink.js';

/** A stream a medium opened or accepted, and what it knows of the peer. */
export interface IOpenedStream {
  stream: Duplex;
  peer: ILinkPeer;
}

/** A bound listener of some medium. */
export interface IMediumListener {
  /** Where it is bound: `{ socketPath }` or `{ host, port }` (the real port when bound to port 0). */
  address(): TAddress;
  /** Proves that a fresh connection is accepted now (the readiness probe); the probe is not a client. */
  probe(): Promise<void>;
  /** Stops accepting; resolves once the listening handle is closed and its file (if any) removed. */
  close(): Promise<void>;
}

/** What a server asks of a medium when it listens. */
export interface IListenOptions {
  /** Unix sockets: remove a stale socket file first. */
  autoCleanupSocketFile?: boolean;
  /** Unix sockets: the file mode, in force from the moment the path exists. */
  socketMode?: number;
}

/**
 * What is specific to one medium (unix, pipe, tcp, tls, child): describing the endpoint, dialling,
 * listening and probing. Everything above works on the Duplex it returns.
 */
export interface IMedium {
  readonly kind: TTransportKind;
  /** The endpoint for messages: a path, a pipe name, tcp://host:port... */
  describe(): string;
  /**
   * Opens a stream to the endpoint. Rejects with an IpcError: SERVER_UNAVAILABLE (the system error
   * as `cause`) or TLS_ERROR (a certificate was refused).
   */
  dial(): Promise<IOpenedStream>;
  /** Binds; `onStream` receives each accepted, usable stream. Rejects ADDRESS_IN_USE or SERVER_UNAVAILABLE. */
  listen(onStream: (opened: IOpenedStream) => void, options?: IListenOptions): Promise<IMediumListener>;
  /**
   * True when a client that found nobody here may host the endpoint itself: a path nobody
   * answers on (ENOENT, ECONNREFUSED). Never for TCP: a port belongs to a machine, not to a name.
   */
  canHost(dialError: unknown): boolean;
  /**
   * Calls `onChange` soon after the endpoint may have come back (a socket file created at the
   * path), so a reconnecting client need not wait out its backoff; returns the stop function.
   * Media that cannot tell (TCP) do not have it.
   */
  watchForServer?(onChange: () => void): () => void;
}

/** One kind of endpoint: how to recognise, check, describe and open it. One per medium file. */
export interface IMediumModule {
  readonly kind: TTransportKind;
  /** Whether this module serves the endpoint (on this platform). */
  matches(endpoint: Partial<TEndpoint>, platform: NodeJS.Platform): boolean;
  /** The endpoint with only its own fields, validated; throws INVALID_ARGUMENT. */
  resolve(endpoint: Partial<TEndpoint>): TEndpoint;
  describe(endpoint: TEndpoint): string;
  create(endpoint: TEndpoint): IMedium;
}
