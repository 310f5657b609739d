import { IpcError } from '../../smartipc.errors.js';
import { EFrameKind, type IFrame } from '../../interfaces/wire.js';
import type { IPermissions } from '../../interfaces/security.js';
import { CompiledPermissions } from './permissions.js';
import { TokenBucket } from './ratelimit.js';
import { callLabel } from '../services/callchain.js';

const NAME_SEPARATOR = '\u0000';

/** What the connection asks before it handles a frame a guard watches. */
export interface IFrameGuard {
  /** undefined: go on; an IpcError (FORBIDDEN, RATE_LIMITED with retryAfterMs): refuse it. `now`: the chunk's Date.now(). */
  check(frame: IFrame, now: number): IpcError | undefined;
}

/** Frames a guard sees, and what each is checked against. */
const RATE_LIMITED_KINDS: readonly boolean[] = (() => {
  const table: boolean[] = [];
  for (const kind of [EFrameKind.Message, EFrameKind.Request, EFrameKind.Publish, EFrameKind.Call, EFrameKind.PeerMessage, EFrameKind.PeerRequest]) table[kind] = true;
  return table;
})();

export const GUARDED_KINDS: readonly boolean[] = (() => {
  const table = [...RATE_LIMITED_KINDS];
  table[EFrameKind.Subscribe] = true;
  table[EFrameKind.Provide] = true;
  return table;
})();

/**
 * One connection's permissions and rate limit. Built once per connection (after authentication);
 * a connection without either has no guard at all, so unguarded traffic pays nothing.
 */
export class ConnectionGuard implements IFrameGuard {
  private readonly bucket?: TokenBucket;

  constructor(
    private readonly clientId: string,
    private readonly permissions: CompiledPermissions | undefined,
    rateLimit: { perSecond: number; burst: number } | undefined,
    now: number,
  ) {
    if (rateLimit) this.bucket = new TokenBucket(rateLimit.perSecond, rateLimit.burst, now);
  }

  public check(frame: IFrame, now: number): IpcError | undefined {
    const kind = frame.kind;
    if (this.bucket !== undefined && RATE_LIMITED_KINDS[kind]) {
      const waitMs = this.bucket.take(now);
      if (waitMs > 0) return new IpcError('RATE_LIMITED', `client "${this.clientId}" is over its rate limit; try again in ${waitMs} ms`, { retryAfterMs: waitMs });
    }
    const permissions = this.permissions;
    if (permissions === undefined) return undefined;
    switch (kind) {
      case EFrameKind.Message:
        return permissions.allows('send', frame.type) ? undefined : this.forbidden('send', frame.type);
      case EFrameKind.Request:
        return permissions.allows('request', frame.type) ? undefined : this.forbidden('request', frame.type);
      case EFrameKind.Publish:
        return permissions.allows('publish', frame.type) ? undefined : this.forbidden('publish to', frame.type);
      case EFrameKind.Subscribe:
        return permissions.allowsSubscribe(frame.type) ? undefined : this.forbidden('subscribe to', frame.type);
      case EFrameKind.Provide:
        return permissions.allows('provide', frame.type) ? undefined : this.forbidden('provide', frame.type);
      case EFrameKind.Call: {
        const name = callLabel(frame.type);
        return permissions.allows('call', name) ? undefined : this.forbidden('call', name);
      }
      case EFrameKind.PeerMessage:
      case EFrameKind.PeerRequest: {
        const type = frame.type.slice(frame.type.indexOf(NAME_SEPARATOR) + 1);
        const field = kind === EFrameKind.PeerMessage ? 'send' : 'request';
        return permissions.allows(field, type) ? undefined : this.forbidden(field, type);
      }
      default:
        return undefined;
    }
  }

  private forbidden(what: string, name: string): IpcError {
    return new IpcError('FORBIDDEN', `client "${this.clientId}" may not ${what} "${name}"`);
  }
}

/** Compiles the server's `permissions` option: by clientId, '*' for the rest. */
export function compilePermissionTable(table: Record<string, IPermissions> | undefined): Map<string, CompiledPermissions> | undefined {
  if (table === undefined) return undefined;
  const compiled = new Map<string, CompiledPermissions>();
  for (const [clientId, permissions] of Object.entries(table)) compiled.set(clientId, CompiledPermissions.compile(permissions, `permissions["${clientId}"]`));
  return compiled;
}
