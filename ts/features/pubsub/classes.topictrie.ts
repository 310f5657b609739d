import { invalidArgument } from '../../smartipc.errors.js';

/**
 * Topic matching for pub/sub. Topics are dot-separated segments (`user.login`). In a pattern,
 * `*` matches exactly one segment and `>` (only as the last segment) matches one or more.
 * Pure: no I/O, no timers; the broker and the client registry both use it.
 */

export const TOPIC_SEPARATOR = '.';
export const WILDCARD_ONE = '*';
export const WILDCARD_TAIL = '>';
/**
 * Joins the topic and the publisher's clientId in the type of a PUBLISH frame from the server, so
 * `from` needs no JSON headers. Never valid in a topic or pattern, so the first one splits them.
 */
export const PUBLISH_FROM_SEPARATOR = '\u0000';

/** Why `pattern` is not a valid subscription pattern, or undefined when it is. */
export function describeInvalidPattern(pattern: unknown): string | undefined {
  if (typeof pattern !== 'string' || pattern.length === 0) return 'a topic pattern must be a non-empty string';
  if (pattern.includes(PUBLISH_FROM_SEPARATOR)) return `topic pattern ${JSON.stringify(pattern)} contains U+0000`;
  const segments = pattern.split(TOPIC_SEPARATOR);
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i];
    if (segment.length === 0) return `topic pattern "${pattern}" has an empty segment`;
    if (segment === WILDCARD_TAIL) {
      if (i !== segments.length - 1) return `topic pattern "${pattern}": '>' may only be the last segment`;
      continue;
    }
    if (segment === WILDCARD_ONE) continue;
    if (segment.includes(WILDCARD_ONE) || segment.includes(WILDCARD_TAIL)) {
      return `topic pattern "${pattern}": '*' and '>' must be a whole segment (got "${segment}")`;
    }
  }
  return undefined;
}

/** Why `topic` cannot be published to, or undefined when it can. A published topic is concrete: no wildcards. */
export function describeInvalidTopic(topic: unknown): string | undefined {
  if (typeof topic !== 'string' || topic.length === 0) return 'a topic must be a non-empty string';
  if (topic.includes(WILDCARD_ONE) || topic.includes(WILDCARD_TAIL)) return `topic "${topic}" contains a wildcard; publish to a concrete topic`;
  if (topic.includes(PUBLISH_FROM_SEPARATOR)) return `topic ${JSON.stringify(topic)} contains U+0000`;
  // An empty segment shows as a leading, trailing or doubled separator.
  if (topic.startsWith(TOPIC_SEPARATOR) || topic.endsWith(TOPIC_SEPARATOR) || topic.includes('..')) return `topic "${topic}" has an empty segment`;
  return undefined;
}

/** Throws INVALID_ARGUMENT (a programming mistake, like invalid options) when the pattern is invalid. */
export function assertValidPattern(pattern: unknown): asserts pattern is string {
  const problem = describeInvalidPattern(pattern);
  if (problem !== undefined) throw invalidArgument(problem);
}

/** Throws INVALID_ARGUMENT when the topic cannot be published to. */
export function assertValidTopic(topic: unknown): asserts topic is string {
  const problem = describeInvalidTopic(topic);
  if (problem !== undefined) throw invalidArgument(problem);
}

/** Whether a concrete topic matches a (valid) pattern. The reference semantics the trie must agree with. */
export function topicMatches(pattern: string, topic: string): boolean {
  const p = pattern.split(TOPIC_SEPARATOR);
  const t = topic.split(TOPIC_SEPARATOR);
  for (let i = 0; i < p.length; i++) {
    if (p[i] === WILDCARD_TAIL) return t.length > i;
    if (i >= t.length) return false;
    if (p[i] !== WILDCARD_ONE && p[i] !== t[i]) return false;
  }
  return p.length === t.length;
}

interface ITrieNode<T> {
  /** Literal segments. */
  children?: Map<string, ITrieNode<T>>;
  /** The `*` child. */
  one?: ITrieNode<T>;
  /** The `>` child; it is always a leaf. */
  tail?: ITrieNode<T>;
  /** Set when a pattern ends here. */
  pattern?: string;
  values?: Set<T>;
}

/**
 * Patterns -> sets of values (subscribers), matched against concrete topics without scanning
 * every pattern: a match walks one literal branch plus the wildcard branches per segment, so its
 * cost depends on the topic's length and the wildcards in play, not on how many patterns exist.
 */
export class TopicTrie<T> {
  private readonly root: ITrieNode<T> = {};
  private patternTotal = 0;
  private valueTotal = 0;

  /** Distinct patterns held. */
  public get patternCount(): number {
    return this.patternTotal;
  }

  /** (pattern, value) pairs held. */
  public get size(): number {
    return this.valueTotal;
  }

  /** Adds `value` under `pattern` (validated first; INVALID_ARGUMENT when invalid). Returns false when it was already there. */
  public add(pattern: string, value: T): boolean {
    assertValidPattern(pattern);
    let node = this.root;
    for (const segment of pattern.split(TOPIC_SEPARATOR)) {
      if (segment === WILDCARD_ONE) node = node.one ??= {};
      else if (segment === WILDCARD_TAIL) node = node.tail ??= {};
      else {
        const children = (node.children ??= new Map());
        let child = children.get(segment);
        if (child === undefined) {
          child = {};
          children.set(segment, child);
        }
        node = child;
      }
    }
    if (node.values === undefined) {
      node.values = new Set();
      node.pattern = pattern;
      this.patternTotal++;
    }
    if (node.values.has(value)) return false;
    node.values.add(value);
    this.valueTotal++;
    return true;
  }

  /** Removes `value` from `pattern`, pruning nodes nothing uses any more. Returns false when it was not there. */
  public remove(pattern: string, value: T): boolean {
    if (describeInvalidPattern(pattern) !== undefined) return false;
    const segments = pattern.split(TOPIC_SEPARATOR);
    const path: ITrieNode<T>[] = [this.root];
    let node: ITrieNode<T> | undefined = this.root;
    for (const segment of segments) {
      node = segment === WILDCARD_ONE ? node.one : segment === WILDCARD_TAIL ? node.tail : node.children?.get(segment);
      if (node === undefined) return false;
      path.push(node);
    }
    if (!node.values?.delete(value)) return false;
    this.valueTotal--;
    if (node.values.size > 0) return true;
    node.values = undefined;
    node.pattern = undefined;
    this.patternTotal--;
    for (let i = segments.length; i > 0; i--) {
      const child = path[i];
      if (child.values !== undefined || child.one !== undefined || child.tail !== undefined || (child.children?.size ?? 0) > 0) break;
      const parent = path[i - 1];
      const segment = segments[i - 1];
      if (segment === WILDCARD_ONE) parent.one = undefined;
      else if (segment === WILDCARD_TAIL) parent.tail = undefined;
      else {
        parent.children!.delete(segment);
        if (parent.children!.size === 0) parent.children = undefined;
      }
    }
    return true;
  }

  public has(pattern: string, value: T): boolean {
    if (describeInvalidPattern(pattern) !== undefined) return false;
    let node: ITrieNode<T> | undefined = this.root;
    for (const segment of pattern.split(TOPIC_SEPARATOR)) {
      node = segment === WILDCARD_ONE ? node.one : segment === WILDCARD_TAIL ? node.tail : node.children?.get(segment);
      if (node === undefined) return false;
    }
    return node.values?.has(value) === true;
  }

  /**
   * Calls `visit` once for every pattern that matches the concrete `topic`, with that pattern's
   * values. Returns the number of trie nodes it looked at (a measure of work, for tests and benches).
   * `visit` must not add or remove patterns.
   */
  public match(topic: string, visit: (pattern: string, values: ReadonlySet<T>) => void): number {
    return this.walk(this.root, topic.split(TOPIC_SEPARATOR), 0, visit);
  }

  /** The patterns that match `topic` (convenience form of `match`). */
  public matchingPatterns(topic: string): string[] {
    const patterns: string[] = [];
    this.match(topic, (pattern) => patterns.push(pattern));
    return patterns;
  }

  /** Every pattern held, with its values. */
  public *entries(): IterableIterator<[string, ReadonlySet<T>]> {
    const stack: ITrieNode<T>[] = [this.root];
    while (stack.length > 0) {
      const node = stack.pop()!;
      if (node.values !== undefined) yield [node.pattern!, node.values];
      if (node.children) for (const child of node.children.values()) stack.push(child);
      if (node.one) stack.push(node.one);
      if (node.tail) stack.push(node.tail);
    }
  }

  private walk(node: ITrieNode<T>, segments: string[], index: number, visit: (pattern: string, values: ReadonlySet<T>) => void): number {
    let visited = 1;
    if (index === segments.length) {
      if (node.values !== undefined) visit(node.pattern!, node.values);
      return visited;
    }
    // `>` here covers segments[index..] (at least one segment remains).
    if (node.tail?.values !== undefined) {
      visited++;
      visit(node.tail.pattern!, node.tail.values);
    }
    const literal = node.children?.get(segments[index]);
    if (literal !== undefined) visited += this.walk(literal, segments, index + 1, visit);
    if (node.one !== undefined) visited += this.walk(node.one, segments, index + 1, visit);
    return visited;
  }
}
