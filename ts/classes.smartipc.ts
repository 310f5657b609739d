import * as plugins from './plugins.js';
import { IpcError, invalidArgument, isIpcError } from './smartipc.errors.js';
import type { IConnectParentOptions, IConnectRetryOptions, IForkOptions, IIpcChannelOptions, IIpcClientOptions, IIpcServerOptions, TEndpoint } from './interfaces/options.js';
import { IpcServer } from './server/classes.ipcserver.js';
import { IpcClient } from './client/classes.ipcclient.js';
import { IpcChannel } from './channel/classes.ipcchannel.js';
import { Backoff } from './channel/classes.backoff.js';
import {
  DEFAULT_CONNECT_RETRY,
  DEFAULT_FORK_TIMEOUT_MS,
  DEFAULT_MAX_MESSAGE_SIZE_BYTES,
  DEFAULT_SPAWN_TIMEOUT_MS,
  DEFAULT_WAIT_FOR_SERVER_TIMEOUT_MS,
  PROBE_HANDSHAKE_TIMEOUT_MS,
  PROTOCOL_VERSION,
  WAIT_FOR_SERVER_INITIAL_DELAY_MS,
  WAIT_FOR_SERVER_MAX_DELAY_MS,
} from './smartipc.defaults.js';
import { createMedium, describeEndpoint, resolveEndpoint } from './framing/media/index.js';
import { childProcessMedium, parentProcessMedium, PARENT_LINK_ENV, PARENT_LINK_FD, readParentLink, type IParentLinkInfo } from './framing/media/child.js';
import { FramedLink } from './framing/classes.framedlink.js';
import { registerWithServer } from './channel/handshake.js';
import { durationMs, nonEmptyString, resolveLinkChannel } from './smartipc.options.js';
import './server/endpointhosting.js';

export type IWaitForServerOptions = Partial<TEndpoint> & {
  /** Only a server with this id counts. @default any id */
  id?: string;
  /** @default 10000 */
  timeoutMs?: number;
};

export type ISpawnAndConnectOptions = Partial<TEndpoint> & {
  /** Script run with `node` (fork): it starts the server. */
  serverScript: string;
  /** The server's id. @default the id the server answers with */
  id?: string;
  clientId?: string;
  connectRetry?: IConnectRetryOptions;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** @default 15000 */
  timeoutMs?: number;
  /** Options passed on to the client. */
  clientOptions?: Partial<IIpcClientOptions>;
};

/** What `SmartIpc.fork` resolves with. */
export interface IForkedChild {
  /** The parent's end of the private link. */
  channel: IpcChannel;
  child: plugins.childProcess.ChildProcess;
}

/** One dial + probe handshake. Resolves with the server's id; the server registers nothing. */
async function probeOnce(endpoint: TEndpoint, id: string | undefined): Promise<string> {
  const medium = createMedium(endpoint);
  const opened = await medium.dial();
  const link = new FramedLink(opened.stream, { maxMessageSize: DEFAULT_MAX_MESSAGE_SIZE_BYTES, description: medium.describe(), peer: opened.peer });
  try {
    const { welcome } = await registerWithServer(
      link,
      { serverId: id ?? '', clientId: 'probe', metadata: {}, protocolVersion: PROTOCOL_VERSION, serialization: 'json', maxMessageSize: DEFAULT_MAX_MESSAGE_SIZE_BYTES, probe: true },
      PROBE_HANDSHAKE_TIMEOUT_MS,
    );
    return welcome.serverId;
  } finally {
    link.destroy();
  }
}

/** The link a process started by `SmartIpc.fork` has to its parent: made once, on the first connectParent(). */
let parentChannel: Promise<IpcChannel> | undefined;

export class SmartIpc {
  public static createServer(options: IIpcServerOptions): IpcServer {
    return new IpcServer(options);
  }

  public static createClient(options: IIpcClientOptions): IpcClient {
    return new IpcClient(options);
  }

  /** A symmetric link between exactly two processes; see IpcChannel. */
  public static createChannel(options: IIpcChannelOptions): IpcChannel {
    return new IpcChannel(options);
  }

  /**
   * Resolves when a server on the endpoint completes a handshake (with `id` when given). Probes
   * with backoff as a client-only client and never starts anything itself. Rejects with TIMEOUT.
   */
  public static async waitForServer(options: IWaitForServerOptions): Promise<void> {
    await SmartIpc.waitForServerId(options);
  }

  /** `signal` stops the probing early (spawnAndConnect, once its child has died). */
  private static async waitForServerId(options: IWaitForServerOptions, signal?: AbortSignal): Promise<string> {
    if (options === null || typeof options !== 'object') throw invalidArgument('waitForServer needs options with an endpoint');
    const endpoint = resolveEndpoint(options);
    const timeoutMs = durationMs('timeoutMs', options.timeoutMs, DEFAULT_WAIT_FOR_SERVER_TIMEOUT_MS, { allowInfinity: false });
    if (options.id !== undefined) nonEmptyString('id', options.id);
    const deadline = performance.now() + timeoutMs;
    const backoff = new Backoff(WAIT_FOR_SERVER_INITIAL_DELAY_MS, WAIT_FOR_SERVER_MAX_DELAY_MS);
    let lastError: unknown;
    for (;;) {
      try {
        return await probeOnce(endpoint, options.id);
      } catch (err) {
        lastError = err;
        if (isIpcError(err, 'ID_MISMATCH') || isIpcError(err, 'PROTOCOL_ERROR') || isIpcError(err, 'TLS_ERROR')) throw err;
      }
      const delay = backoff.next();
      if (performance.now() + delay > deadline || signal?.aborted) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, delay);
        function done() {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          resolve();
        }
        signal?.addEventListener('abort', done, { once: true });
      });
      if (signal?.aborted) break;
    }
    throw new IpcError('TIMEOUT', `no server answered on ${describeEndpoint(endpoint)} within ${timeoutMs} ms (last: ${(lastError as Error)?.message})`, { cause: lastError });
  }

  /**
   * Forks `serverScript`, waits until it serves, and connects a client. If the child exits first or
   * time runs out, the child is killed and the error carries the tail of its stderr.
   */
  public static async spawnAndConnect(options: ISpawnAndConnectOptions): Promise<{ client: IpcClient; serverProcess: plugins.childProcess.ChildProcess }> {
    if (options === null || typeof options !== 'object') throw invalidArgument('spawnAndConnect needs options');
    nonEmptyString('serverScript', options.serverScript);
    const timeoutMs = durationMs('timeoutMs', options.timeoutMs, DEFAULT_SPAWN_TIMEOUT_MS, { allowInfinity: false });
    const child = plugins.childProcess.fork(options.serverScript, options.args ?? [], {
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      stderr = (stderr + text).slice(-4_000);
    });
    const exited = new Promise<never>((_, reject) => {
      child.once('exit', (code, signal) => reject(new IpcError('SERVER_UNAVAILABLE', `server script ${options.serverScript} exited (${signal ?? `code ${code}`}) before it served`)));
      child.once('error', (err) => reject(new IpcError('SERVER_UNAVAILABLE', `cannot start ${options.serverScript}: ${err.message}`, { cause: err })));
    });
    exited.catch(() => undefined);
    let client: IpcClient | undefined;
    // Once the child has died the probing is pointless; without this it would go on (and keep the
    // process alive) until timeoutMs.
    const probing = new AbortController();
    try {
      const serverId = await Promise.race([SmartIpc.waitForServerId({ ...resolveEndpoint(options), id: options.id, timeoutMs }, probing.signal), exited]);
      client = new IpcClient({
        ...options.clientOptions,
        ...resolveEndpoint(options),
        id: serverId,
        clientId: options.clientId,
        clientOnly: true,
        connectRetry: { ...DEFAULT_CONNECT_RETRY, enabled: true, ...options.connectRetry },
      } as IIpcClientOptions);
      await Promise.race([client.connect(), exited]);
      child.removeAllListeners('exit');
      return { client, serverProcess: child };
    } catch (err) {
      probing.abort();
      await client?.disconnect().catch(() => undefined);
      child.kill('SIGKILL');
      const tail = stderr.trim() ? `\n--- server stderr (tail) ---\n${stderr.trim().split('\n').slice(-20).join('\n')}` : '';
      const error = err as IpcError;
      throw new IpcError(error.code ?? 'SERVER_UNAVAILABLE', `${error.message}${tail}`, { cause: err });
    }
  }

  /**
   * Forks a Node.js module with a private byte-stream pipe to it (an extra stdio pipe: no socket
   * file, no port) and resolves once the child called `SmartIpc.connectParent()` and the handshake
   * completed. Both ends have the channel API. The child exiting rejects what is pending with
   * CONNECTION_LOST at once; a child that does not connect within `timeoutMs` is killed and fork
   * rejects TIMEOUT.
   */
  public static async fork(modulePath: string, options: IForkOptions = {}): Promise<IForkedChild> {
    nonEmptyString('modulePath', modulePath);
    if (options === null || typeof options !== 'object') throw invalidArgument('fork options must be an object');
    const id = options.id ?? `fork-${plugins.crypto.randomBytes(4).toString('hex')}`;
    const resolved = resolveLinkChannel(options, id);
    const timeoutMs = durationMs('timeoutMs', options.timeoutMs, DEFAULT_FORK_TIMEOUT_MS, { allowInfinity: false });
    const output = options.silent === true ? 'pipe' : 'inherit';
    const child = plugins.childProcess.spawn(process.execPath, [...(options.execArgv ?? process.execArgv), modulePath, ...(options.args ?? [])], {
      cwd: options.cwd,
      env: { ...(options.env ?? process.env), [PARENT_LINK_ENV]: JSON.stringify({ fd: PARENT_LINK_FD, id, serialization: resolved.serialization } satisfies IParentLinkInfo) },
      stdio: ['inherit', output, output, 'pipe'],
    });
    const channel = new IpcChannel(undefined, { ...resolved, role: 'server', medium: childProcessMedium(child), singlePeer: true });
    const exited = new Promise<never>((_, reject) => {
      child.once('exit', (code, signal) => {
        const why = `child process ${child.pid} (${modulePath}) exited (${signal ?? `code ${code}`})`;
        // A grandchild may still hold the pipe open: the link goes with the child, at once.
        channel.destroyLink(new IpcError('CONNECTION_LOST', why));
        reject(new IpcError('CONNECTION_LOST', `${why} before it called SmartIpc.connectParent()`));
      });
      child.once('error', (err) => reject(new IpcError('NOT_CONNECTED', `cannot start ${modulePath}: ${err.message}`, { cause: err })));
    });
    exited.catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    try {
      const connected = new Promise<void>((resolve) => channel.once('connect', () => resolve()));
      await channel.start();
      await Promise.race([
        connected,
        exited,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new IpcError('TIMEOUT', `child process ${child.pid} (${modulePath}) did not call SmartIpc.connectParent() within ${timeoutMs} ms; it was killed`)), timeoutMs);
        }),
      ]);
      return { channel, child };
    } catch (err) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await channel.stop().catch(() => undefined);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * In a process started by `SmartIpc.fork`: the channel to the parent, once the handshake
   * completed (every call returns the same channel). Rejects NOT_CONNECTED in a process that was
   * not started that way.
   */
  public static connectParent(options: IConnectParentOptions = {}): Promise<IpcChannel> {
    if (parentChannel !== undefined) return parentChannel;
    const info = readParentLink();
    if (info === undefined) {
      return Promise.reject(new IpcError('NOT_CONNECTED', `this process was not started by SmartIpc.fork (no ${PARENT_LINK_ENV} in its environment), so it has no parent link`));
    }
    let resolved;
    try {
      resolved = resolveLinkChannel({ ...options, serialization: options.serialization ?? info.serialization }, info.id);
    } catch (err) {
      return Promise.reject(err);
    }
    // Processes this one starts must not take the link for theirs.
    delete process.env[PARENT_LINK_ENV];
    const channel = new IpcChannel(undefined, { ...resolved, role: 'client', medium: parentProcessMedium(info) });
    parentChannel = channel.start().then(
      () => channel,
      (err) => {
        parentChannel = undefined;
        throw err;
      },
    );
    return parentChannel;
  }

  /** Writes a readable to a file; resolves when the file is complete and closed. */
  public static async pipeStreamToFile(readable: NodeJS.ReadableStream, filePath: string): Promise<void> {
    await plugins.fs.promises.mkdir(plugins.path.dirname(filePath), { recursive: true });
    await plugins.stream.promises.pipeline(readable, plugins.fs.createWriteStream(filePath));
  }
}
