import * as plugins from '../../plugins.js';
import { IpcError } from '../../smartipc.errors.js';
import type { IMedium, IMediumListener, IOpenedStream } from './medium.js';
import type { TSerialization } from '../../interfaces/wire.js';

/** The environment variable through which a forked child learns its link: `{ fd, id, serialization }` as JSON. */
export const PARENT_LINK_ENV = 'SMARTIPC_PARENT_LINK';
/** The child's file descriptor of the private pipe (stdio index 3: after stdin, stdout, stderr). */
export const PARENT_LINK_FD = 3;

export interface IParentLinkInfo {
  fd: number;
  /** The channel id the parent expects in the handshake. */
  id: string;
  /** The parent's serialization: the child's default, so both ends agree without configuration. */
  serialization: TSerialization;
}

/**
 * The parent's side of a forked child: the extra stdio pipe (a socketpair on Unix, a pipe on
 * Windows) is the one connection; there is nothing to bind, no file and no port.
 */
export function childProcessMedium(child: plugins.childProcess.ChildProcess): IMedium {
  const description = `child process ${child.pid ?? '(not started)'}`;
  return {
    kind: 'child',
    describe: () => description,
    dial: () => Promise.reject(new IpcError('NOT_CONNECTED', 'the parent side of a child link listens; it does not dial')),
    canHost: () => false,
    listen: async (onStream: (opened: IOpenedStream) => void): Promise<IMediumListener> => {
      const stream = child.stdio[PARENT_LINK_FD] as plugins.stream.Duplex | null | undefined;
      if (!stream) throw new IpcError('NOT_CONNECTED', `${description} has no pipe at stdio[${PARENT_LINK_FD}]`);
      process.nextTick(() => onStream({ stream, peer: { kind: 'child' } }));
      return {
        address: () => ({ socketPath: description }),
        probe: () => Promise.resolve(),
        close: () => Promise.resolve(),
      };
    },
  };
}

/** What the parent told this process, or undefined when it was not started by `SmartIpc.fork`. */
export function readParentLink(env: NodeJS.ProcessEnv = process.env): IParentLinkInfo | undefined {
  const raw = env[PARENT_LINK_ENV];
  if (raw === undefined) return undefined;
  try {
    const info = JSON.parse(raw) as Partial<IParentLinkInfo>;
    if (typeof info.fd === 'number' && Number.isInteger(info.fd) && typeof info.id === 'string') {
      return { fd: info.fd, id: info.id, serialization: info.serialization === 'advanced' ? 'advanced' : 'json' };
    }
  } catch {
    // not ours
  }
  return undefined;
}

/** The child's side: the inherited pipe, opened as a socket on its file descriptor. */
export function parentProcessMedium(info: IParentLinkInfo): IMedium {
  const description = `parent process ${process.ppid}`;
  return {
    kind: 'child',
    describe: () => description,
    dial: async () => {
      let socket: plugins.net.Socket;
      try {
        socket = new plugins.net.Socket({ fd: info.fd, readable: true, writable: true });
      } catch (err) {
        throw new IpcError('NOT_CONNECTED', `this process has no usable link to its parent (fd ${info.fd}: ${(err as Error).message}); was it started by SmartIpc.fork?`, { cause: err });
      }
      return { stream: socket, peer: { kind: 'child' } };
    },
    canHost: () => false,
    listen: () => Promise.reject(new IpcError('NOT_CONNECTED', 'the child side of a child link dials; it does not listen')),
  };
}
