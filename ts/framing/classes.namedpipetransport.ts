import * as plugins from '../plugins.js';
import { IpcTransport, type IIpcListener, type ITransportLimits } from './classes.transport.js';
import { bindServer, closeServer } from './listen.js';

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
export class NamedPipeTransport extends IpcTransport {
  public readonly pipePath: string;

  constructor(limits: ITransportLimits, socketPath: string) {
    super(limits);
    this.pipePath = toPipePath(socketPath);
  }

  public describe(): string {
    return this.pipePath;
  }

  protected dial(): plugins.net.Socket {
    return plugins.net.createConnection({ path: this.pipePath });
  }

  public forAccepted(socket: plugins.net.Socket): IpcTransport {
    const transport = new NamedPipeTransport(this.limits, this.pipePath);
    transport.attach(socket);
    return transport;
  }

  public async listen(onSocket: (socket: plugins.net.Socket) => void): Promise<IIpcListener> {
    const server = plugins.net.createServer(onSocket);
    await bindServer(server, { path: this.pipePath }, this.pipePath);
    return { address: () => ({ socketPath: this.pipePath }), close: () => closeServer(server) };
  }
}
