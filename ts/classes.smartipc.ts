import * as plugins from './plugins.js';
import { IpcError } from './smartipc.errors.js';
import type { IConnectRetryOptions, IIpcChannelOptions, IIpcClientOptions, IIpcServerOptions, TEndpoint } from './interfaces/options.js';
import { IpcServer } from './server/classes.ipcserver.js';
import { IpcClient } from './client/classes.ipcclient.js';
import { IpcStandaloneChannel } from './channel/classes.standalonechannel.js';
import { Backoff } from './channel/classes.backoff.js';
import { DEFAULT_CONNECT_RETRY, DEFAULT_MAX_MESSAGE_SIZE_BYTES, PROTOCOL_VERSION, DEFAULT_SPAWN_TIMEOUT_MS, DEFAULT_WAIT_FOR_SERVER_TIMEOUT_MS, PROBE_HANDSHAKE_TIMEOUT_MS } from './smartipc.defaults.js';
import { createTransport } from './framing/transport.factory.js';
import { describeEndpoint, resolveEndpoint } from './smartipc.options.js';
import { registerWithServer } from './channel/handshake.js';

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

/** One connect + probe handshake. Resolves with the server's id; the server registers nothing. */
async function probeOnce(options: Partial<TEndpoint>, id: string | undefined): Promise<string> {
  const transport = createTransport(resolveEndpoint(options), { maxMessageSize: DEFAULT_MAX_MESSAGE_SIZE_BYTES });
  try {
    await transport.connect();
  } catch (err) {
    throw new IpcError('SERVER_UNAVAILABLE', `no server at ${transport.describe()} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
  try {
    const { welcome } = await registerWithServer(
      transport,
      { serverId: id ?? '', clientId: 'probe', metadata: {}, protocolVersion: PROTOCOL_VERSION, serialization: 'json', maxMessageSize: DEFAULT_MAX_MESSAGE_SIZE_BYTES, probe: true },
      PROBE_HANDSHAKE_TIMEOUT_MS,
    );
    return welcome.serverId;
  } finally {
    transport.destroy();
  }
}

export class SmartIpc {
  public static createServer(options: IIpcServerOptions): IpcServer {
    return new IpcServer(options);
  }

  public static createClient(options: IIpcClientOptions): IpcClient {
    return new IpcClient(options);
  }

  /** A symmetric link between exactly two processes; see IpcStandaloneChannel. */
  public static createChannel(options: IIpcChannelOptions): IpcStandaloneChannel {
    return new IpcStandaloneChannel(options);
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
    const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_FOR_SERVER_TIMEOUT_MS;
    const deadline = performance.now() + timeoutMs;
    const backoff = new Backoff(25, 500);
    let lastError: unknown;
    for (;;) {
      try {
        return await probeOnce(options, options.id);
      } catch (err) {
        lastError = err;
        if ((err as IpcError).code === 'ID_MISMATCH' || (err as IpcError).code === 'PROTOCOL_ERROR') throw err;
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
    throw new IpcError('TIMEOUT', `no server answered on ${describeEndpoint(options)} within ${timeoutMs} ms (last: ${(lastError as Error)?.message})`, { cause: lastError });
  }

  /**
   * Forks `serverScript`, waits until it serves, and connects a client. If the child exits first or
   * time runs out, the child is killed and the error carries the tail of its stderr.
   */
  public static async spawnAndConnect(options: ISpawnAndConnectOptions): Promise<{ client: IpcClient; serverProcess: plugins.childProcess.ChildProcess }> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_SPAWN_TIMEOUT_MS;
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

  /** Writes a readable to a file; resolves when the file is complete and closed. */
  public static async pipeStreamToFile(readable: NodeJS.ReadableStream, filePath: string): Promise<void> {
    await plugins.fs.promises.mkdir(plugins.path.dirname(filePath), { recursive: true });
    await plugins.stream.promises.pipeline(readable, plugins.fs.createWriteStream(filePath));
  }
}
