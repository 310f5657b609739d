import * as plugins from '../../plugins.js';
import { IpcError, invalidArgument } from '../../smartipc.errors.js';
import type { IAuthOptions, IAuthenticateInfo, IPermissions } from '../../interfaces/security.js';
import { CompiledPermissions } from './permissions.js';

/** The outcome of authenticating one connection. */
export type TAuthOutcome = { ok: true; permissions?: CompiledPermissions } | { ok: false; reason: string };

function digest(token: string): Buffer {
  return plugins.crypto.createHash('sha256').update(token, 'utf8').digest();
}

/**
 * The server's `auth` option, checked once. Tokens are kept as sha256 digests and compared with
 * `crypto.timingSafeEqual` (equal lengths by construction), against every accepted token, so the
 * time taken says nothing about how close a guess was.
 */
export class Authenticator {
  private readonly digests?: Buffer[];
  private readonly authenticate?: IAuthOptions['authenticate'];

  constructor(options: IAuthOptions) {
    if (options === null || typeof options !== 'object') throw invalidArgument('auth must be an object: { tokens } and/or { authenticate }');
    if (options.tokens === undefined && options.authenticate === undefined) throw invalidArgument('auth needs tokens, an authenticate function, or both');
    if (options.tokens !== undefined) {
      if (!Array.isArray(options.tokens) || options.tokens.length === 0 || options.tokens.some((t) => typeof t !== 'string' || t.length === 0)) {
        throw invalidArgument('auth.tokens must be a non-empty array of non-empty strings');
      }
      this.digests = options.tokens.map(digest);
    }
    if (options.authenticate !== undefined) {
      if (typeof options.authenticate !== 'function') throw invalidArgument('auth.authenticate must be a function');
      this.authenticate = options.authenticate;
    }
  }

  public async check(info: IAuthenticateInfo): Promise<TAuthOutcome> {
    if (this.digests !== undefined) {
      if (typeof info.token !== 'string' || info.token.length === 0) return { ok: false, reason: 'no token' };
      const offered = digest(info.token);
      let match = false;
      for (const accepted of this.digests) if (plugins.crypto.timingSafeEqual(offered, accepted)) match = true;
      if (!match) return { ok: false, reason: 'wrong token' };
    }
    if (this.authenticate === undefined) return { ok: true };
    let answer: unknown;
    try {
      answer = await this.authenticate(info);
    } catch (err) {
      return { ok: false, reason: `authenticate threw: ${(err as Error)?.message ?? String(err)}` };
    }
    if (answer === true) return { ok: true };
    if (answer !== null && typeof answer === 'object') {
      const permissions = (answer as { permissions?: IPermissions }).permissions;
      if (permissions === undefined) return { ok: true };
      try {
        return { ok: true, permissions: CompiledPermissions.compile(permissions, 'the permissions authenticate returned') };
      } catch (err) {
        return { ok: false, reason: (err as IpcError).message };
      }
    }
    return { ok: false, reason: 'authenticate said no' };
  }
}
