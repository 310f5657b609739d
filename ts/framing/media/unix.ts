import * as plugins from '../../plugins.js';
import { IpcError, invalidArgument } from '../../smartipc.errors.js';
import type { ISocketPathEndpoint, TEndpoint } from '../../interfaces/options.js';
import type { IListenOptions, IMedium, IMediumListener, IMediumModule, IOpenedStream } from './medium.js';
import { acceptProbe, bindServer, closeServer, dialFailed, dialSocket, isNoServerOnPath, probeSocketPath } from './listen.js';
import { debug } from '../../smartipc.log.js';

/** A Unix domain socket: owns its socket file (stale-file cleanup, mode, removal on close). */
class UnixSocketMedium implements IMedium {
  public readonly kind = 'unix' as const;

  constructor(private readonly socketPath: string) {}

  public describe(): string {
    return this.socketPath;
  }

  public async dial(): Promise<IOpenedStream> {
    try {
      const stream = await dialSocket(plugins.net.createConnection({ path: this.socketPath }));
      return { stream, peer: { kind: 'unix' } };
    } catch (err) {
      throw dialFailed(err, this.socketPath);
    }
  }

  public canHost(dialError: unknown): boolean {
    return isNoServerOnPath(dialError);
  }

  public watchForServer(onChange: () => void): () => void {
    const directory = plugins.path.dirname(this.socketPath);
    const name = plugins.path.basename(this.socketPath);
    let watcher: plugins.fs.FSWatcher;
    try {
      watcher = plugins.fs.watch(directory, { persistent: false }, (_event, filename) => {
        if (filename === null || filename === name) onChange();
      });
    } catch {
      return () => undefined; // no watching here (a missing directory, no inotify): the backoff decides
    }
    watcher.on('error', () => watcher.close());
    return () => watcher.close();
  }

  public async listen(onStream: (opened: IOpenedStream) => void, options: IListenOptions = {}): Promise<IMediumListener> {
    const socketPath = this.socketPath;
    await this.clearStaleFile(options.autoCleanupSocketFile === true);
    const server = plugins.net.createServer((socket) => onStream({ stream: socket, peer: { kind: 'unix' } }));
    await withSocketMode(options.socketMode, () => bindServer(server, { path: socketPath }, socketPath));
    const created = plugins.fs.statSync(socketPath, { throwIfNoEntry: false });
    // The umask made the file with the mode already; chmod sets bits a umask cannot add.
    if (options.socketMode !== undefined) plugins.fs.chmodSync(socketPath, options.socketMode);
    return {
      address: () => ({ socketPath }),
      probe: () => acceptProbe(() => plugins.net.createConnection({ path: socketPath }), socketPath),
      close: async () => {
        await closeServer(server);
        // libuv already unlinks the bound path when the server closes; this removes what is left if
        // that did not happen, and only if it is still the file we bound. (A successor that bound the
        // same path after our file was deleted loses its file either way: one server per path.)
        const now = plugins.fs.statSync(socketPath, { throwIfNoEntry: false });
        if (now && created && now.ino === created.ino) {
          try {
            plugins.fs.unlinkSync(socketPath);
          } catch {
            // already gone
          }
        }
      },
    };
  }

  private async clearStaleFile(autoCleanup: boolean): Promise<void> {
    const socketPath = this.socketPath;
    if (!plugins.fs.existsSync(socketPath)) return;
    const state = await probeSocketPath(socketPath);
    if (state === 'live') {
      throw new IpcError('ADDRESS_IN_USE', `a live server already answers on ${socketPath}`);
    }
    if (state === 'absent') return;
    // connect() to a regular file or a directory also fails with ECONNREFUSED: never delete those.
    const stat = plugins.fs.lstatSync(socketPath, { throwIfNoEntry: false });
    if (!stat) return;
    if (!stat.isSocket()) {
      throw new IpcError('ADDRESS_IN_USE', `${socketPath} exists and is not a socket; refusing to remove it`);
    }
    if (!autoCleanup) {
      throw new IpcError('ADDRESS_IN_USE', `${socketPath} exists but no server answers on it; pass autoCleanupSocketFile: true to remove a stale socket file`);
    }
    debug('removing stale socket file %s', socketPath);
    plugins.fs.unlinkSync(socketPath);
  }
}

export const unixMedium: IMediumModule = {
  kind: 'unix',
  matches: (endpoint, platform) => endpoint.socketPath !== undefined && platform !== 'win32',
  resolve: (endpoint) => ({ socketPath: checkSocketPath(endpoint) }),
  describe: (endpoint) => (endpoint as ISocketPathEndpoint).socketPath,
  create: (endpoint: TEndpoint) => new UnixSocketMedium((endpoint as ISocketPathEndpoint).socketPath),
};

/** A socketPath must be a non-empty string; shared with the pipe medium. */
export function checkSocketPath(endpoint: Partial<TEndpoint>): string {
  const socketPath = endpoint.socketPath;
  if (typeof socketPath !== 'string' || socketPath.length === 0) throw invalidArgument(`socketPath must be a non-empty string, got ${JSON.stringify(socketPath)}`);
  if (endpoint.port !== undefined || endpoint.host !== undefined) throw invalidArgument('give either socketPath or host/port, not both');
  if (endpoint.tls !== undefined) throw invalidArgument('tls needs a TCP endpoint (host/port), not a socketPath');
  return socketPath;
}

/**
 * Runs a bind with the process umask set so that the socket file is created with `mode` and never
 * exists with a more open one (bind() applies the umask; listen() binds synchronously, so the
 * umask is back before any other code runs). In a worker thread, where umask cannot be set, the
 * file is chmod-ed right after the bind instead (and the debug log says so).
 */
function withSocketMode<T>(mode: number | undefined, bind: () => Promise<T>): Promise<T> {
  if (mode === undefined) return bind();
  let previous: number;
  try {
    previous = process.umask(0o777 & ~mode);
  } catch {
    debug('cannot set the umask here (worker thread): the socket file gets its mode right after it is created');
    return bind();
  }
  try {
    return bind();
  } finally {
    process.umask(previous);
  }
}
