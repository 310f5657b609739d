/**
 * Subject layout of the bridge. Pure: no I/O. Every subject starts with the namespace, then a
 * kind, then the (escaped) server id:
 *
 *   <ns>.req.<id>.<type>        a request to server <id> (reply subject set), queue group <ns>.<id>
 *   <ns>.msg.<id>.<type>        a fire-and-forget message to server <id>, queue group <ns>.<id>
 *   <ns>.pub.<id>.<topic>       pub/sub of hub <id>; topic segments map 1:1, so do `*` and `>`
 *   <ns>.str.<id>               stream opens to server <id>, queue group <ns>.<id>
 *   <ns>.hello.<id>             presence probe: any host exposing <id> answers
 *   <ns>.cli.<id>.<clientId>.<type>   server <id> to one NATS client (sendToClient / requestClient)
 *   <ns>.all.<id>.<type>        server <id> to all its NATS clients (broadcast)
 *   <ns>.svc.<service>.<method> a service call (reply subject set), queue group <ns>.svc.<service>
 *   <ns>.svc.<service>          "does anyone provide <service>?" (after a no-responders call), same queue group
 *   <ns>.svcreg                 a provider's services changed (its whole list, or gone)
 *   <ns>.svclist                every provider answers with its list (listServices, imports)
 *   <ns>.cancel                 a caller gave up: the payload is the reply subject of its request or call
 *   <inbox>.<n>                 replies; stream data and credit also flow inbox to inbox
 *
 * A token that is not plain printable ASCII (or contains `*`, `>`, `~`) is written `~` + base64url
 * of its UTF-8, so any id, type or topic segment fits a subject and wildcards keep their meaning.
 */

export const ESCAPE_PREFIX = '~';

/** A token that may stand in a subject as is: printable ASCII without `.`, `*`, `>`, `~`. */
export function isPlainToken(token: string): boolean {
  if (token.length === 0) return false;
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i);
    if (c < 0x21 || c > 0x7d || c === 0x2a || c === 0x2e || c === 0x3e) return false; // 0x7e '~' excluded by the range
  }
  return true;
}

/** One token: as is when plain, else `~` + base64url(utf8). Injective; never contains `.`, `*` or `>`. */
export function escapeToken(token: string): string {
  return isPlainToken(token) ? token : ESCAPE_PREFIX + Buffer.from(token, 'utf8').toString('base64url');
}

export function unescapeToken(token: string): string {
  return token.startsWith(ESCAPE_PREFIX) ? Buffer.from(token.slice(1), 'base64url').toString('utf8') : token;
}

/** A message type as a subject tail: as is when every dot-separated part is plain, else one escaped token. */
export function encodeType(type: string): string {
  const parts = type.split('.');
  for (const part of parts) if (!isPlainToken(part)) return ESCAPE_PREFIX + Buffer.from(type, 'utf8').toString('base64url');
  return type;
}

export function decodeType(tail: string): string {
  return tail.startsWith(ESCAPE_PREFIX) && !tail.includes('.') ? unescapeToken(tail) : tail;
}

/** A valid concrete topic (checked by the caller) as subject tokens, segment by segment. */
export function encodeTopic(topic: string): string {
  return topic.split('.').map(escapeToken).join('.');
}

/** A valid pattern as subject tokens: `*` and `>` stay wildcards, every other segment is escaped as in topics. */
export function encodePattern(pattern: string): string {
  return pattern
    .split('.')
    .map((segment) => (segment === '*' || segment === '>' ? segment : escapeToken(segment)))
    .join('.');
}

export function decodeTopic(tail: string): string {
  return tail.split('.').map(unescapeToken).join('.');
}

/** Why `namespace` cannot prefix subjects, or undefined. Plain tokens separated by dots (`smartipc`, `prod.eu`). */
export function describeInvalidNamespace(namespace: unknown): string | undefined {
  if (typeof namespace !== 'string' || namespace.length === 0) return 'namespace must be a non-empty string';
  for (const token of namespace.split('.')) {
    if (!isPlainToken(token)) return `namespace "${namespace}" must be dot-separated tokens of printable ASCII without '*', '>' or '~'`;
  }
  return undefined;
}

/** The subjects of one namespace. */
export class NatsSubjects {
  constructor(public readonly namespace: string) {}

  public queue(id: string): string {
    return `${this.namespace}.${escapeToken(id)}`;
  }

  public requestPrefix(id: string): string {
    return `${this.namespace}.req.${escapeToken(id)}.`;
  }

  public messagePrefix(id: string): string {
    return `${this.namespace}.msg.${escapeToken(id)}.`;
  }

  public request(id: string, type: string): string {
    return this.requestPrefix(id) + encodeType(type);
  }

  public message(id: string, type: string): string {
    return this.messagePrefix(id) + encodeType(type);
  }

  public topicPrefix(id: string): string {
    return `${this.namespace}.pub.${escapeToken(id)}.`;
  }

  public topic(id: string, topic: string): string {
    return this.topicPrefix(id) + encodeTopic(topic);
  }

  public pattern(id: string, pattern: string): string {
    return this.topicPrefix(id) + encodePattern(pattern);
  }

  public stream(id: string): string {
    return `${this.namespace}.str.${escapeToken(id)}`;
  }

  public hello(id: string): string {
    return `${this.namespace}.hello.${escapeToken(id)}`;
  }

  public toClientPrefix(id: string, clientId: string): string {
    return `${this.namespace}.cli.${escapeToken(id)}.${escapeToken(clientId)}.`;
  }

  public broadcastPrefix(id: string): string {
    return `${this.namespace}.all.${escapeToken(id)}.`;
  }

  /** A call of `service.method`. */
  public serviceCall(service: string, method: string): string {
    return `${this.namespace}.svc.${escapeToken(service)}.${escapeToken(method)}`;
  }

  /** The presence probe of a service: any instance answers with its methods. Also the queue group of its calls. */
  public serviceProbe(service: string): string {
    return `${this.namespace}.svc.${escapeToken(service)}`;
  }

  public serviceQueue(service: string): string {
    return `${this.namespace}.svc.${escapeToken(service)}`;
  }

  public get serviceRegistry(): string {
    return `${this.namespace}.svcreg`;
  }

  public get serviceList(): string {
    return `${this.namespace}.svclist`;
  }

  public get cancel(): string {
    return `${this.namespace}.cancel`;
  }
}
