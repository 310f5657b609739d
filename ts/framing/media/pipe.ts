import * as plugins from '../../plugins.js';
import type { ISocketPathEndpoint, TEndpoint } from '../../interfaces/options.js';
import type { IMedium, IMediumListener, IMediumModule, IOpenedStream } from './medium.js';
import { acceptProbe, bindServer, closeServer, dialFailed, dialSocket, isNoServerOnPath } from './listen.js';
import { checkSocketPath } from './unix.js';

const PIPE_PREFIXES = ['\\\\.\\pipe\\', '\\\\?\\pipe\\'];

/**
 * Maps a socketPath to a Windows pipe name. `\\.\pipe\NAME` passes through; any other path
 * becomes a pipe named after it, so the same option works on every platform. Separators become
 * '-', which alone would map `/a-b.sock` and `/a/b.sock` to one name: a short hash of the whole
 * path keeps distinct paths on distinct pipes.
 */
export function toPipePath(socketPath: string): string {
  if (PIPE_PREFIXES.some((prefix) => socketPath.toLowerCase().startsWith(prefix))) return socketPath;
  const readable = socketPath
    .replace(/^[a-zA-Z]:/, '')
    .replace(/[\\/:]+/g, '-')
    .replace(/^-+/, '');
  const hash = plugins.crypto.createHash('sha256').update(socketPath).digest('hex').slice(0, 8);
  return `\\\\.\\pipe\\${readable || 'smartipc'}-${hash}`;
}

/** A Windows named pipe. Pipes have no file on disk to clean up and no mode. */
class NamedPipeMedium implements IMedium {
  public readonly kind = 'pipe' as const;
  public readonly pipePath: string;

  constructor(socketPath: string) {
    this.pipePath = toPipePath(socketPath);
  }

  public describe(): string {
    return this.pipePath;
  }

  public async dial(): Promise<IOpenedStream> {
    try {
      return { stream: await dialSocket(plugins.net.createConnection({ path: this.pipePath })), peer: { kind: 'pipe' } };
    } catch (err) {
      throw dialFailed(err, this.pipePath);
    }
  }

  public canHost(dialError: unknown): boolean {
    return isNoServerOnPath(dialError);
  }

  public async listen(onStream: (opened: IOpenedStream) => void): Promise<IMediumListener> {
    const server = plugins.net.createServer((socket) => onStream({ stream: socket, peer: { kind: 'pipe' } }));
    await bindServer(server, { path: this.pipePath }, this.pipePath);
    return {
      address: () => ({ socketPath: this.pipePath }),
      probe: () => acceptProbe(() => plugins.net.createConnection({ path: this.pipePath }), this.pipePath),
      close: () => closeServer(server),
    };
  }
}

export const pipeMedium: IMediumModule = {
  kind: 'pipe',
  matches: (endpoint, platform) => endpoint.socketPath !== undefined && platform === 'win32',
  resolve: (endpoint) => ({ socketPath: checkSocketPath(endpoint) }),
  describe: (endpoint) => toPipePath((endpoint as ISocketPathEndpoint).socketPath),
  create: (endpoint: TEndpoint) => new NamedPipeMedium((endpoint as ISocketPathEndpoint).socketPath),
};
