import type { PeerCertificate } from 'node:tls';
import type { TTransportKind } from './options.js';

/**
 * What a connection may do. Each field is a list of patterns with the pub/sub wildcard rules
 * (`*` one segment, `>` the rest), over message types (`send`, `request`), `service.method`
 * (`call`), service names (`provide`) and topics (`publish`, `subscribe`). An absent field allows
 * everything; a present one allows only what matches (an empty list: nothing).
 */
export interface IPermissions {
  /** Fire-and-forget message types (sendMessage, sendToPeer). Denied: dropped, counted, dead-lettered. */
  send?: string[];
  /** Request types (request, requestPeer; `$smartipc.>` for the introspection the CLI uses). Denied: FORBIDDEN. */
  request?: string[];
  /** `service.method` of calls. Denied: FORBIDDEN. */
  call?: string[];
  /** Topics published to. Denied: dropped, counted, dead-lettered. */
  publish?: string[];
  /** Subscription patterns: a pattern is allowed when a permission pattern covers every topic it matches. Denied: FORBIDDEN. */
  subscribe?: string[];
  /** Services this connection may provide. Denied: FORBIDDEN. */
  provide?: string[];
}

/** What `authenticate` learns about a connection that completed its handshake. */
export interface IAuthenticateInfo {
  clientId: string;
  metadata: Record<string, unknown>;
  /** The client's `authToken`, if it sent one. */
  token?: string;
  transport: TTransportKind;
  /** The client's certificate on a mutual-TLS connection (`tls: { requestCert: true, ca }`). */
  tlsPeerCertificate?: PeerCertificate;
}

/** `true`: in, with the server's `permissions` for it; `{ permissions }`: in, with these; `false`: AUTH_FAILED. */
export type TAuthenticateResult = boolean | { permissions?: IPermissions };

export interface IAuthOptions {
  /** Accepted tokens (compared in constant time). */
  tokens?: string[];
  /** Decides per connection (after the token check, if `tokens` is given too). A throw counts as false. */
  authenticate?(info: IAuthenticateInfo): TAuthenticateResult | Promise<TAuthenticateResult>;
}

export interface IRateLimitOptions {
  /** Sustained rate per connection: messages, requests, publishes and calls together. */
  messagesPerSecond: number;
  /** How many may come at once beyond the rate (the bucket's size). @default messagesPerSecond rounded up (at least 1) */
  burst?: number;
}
