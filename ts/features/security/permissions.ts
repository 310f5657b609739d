import { invalidArgument } from '../../smartipc.errors.js';
import type { IPermissions } from '../../interfaces/security.js';
import { describeInvalidPattern } from '../pubsub/classes.topictrie.js';

const SEPARATOR = '.';
const ONE = '*';
const TAIL = '>';

/** Whether `name` (a message type, a topic, `service.method`) matches a permission pattern: the pub/sub rules, segment by segment. */
export function nameMatches(pattern: string, name: string): boolean {
  const p = pattern.split(SEPARATOR);
  const n = name.split(SEPARATOR);
  for (let i = 0; i < p.length; i++) {
    if (p[i] === TAIL) return n.length > i;
    if (i >= n.length) return false;
    if (p[i] !== ONE && p[i] !== n[i]) return false;
  }
  return p.length === n.length;
}

/** Whether every topic subscription pattern `sub` matches is also matched by permission pattern `allowed`. */
export function patternCovers(allowed: string, sub: string): boolean {
  const a = allowed.split(SEPARATOR);
  const s = sub.split(SEPARATOR);
  for (let i = 0; i < a.length; i++) {
    if (a[i] === TAIL) return s.length > i; // '>' covers anything of one or more segments from here
    if (i >= s.length) return false;
    if (s[i] === TAIL) return false; // the subscription reaches further than a fixed-length permission
    if (a[i] === ONE) continue; // '*' covers a literal or '*'
    if (a[i] !== s[i]) return false; // a literal covers only itself
  }
  return a.length === s.length;
}

/** Permissions checked once (every pattern valid), ready for the per-frame checks. */
export class CompiledPermissions {
  private constructor(private readonly lists: Readonly<Record<keyof IPermissions, readonly string[] | undefined>>) {}

  public static compile(permissions: IPermissions, where: string): CompiledPermissions {
    if (permissions === null || typeof permissions !== 'object') throw invalidArgument(`${where} must be an object of pattern lists`);
    const lists: Record<string, readonly string[] | undefined> = {};
    for (const field of ['send', 'request', 'call', 'publish', 'subscribe', 'provide'] as const) {
      const list = permissions[field];
      if (list === undefined) continue;
      if (!Array.isArray(list)) throw invalidArgument(`${where}.${field} must be an array of patterns`);
      for (const pattern of list) {
        const problem = describeInvalidPattern(pattern);
        if (problem !== undefined) throw invalidArgument(`${where}.${field}: ${problem}`);
      }
      lists[field] = [...list];
    }
    return new CompiledPermissions(lists as Record<keyof IPermissions, readonly string[] | undefined>);
  }

  /** Whether `name` is allowed for `field` (an absent list allows everything). */
  public allows(field: Exclude<keyof IPermissions, 'subscribe'>, name: string): boolean {
    const list = this.lists[field];
    if (list === undefined) return true;
    for (const pattern of list) if (nameMatches(pattern, name)) return true;
    return false;
  }

  /** Whether a subscription pattern is allowed: some permission pattern covers it. */
  public allowsSubscribe(pattern: string): boolean {
    const list = this.lists.subscribe;
    if (list === undefined) return true;
    for (const allowed of list) if (patternCovers(allowed, pattern)) return true;
    return false;
  }
}
