import * as plugins from '../plugins.js';
import { IpcError } from '../smartipc.errors.js';
import { IpcTransport, type IIpcListener, type ITransportLimits } from './classes.transport.js';
import { bindServer, closeServer, probeSocketPath } from './listen.js';
import { debug } from '../smartipc.log.js';

export interface IUnixSocketOptions {
  socketPath: string;
  autoCleanupSocketFile?: boolean;
  socketMode?: number;
}

/** A Unix domain socket: owns its socket file (stale-file cleanup, mode, removal on close). */
export class UnixSocketTransport extends IpcTransport {
  constructor(limits: ITransportLimits, protected readonly options: IUnixSocketOptions) {
    super(limits);
  }

  public describe(): string {
    return this.options.socketPath;
  }

  protected dial(): plugins.net.Socket {
    return plugins.net.createConnection({ path: this.options.socketPath });
  }

  public forAccepted(socket: plugins.net.Socket): IpcTransport {
    const transport = new UnixSocketTransport(this.limits, this.options);
    transport.attach(socket);
    return transport;
  }

  public async listen(onSocket: (socket: plugins.net.Socket) => void): Promise<IIpcListener> {
    const socketPath = this.options.socketPath;
    await this.clearStaleFile();
    const server = plugins.net.createServer(onSocket);
    await bindServer(server, { path: socketPath }, socketPath);
    const created = plugins.fs.statSync(socketPath, { throwIfNoEntry: false });
    if (this.options.socketMode !== undefined) {
      plugins.fs.chmodSync(socketPath, this.options.socketMode);
    }
    return {
      address: () => ({ socketPath }),
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

  private async clearStaleFile(): Promise<void> {
    const socketPath = this.options.socketPath;
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
    if (!this.options.autoCleanupSocketFile) {
      throw new IpcError('ADDRESS_IN_USE', `${socketPath} exists but no server answers on it; pass autoCleanupSocketFile: true to remove a stale socket file`);
    }
    debug('removing stale socket file %s', socketPath);
    plugins.fs.unlinkSync(socketPath);
  }
}
